"""The benchmark grid: specs, --set routing, cells, skip/resume/conflict, rotate-folds, executors, end to end."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import ecgadapt.bench.executors as executors
import ecgadapt.bench.grid as grid
from ecgadapt.bench.grid import expand_cells, list_specs, load_spec, run_benchmark, run_grid
from ecgadapt.bench.spec import recipe_label
from ecgadapt.errors import ConfigError, ECGAdaptError
from ecgadapt.runs.creation import prepare_run_dir
from ecgadapt.train.config import FinetuneConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "eval"))
from run_fixtures import labels, write_run  # noqa: E402

TINY = ["models=[{name: ecg_vit_tiny, kwargs: {width: 16, depth: 1, heads: 1, patch_size: 250}}]"]
LITERAL_AND_TUNED = (
    "recipes=[baseline_ft, {name: baseline_ft, label: baseline_ft_tuned, tune: {lr: [1.0e-4, 1.0e-3]}}]"
)
"""The literal baseline beside a tuned one whose lr=1e-4 candidate trains exactly like it."""


def small(*extra: str) -> list[str]:
    """Test-sized --set items: two tasks, two seeds, one fraction, one epoch per stage."""
    return [
        *TINY,
        "tasks=[superdiagnostic,rhythm]",
        "seeds=[0,1]",
        "recipes=[baseline_ft,post_training]",
        "budget_epochs=null",
        "stage_overrides.epochs=1",
        "training.min_steps=0",
        *extra,
    ]


# --- specs ---------------------------------------------------------------------------------------------------


def test_builtin_specs_load_and_pretrained_models_need_weights(tmp_path):
    assert list_specs() == ["paper-ablation", "paper-data-efficiency", "paper-main", "paper-vs-task-specific"]
    main = load_spec("paper-main")
    assert main.tasks == ["all", "diagnostic", "subdiagnostic", "superdiagnostic", "form", "rhythm"]
    assert [recipe_label(r) for r in main.recipes] == [
        "baseline_ft",
        "baseline_ft_tuned",
        "lp_ft",
        "post_training",
    ]
    assert main.seeds == [0, 1, 2, 3, 4] and main.budget_epochs == 40
    tuned = {recipe_label(r): r.get("tune") for r in main.recipes if isinstance(r, dict)}
    assert tuned["baseline_ft_tuned"] == tuned["post_training"] == tuned["lp_ft"]  # the same search for all
    assert "baseline_ft" in main.recipes  # the literal baseline, untuned
    assert main.models[0].name == "st_mem_vit_b75" and main.protocol == "official"
    assert load_spec("paper-data-efficiency").fractions == [0.1, 0.3, 0.5, 1.0]
    assert {"post_training_no_lp", "post_training_no_sd", "post_training_no_dropout"} <= {
        recipe_label(r) for r in load_spec("paper-ablation").recipes
    }
    with pytest.raises(
        ConfigError, match=r"needs pretrained weights: pass --weights PATH, or --set models.0.weights"
    ):
        expand_cells(main, tmp_path, tmp_path / "out")
    ckpt = tmp_path / "w.pt"
    ckpt.write_bytes(b"x")
    vs = load_spec("paper-vs-task-specific", ["seeds=[0]", "tasks=[rhythm]"], weights=str(ckpt))
    cells = expand_cells(vs, tmp_path, tmp_path / "out")
    pairs = sorted((c.model_label, c.recipe_label) for c in cells)
    assert pairs == [
        ("st_mem_vit_b75", "baseline_ft"),
        ("st_mem_vit_b75", "baseline_ft_tuned"),
        ("st_mem_vit_b75", "post_training"),
        ("st_mem_vit_b75", "scratch"),
        ("xresnet1d101", "scratch"),
    ]
    budgets = {c.recipe_label: sum(s.epochs for s in c.config.recipe.stages) for c in cells}
    assert set(budgets.values()) == {40}  # every recipe of the comparison has the same maximum budget
    scratch = next(c for c in cells if c.model_label == "st_mem_vit_b75" and c.recipe_label == "scratch")
    assert scratch.config.model.weights == str(ckpt) and not scratch.config.recipe.pretrained
    assert next(c for c in cells if c.recipe_label == "post_training").config.model.weights == str(ckpt)


def test_set_routes_spec_keys_and_config_overrides():
    spec = load_spec(
        "paper-main",
        [
            *small("fractions=[0.5,1.0]"),
            "training.max_train_batches=2",
            "overrides.training.batch_size=8",
            "models.0.weights=null",
            "data.rate=100",
        ],
    )
    assert (
        spec.tasks == ["superdiagnostic", "rhythm"] and spec.seeds == [0, 1] and spec.fractions == [0.5, 1.0]
    )
    assert spec.stage_overrides == {"epochs": 1}
    assert spec.overrides == {
        "data.rate": 100,
        "training.max_train_batches": 2,
        "training.batch_size": 8,
        "training.min_steps": 0,
    }
    assert spec.models[0].name == "ecg_vit_tiny" and spec.models[0].kwargs["width"] == 16


@pytest.mark.parametrize(
    "sets, message",
    [
        (["bogus=1"], "neither a spec key"),
        (["data.task=rhythm"], "data.task is set by the grid; use tasks"),
        (["model.name=x"], "differs per cell; set it through models"),
        (["recipe.stages.0.lr=0.1"], "recipes or stage_overrides"),
        (["tasks=[cardiac]"], "unknown task 'cardiac'"),
        (["fractions=[0]"], r"fractions must lie in \(0, 1\]"),
        (["seeds=[1,1]"], "lists a value twice"),
        (["stage_overrides.bogus=1"], "stage_overrides has unknown"),
        (["protocol=rotate-folds", "data.test_fold=3"], "set per fold by the rotate-folds protocol"),
        (["protocol=kfold"], "protocol must be one of"),
    ],
)
def test_spec_errors_name_the_key(sets, message):
    with pytest.raises(ConfigError, match=message):
        load_spec("paper-main", [*TINY, *sets])


def test_spec_file_and_unknown_names(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(
        yaml.safe_dump(
            {"models": ["ecg_vit_tiny"], "tasks": ["rhythm"], "recipes": ["baseline_ft"], "seeds": [3]}
        )
    )
    spec = load_spec(path)
    assert spec.name == "mine" and spec.seeds == [3] and spec.fractions == [1.0]
    assert load_spec(path, ["models.0.weights=bundled"]).models[0].weights == "bundled"
    with pytest.raises(ConfigError, match="unknown spec 'nope'; built-in specs: paper-ablation"):
        load_spec("nope")
    with pytest.raises(ConfigError, match="does not exist"):
        load_spec(tmp_path / "missing.yaml")


def test_expand_cells_product_rotation_and_configs(tmp_path):
    spec = load_spec("paper-main", small("fractions=[0.5,1.0]", "training.max_train_batches=2"))
    cells = expand_cells(spec, tmp_path / "data", tmp_path / "out")
    assert len(cells) == 2 * 2 * 2 * 2 and len({c.cell_id for c in cells}) == 16
    assert [c.seed for c in cells[:8]] == [0] * 8  # seed-major
    c = next(c for c in cells if c.cell_id == "rhythm__ecg_vit_tiny__post_training__frac0.5__seed1")
    cfg = c.config
    assert (cfg.data.task, cfg.data.fraction, cfg.seed, cfg.recipe.name) == (
        "rhythm",
        0.5,
        1,
        "post_training",
    )
    assert [s.epochs for s in cfg.recipe.stages] == [1, 1] and cfg.training.max_train_batches == 2
    assert cfg.data.root == str((tmp_path / "data").resolve()) and cfg.out == str(c.dir)
    assert c.dir == (tmp_path / "out" / "runs" / c.cell_id).resolve() and len(c.runs) == 1
    custom = (
        "recipes=[baseline_ft, {name: post_training, label: pt_dp3, stages: [{}, {drop_path_rate: 0.3}]}]"
    )
    labelled = expand_cells(load_spec("paper-main", small(custom)), tmp_path, tmp_path / "out")
    pt = next(c for c in labelled if c.recipe_label == "pt_dp3")
    assert "__pt_dp3__" in pt.cell_id and pt.config.recipe.name == "post_training"
    assert [s.drop_path_rate for s in pt.config.recipe.stages] == [0.0, 0.3]
    assert [s.epochs for s in pt.config.recipe.stages] == [1, 1] and pt.config.recipe.stages[
        1
    ].drop_rate == 0.1
    rot = expand_cells(load_spec("paper-main", small("protocol=rotate-folds")), tmp_path, tmp_path / "out")
    folds = [(r.config.data.test_fold, r.config.data.val_fold) for r in rot[0].runs]
    assert folds == [(k, k % 10 + 1) for k in range(1, 11)]
    assert rot[0].cell_id.endswith("__rotate-folds") and rot[0].runs[0].run_dir == rot[0].dir / "fold01"


# --- skip / resume / conflict with a fake trainer ------------------------------------------------------------


class FakeTrainer:
    """Stands in for run_finetune: records calls and writes a run directory like the real one."""

    def __init__(self, fail: set[str] | None = None, partial: set[str] | None = None) -> None:
        self.calls: list[tuple[str, bool]] = []
        self.fail = fail or set()
        self.partial = partial or set()

    def __call__(self, cfg: FinetuneConfig, resume: bool = False, overwrite: bool = False, **kwargs) -> Path:
        run_dir = prepare_run_dir(cfg.out, resume=resume, overwrite=overwrite)  # the real directory rules
        self.calls.append((run_dir.name, resume))
        d = cfg.to_dict()
        k, v = cfg.data.test_fold, cfg.data.val_fold
        write_run(
            run_dir,
            d,
            y_test=labels(20, seed=k),
            ids_test=k * 1000 + np.arange(20),
            y_val=labels(20, seed=v),
            ids_val=v * 1000 + np.arange(20),
            quality=1.0 + 0.3 * (cfg.recipe.name == "post_training"),
            finished=run_dir.name not in self.partial | self.fail,
        )
        if run_dir.name in self.fail:
            raise FloatingPointError(f"training loss became nan in {run_dir.name}")
        return run_dir


@pytest.fixture
def fake(monkeypatch):
    def install(**kw) -> FakeTrainer:
        trainer = FakeTrainer(**kw)
        monkeypatch.setattr(grid, "run_finetune", trainer)  # what the grid's "train" job kind calls
        return trainer

    return install


@pytest.fixture
def no_cache(monkeypatch):
    monkeypatch.setattr(grid, "_prepare_cache", lambda config, open_it: None)


def test_spec_roles_are_checked_and_recorded_in_spec_yaml(tmp_path, fake, no_cache):
    roles = "roles={treatment: baseline_ft, baselines: [post_training]}"
    spec = load_spec("paper-main", [*small(), roles])
    assert spec.roles == {"treatment": "baseline_ft", "baselines": ["post_training"]}
    assert "roles" not in load_spec("paper-main", small()).to_dict()  # absent unless set
    fake()
    out = tmp_path / "res"
    run_benchmark("paper-main", tmp_path, out, [*small("seeds=[0]", "tasks=[rhythm]"), roles], progress=False)
    saved = yaml.safe_load((out / "spec.yaml").read_text())
    assert saved["spec"]["roles"] == {"treatment": "baseline_ft", "baselines": ["post_training"]}
    with pytest.raises(ConfigError, match="roles: unknown keys"):
        load_spec("paper-main", [*small(), "roles={treatment: baseline_ft, baseline: [post_training]}"])
    with pytest.raises(ConfigError, match="roles names 'lp_ft', which is no recipe label"):
        load_spec("paper-main", [*small(), "roles={treatment: lp_ft}"])
    with pytest.raises(ConfigError, match="roles: `baselines` must be a list of recipe labels, got 3"):
        load_spec("paper-main", [*small(), "roles={treatment: baseline_ft, baselines: 3}"])
    with pytest.raises(ConfigError, match="roles must be a mapping"):
        load_spec("paper-main", [*small(), "roles=[baseline_ft]"])


def test_grid_skips_finished_resumes_partial_and_refuses_conflicts(tmp_path, fake, no_cache):
    sets = small()
    out = tmp_path / "res"
    cell = "rhythm__ecg_vit_tiny__baseline_ft__frac1__seed1"
    trainer = fake(partial={cell})
    table = run_benchmark("paper-main", tmp_path, out, sets, progress=False)
    assert len(trainer.calls) == 8 and not any(resume for _, resume in trainer.calls)
    assert len(table) == 7  # the partial cell has no final.json yet
    assert (out / "results.csv").is_file()
    assert (out / "results.parquet").is_file() == (importlib.util.find_spec("pyarrow") is not None)
    spec = yaml.safe_load((out / "spec.yaml").read_text())
    assert (
        spec["spec"]["seeds"] == [0, 1]
        and spec["resolved"]["n_cells"] == 8
        and cell in spec["resolved"]["cells"]
    )
    assert spec["resolved"]["base_configs"]["post_training"]["recipe"]["stages"][1]["epochs"] == 1

    trainer = fake()
    table = run_benchmark("paper-main", tmp_path, out, sets, progress=False)
    assert trainer.calls == [(cell, True)]  # only the partial cell runs again, resuming
    assert len(table) == 8 and set(table["recipe"]) == {"baseline_ft", "post_training"}

    trainer = fake()
    run_benchmark("paper-main", tmp_path, out, sets, progress=False)
    assert trainer.calls == []  # everything finished: nothing trains

    trainer = fake()
    with pytest.raises(
        ConfigError, match=r"recipe\.stages\.0\.lr: 0\.0001 saved, 0\.5 in the spec.*never overwrites"
    ):
        run_benchmark("paper-main", tmp_path, out, [*sets, "stage_overrides.lr=0.5"], progress=False)
    assert trainer.calls == []  # the conflict stops the grid before anything runs
    run_benchmark(
        "paper-main",
        tmp_path,
        out,
        [*sets, "training.progress=true", "training.num_workers=7"],
        progress=False,
    )
    assert trainer.calls == []  # fields that cannot change a result are not a conflict


def test_without_pyarrow_the_benchmark_says_so_in_its_summary_not_as_a_warning(
    tmp_path, fake, no_cache, monkeypatch, capsys
):
    from ecgadapt.eval import results

    fake()
    monkeypatch.setattr(results, "_has_pyarrow", lambda: False)
    run_benchmark("paper-main", tmp_path, tmp_path / "res", small("seeds=[0]"), progress=False)
    captured = capsys.readouterr()
    assert "warning" not in captured.err.lower() and "pyarrow" not in captured.err  # the demo ended on one
    assert "rows; results.parquet needs pyarrow: pip install 'ecgadapt[parquet]')" in captured.out
    assert not (tmp_path / "res" / "results.parquet").exists()


def test_grid_refuses_a_foreign_folder_in_place_of_a_cell(tmp_path, fake, no_cache):
    fake()
    target = tmp_path / "res" / "runs" / "rhythm__ecg_vit_tiny__baseline_ft__frac1__seed0"
    target.mkdir(parents=True)
    (target / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="holds no config.yaml: it is not a run of this grid"):
        run_benchmark("paper-main", tmp_path, tmp_path / "res", small(), progress=False)
    assert (target / "notes.txt").read_text() == "mine"


def test_failed_run_is_reported_after_the_others_and_resumes_next_time(tmp_path, fake, no_cache):
    bad = "superdiagnostic__ecg_vit_tiny__post_training__frac1__seed0"
    trainer = fake(fail={bad})
    with pytest.raises(ECGAdaptError, match=rf"1 of 8 runs failed \({bad}: FloatingPointError"):
        run_benchmark("paper-main", tmp_path, tmp_path / "res", small(), progress=False)
    assert len(trainer.calls) == 8  # the others still ran
    assert len(pd.read_csv(tmp_path / "res" / "results.csv")) == 7
    trainer = fake()
    run_benchmark("paper-main", tmp_path, tmp_path / "res", small(), progress=False)
    assert trainer.calls == [(bad, True)]


def test_rotate_folds_cells_pool_every_record_once(tmp_path, fake, no_cache):
    trainer = fake()
    sets = small("protocol=rotate-folds", "tasks=[rhythm]", "seeds=[0]")
    table = run_benchmark("paper-main", tmp_path, tmp_path / "res", sets, progress=False)
    assert len(trainer.calls) == 2 * 10
    assert len(table) == 2 and (table["protocol"] == "rotate-folds").all()
    assert (table["n_test"] == 200).all() and (
        table["n_folds"] == 10
    ).all()  # 10 folds x 20 records, each once
    cell = Path(table["run_dir"].iloc[0])
    with np.load(cell / "predictions_test.npz") as z:
        assert len(np.unique(z["ecg_ids"])) == len(z["ecg_ids"]) == 200
    meta = yaml.safe_load((cell / "cell.yaml").read_text())
    assert [f["test_fold"] for f in meta["folds"]] == list(range(1, 11))
    trainer = fake()
    run_benchmark("paper-main", tmp_path, tmp_path / "res", sets, progress=False, protocol="rotate-folds")
    assert trainer.calls == []


def test_rotate_folds_cell_with_a_missing_fold_is_not_finished_and_pools_again(tmp_path, fake, no_cache):
    from ecgadapt.eval.results import find_runs, is_finished

    sets = small("protocol=rotate-folds", "tasks=[rhythm]", "seeds=[0]", "recipes=[baseline_ft]")
    fake()
    cell = Path(
        run_benchmark("paper-main", tmp_path, tmp_path / "res", sets, progress=False)["run_dir"].iloc[0]
    )
    pooled = yaml.safe_load((cell / "final.json").read_text())
    assert (
        is_finished(cell) and 0 < pooled["fold_mean"]["test_macro_auroc"] < 1
    )  # per-fold mean beside pooled
    (cell / "fold03" / "final.json").unlink()
    assert not is_finished(cell) and find_runs(tmp_path / "res") == []  # nine folds are not a finished cell
    trainer = fake()
    run_benchmark("paper-main", tmp_path, tmp_path / "res", sets, progress=False)
    assert trainer.calls == [("fold03", True)] and is_finished(cell)
    fold = cell / "fold05" / "final.json"
    fold.write_text(fold.read_text().replace('"seed": 0', '"seed": 0, "edited": true', 1))
    assert not is_finished(cell)  # a changed fold makes the pooled score stale ...
    trainer = fake()
    run_benchmark("paper-main", tmp_path, tmp_path / "res", sets, progress=False)
    assert trainer.calls == [] and is_finished(cell)  # ... and the grid pools again without retraining


def test_ray_executor_without_ray_is_a_clear_error(tmp_path, monkeypatch, no_cache, fake):
    fake()
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ConfigError, match=re.escape('pip install "ecgadapt[ray]"')):
        run_benchmark("paper-main", tmp_path, tmp_path / "res", small(), executor="ray", progress=False)


def test_bad_executor_settings(tmp_path):
    spec = load_spec("paper-main", small())
    with pytest.raises(ConfigError, match="executor must be one of"):
        run_grid(spec, tmp_path, tmp_path / "res", executor="slurm")
    with pytest.raises(ConfigError, match="--jobs must be at least 1"):
        run_grid(spec, tmp_path, tmp_path / "res", jobs=0)


# --- real training -----------------------------------------------------------------------------------------


@pytest.fixture
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _real_sets(cache_dir: Path, *extra: str) -> list[str]:
    return [
        *TINY,
        "recipes=[baseline_ft,post_training]",
        "budget_epochs=null",
        "stage_overrides.epochs=1",
        "training.min_steps=0",
        "training.max_train_batches=1",
        "training.batch_size=16",
        "training.eval_batch_size=128",
        "training.num_workers=0",
        "data.rate=100",
        f"data.cache_dir={cache_dir}",
        *extra,
    ]


def test_benchmark_and_report_end_to_end_on_ptbxl500(ptbxl500, tmp_path, monkeypatch, one_thread, capsys):
    """Done-when: paper-main, two tasks x two seeds x two fractions, tiny model; rerun trains nothing; report."""
    from ecgadapt.cli import main

    out = tmp_path / "res"
    sets = _real_sets(
        tmp_path / "cache", "tasks=[superdiagnostic,rhythm]", "seeds=[0,1]", "fractions=[0.5,1.0]"
    )
    argv = ["benchmark", "--spec", "paper-main", "--data", str(ptbxl500), "--out", str(out), "--no-progress"]
    argv += [a for s in sets for a in ("--set", s)]
    assert main(argv) == 0
    table = pd.read_csv(out / "results.csv")
    assert len(table) == 16 and table["test_macro_auroc"].between(0, 1).all()
    assert set(table["fraction"]) == {0.5, 1.0} and (table["n_test"] > 0).all()

    def forbidden(*args, **kwargs):
        raise AssertionError("a finished cell was trained again")

    monkeypatch.setattr(grid, "run_finetune", forbidden)
    capsys.readouterr()
    assert main(argv) == 0
    assert "0 runs trained, 16 already done" in capsys.readouterr().out

    assert main(["report", str(out), "--n-bootstrap", "100"]) == 0
    page = (out / "report" / "report.html").read_text()
    for title in (
        "Main results",
        "Relative improvement of post-training over the baselines",
        "Data efficiency",
        "Training dynamics",
        "Per-class results",
        "Calibration",
    ):
        assert f"<h2>{title}</h2>" in page
    assert "<li>Ablation of post_training: no ablation recipe" in page  # left out, with the reason
    assert "<h2>Ablation of post_training</h2>" not in page
    assert (
        len(re.findall(r'<img alt="[^"]*" src="data:image/png;base64,iVBORw0KGgo', page)) == 6
    )  # + 2 temperature
    for task in ("superdiagnostic", "rhythm"):
        for recipe in ("baseline_ft", "post_training"):
            assert re.search(rf"<tr><td>ecg_vit_tiny</td><td>{task}</td><td>{recipe}</td><td>2</td>", page)


def test_the_literal_baseline_takes_the_training_of_the_identical_candidate(
    synthetic_root, tmp_path, one_thread, monkeypatch
):
    """The literal baseline_ft is baseline_ft_tuned's lr=1e-4 candidate: trained once, scored as if twice."""
    from ecgadapt.runs.rundir import read_json
    from ecgadapt.train.finetune import run_finetune

    sets = _real_sets(tmp_path / "cache", "tasks=[superdiagnostic]", "seeds=[0]", LITERAL_AND_TUNED)
    trained: list[str] = []

    def counting(cfg, **kwargs):
        trained.append(Path(cfg.out).name)
        return run_finetune(cfg, **kwargs)

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(grid, "run_finetune", counting)
    monkeypatch.setattr(grid.reuse, "score_test_fold", broken)
    out = tmp_path / "res"
    literal = out / "runs" / "superdiagnostic__ecg_vit_tiny__baseline_ft__frac1__seed0"
    with pytest.raises(ECGAdaptError, match="disk full"):
        run_benchmark("paper-main", synthetic_root, out, sets, progress=False)
    assert not (literal / "final.json").exists() and not (literal / "checkpoints" / "best.pt").exists()
    monkeypatch.undo()
    monkeypatch.setattr(grid, "run_finetune", counting)
    table = run_benchmark("paper-main", synthetic_root, out, sets, progress=False)
    assert sorted(trained) == ["lr=0.0001", "lr=0.001"]  # the literal run did not train, then or now
    source = out / "runs" / "superdiagnostic__ecg_vit_tiny__baseline_ft_tuned__frac1__seed0" / "candidates"
    final = read_json(literal / "final.json")
    assert final["reused_training"]["from"] == str(source / "lr=0.0001")
    row = table.set_index("recipe").loc["baseline_ft"]
    assert (
        row["reused_training_from"] == str(source / "lr=0.0001")
        and row["config_sha256"] == final["config_sha256"]
    )

    alone_cfg = FinetuneConfig.from_saved(literal / "config.yaml")
    alone_cfg.out = str(tmp_path / "alone")
    alone = read_json(run_finetune(alone_cfg) / "final.json")  # the literal run trained on its own
    for split in ("val", "test"):
        for metric in ("macro_auroc", "macro_auprc", "loss"):
            assert final[split][metric] == pytest.approx(alone[split][metric], abs=1e-6), (split, metric)
    assert final["best"] == alone["best"] and final["budget"] == alone["budget"]
    assert read_json(literal / "calibration.json") == read_json(tmp_path / "alone" / "calibration.json")

    trained.clear()
    run_benchmark("paper-main", synthetic_root, out, sets, progress=False)
    assert trained == []  # finished: the reused run counts as done, its config hash matches the spec


@pytest.mark.slow  # spawning workers that import torch: about 20 s on 2 busy cores
def test_process_pool_runs_cells_in_spawned_workers(synthetic_root, tmp_path, one_thread):
    sets = _real_sets(
        tmp_path / "cache",
        "tasks=[superdiagnostic]",
        "seeds=[0]",
        "recipes=[baseline_ft]",
        "fractions=[0.5,1.0]",
    )
    table = run_benchmark("paper-main", synthetic_root, tmp_path / "res", sets, jobs=2, progress=False)
    assert len(table) == 2 and table["test_macro_auroc"].notna().all()
    env = [yaml.safe_load((Path(d) / "env.json").read_text()) for d in table["run_dir"]]
    assert all(e["torch_threads"] == max(1, executors._cpu_count() // 2) for e in env)


@pytest.mark.slow  # starts a local Ray instance: about 15 s
def test_ray_executor_on_a_local_instance(synthetic_root, tmp_path, one_thread):
    pytest.importorskip("ray", reason="ray is not installed (pip install 'ecgadapt[ray]')")
    sets = _real_sets(tmp_path / "cache", "tasks=[superdiagnostic]", "seeds=[0]", "recipes=[baseline_ft]")
    table = run_benchmark(
        "paper-main", synthetic_root, tmp_path / "res", sets, executor="ray", address="local", progress=False
    )
    assert len(table) == 1 and table["test_macro_auroc"].notna().all()


def test_local_grid_selects_each_seeds_tuned_runs_before_training_the_next_seed(
    tmp_path, fake, no_cache, monkeypatch
):
    import ecgadapt.bench.candidates as tune

    trainer = fake()
    monkeypatch.setattr(
        tune, "finish_tuned_run", lambda run_dir, **kw: trainer.calls.append((Path(run_dir).name, "select"))
    )
    sets = small("tasks=[superdiagnostic]", "recipes=[{name: post_training, tune: {lr: [1.0e-4, 1.0e-3]}}]")
    run_benchmark("paper-main", tmp_path, tmp_path / "res", sets, progress=False)
    order = [name[-5:] if what == "select" else name for name, what in trainer.calls]  # candidates: lr=...
    assert order == ["lr=0.0001", "lr=0.001", "seed0", "lr=0.0001", "lr=0.001", "seed1"], trainer.calls


def test_a_plain_run_waits_for_the_candidate_whose_training_it_takes(tmp_path, fake, no_cache, monkeypatch):
    import ecgadapt.bench.candidates as tune

    literal = "rhythm__ecg_vit_tiny__baseline_ft__frac1__seed0"
    trainer = fake(fail={"lr=0.0001"})
    monkeypatch.setattr(
        tune, "finish_tuned_run", lambda run_dir, **kw: trainer.calls.append((Path(run_dir).name, "select"))
    )
    monkeypatch.setattr(
        grid.reuse,
        "take_candidate_training",
        lambda cfg, source, **kw: trainer.calls.append((Path(cfg.out).name, Path(source).name)),
    )
    sets = small("tasks=[rhythm]", "seeds=[0]", LITERAL_AND_TUNED)
    with pytest.raises(ECGAdaptError, match=r"runs failed \(lr=0.0001: FloatingPointError"):
        run_benchmark("paper-main", tmp_path, tmp_path / "res", sets, progress=False)
    # the literal waits for its source
    assert sorted(trainer.calls) == [("lr=0.0001", False), ("lr=0.001", False)]

    trainer.fail.clear()
    trainer.calls.clear()
    run_benchmark("paper-main", tmp_path, tmp_path / "res", sets, progress=False)
    # the failed candidate resumes first, then the others follow
    assert trainer.calls[0] == ("lr=0.0001", True)
    assert sorted(trainer.calls[1:]) == [
        (literal, "lr=0.0001"),
        ("rhythm__ecg_vit_tiny__baseline_ft_tuned__frac1__seed0", "select"),
    ]
