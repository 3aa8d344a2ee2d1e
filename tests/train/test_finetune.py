"""End-to-end fine-tuning on the synthetic dataset: what each recipe trains, where stages start, resume,
the test fold's isolation, and the run directory's contents."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from ecgadapt.cli import main
from ecgadapt.engine import loop
from ecgadapt.engine.checkpoints import load_checkpoint
from ecgadapt.errors import CheckpointError, ConfigError
from ecgadapt.models.layers import DropPath
from ecgadapt.runs.rundir import load_predictions
from ecgadapt.train import finetune as finetune_module
from ecgadapt.train.evaluate import evaluate_run
from ecgadapt.train.finetune import (
    build_model,
    prevalence_loss,
    prior_log_odds,
    run_finetune,
    set_head_bias_to_prior,
)


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _num_classes(cfg) -> int:
    from ecgadapt.data.cache import load_or_prepare

    return len(
        load_or_prepare(cfg.data.root, cfg.data.rate, cache_dir=cfg.data.cache_dir, progress=False).labels(
            cfg.data.task
        )[1]
    )


def test_linear_probe_leaves_backbone_params_and_buffers_bit_identical(make_cfg):
    # xresnet has BatchNorm buffers: a backbone left in train mode would update their running statistics.
    cfg = make_cfg("linear_probe", "lp", model="xresnet1d50")
    initial = _state(build_model(cfg, _num_classes(cfg)))
    run = run_finetune(cfg)
    final = load_checkpoint(run / "checkpoints" / "best.pt")["model"]
    backbone = [k for k in initial if not k.startswith("head.")]
    assert any("running_mean" in k for k in backbone)
    changed = [k for k in backbone if not torch.equal(initial[k], final[k])]
    assert changed == [], f"linear probing changed backbone tensors {changed}"
    assert not torch.equal(initial["head.weight"], final["head.weight"]), "the head did not train"


def _scripted_auroc(monkeypatch, values: list[float]) -> None:
    """Make validation macro AUROC follow ``values`` epoch by epoch (so the best epoch is known)."""
    real = finetune_module.score  # the validation scorer run_finetune hands to the engine's Trainer
    it = iter(values)

    def fake(y_true, y_prob, class_names=None, *rules):
        out = real(y_true, y_prob, class_names, *rules)
        out["macro_auroc"] = next(it, 0.0)
        return out

    monkeypatch.setattr(finetune_module, "score", fake)


def test_post_training_stage2_starts_from_best_stage1_head_with_regularisation_on(make_cfg, monkeypatch):
    cfg = make_cfg("post_training", "pt")
    _scripted_auroc(monkeypatch, [0.9, 0.5, 0.6, 0.7])  # stage 1 best = epoch 0, not the last epoch
    seen: dict = {}
    real_run_stage, real_train = loop.Trainer._run_stage, loop.Trainer._train_epoch

    def run_stage(self, i, stage, plan, state, ckpt):
        seen[f"start{i}"] = _state(self.model.get_classifier())
        self.configure_stage(stage)
        seen[f"drops{i}"] = {
            "drop_path": [m.drop_prob for m in self.model.modules() if isinstance(m, DropPath)],
            "dropout": [m.p for m in self.model.modules() if isinstance(m, torch.nn.Dropout)],
        }
        return real_run_stage(self, i, stage, plan, state, ckpt)

    def train_epoch(self, i, stage, plan, epoch, *args):
        out = real_train(self, i, stage, plan, epoch, *args)
        seen[f"head{i}.{epoch}"] = _state(self.model.get_classifier())
        return out

    monkeypatch.setattr(loop.Trainer, "_run_stage", run_stage)
    monkeypatch.setattr(loop.Trainer, "_train_epoch", train_epoch)
    run = run_finetune(cfg)

    best0 = load_checkpoint(run / "checkpoints" / "best_stage0.pt")
    assert best0["epoch"] == 0
    best0_head = {k.removeprefix("head."): v for k, v in best0["model"].items() if k.startswith("head.")}
    assert _equal(seen["start1"], best0_head), "stage 2 did not start from the best stage-1 head"
    assert _equal(seen["head0.0"], best0_head)
    assert not _equal(seen["start1"], seen["head0.1"]), (
        "stage 2 started from the last, not the best, stage-1 head"
    )
    # stage 1: no regularisation; stage 2: dropout 0.1 everywhere, DropPath linear 0 -> 0.2 over the blocks
    assert set(seen["drops0"]["drop_path"]) == {0.0} and set(seen["drops0"]["dropout"]) == {0.0}
    assert seen["drops1"]["drop_path"] == pytest.approx([0.0, 0.0, 0.2, 0.2])  # 2 blocks x 2 DropPaths
    assert seen["drops1"]["dropout"] and all(p == pytest.approx(0.1) for p in seen["drops1"]["dropout"])
    rows = pd.read_csv(run / "metrics.csv")
    assert list(rows["stage"]) == [0, 0, 1, 1] and list(rows["best"]) == [1, 0, 1, 1]


def test_baseline_ft_starts_from_a_seeded_random_head_not_an_lp_head(make_cfg, monkeypatch):
    starts = _record_stage_starts(monkeypatch)
    base = make_cfg("baseline_ft", "ft", epochs=1)
    run_finetune(base)
    lp = make_cfg("post_training", "pt", epochs=1)
    run_finetune(lp)
    fresh = _state(build_model(base, _num_classes(base)))
    fresh["head.bias"] = torch.as_tensor(prior_log_odds(_train_labels(base)), dtype=torch.float32)
    other_seed = base.__class__.from_dict({**base.to_dict(), "seed": 1, "notes": []})
    assert _equal(starts[0], fresh), (
        "baseline_ft must start from the seeded model, its head bias at the priors"
    )
    assert _equal(starts[1], fresh), "post_training stage 1 starts from the same seeded model"
    assert not torch.equal(starts[0]["head.weight"], starts[2]["head.weight"]), (
        "baseline head equals the LP head"
    )
    assert not torch.equal(
        fresh["head.weight"], _state(build_model(other_seed, _num_classes(base)))["head.weight"]
    )


def _train_labels(cfg) -> np.ndarray:
    from ecgadapt.data.cache import load_or_prepare
    from ecgadapt.data.dataset import ECGDataset

    cache = load_or_prepare(cfg.data.root, cfg.data.rate, cache_dir=cfg.data.cache_dir, progress=False)
    return ECGDataset(cache, cfg.data.task, "train", seed=cfg.seed).labels


def test_head_bias_prior_makes_the_first_loss_the_prevalence_loss(make_cfg):
    cfg = make_cfg("baseline_ft", "prior", epochs=1)
    labels = _train_labels(cfg)
    model = build_model(cfg, labels.shape[1])
    set_head_bias_to_prior(model, labels)
    bias = model.get_classifier().bias.detach().double().numpy()
    np.testing.assert_allclose(1 / (1 + np.exp(-bias)), np.clip(labels.mean(0), 1e-3, 1 - 1e-3), rtol=1e-5)
    logits = torch.as_tensor(bias).expand(len(labels), -1)  # the head's output when its weights are 0
    loss = torch.nn.functional.binary_cross_entropy_with_logits(
        logits, torch.as_tensor(labels, dtype=torch.float64)
    )
    assert float(loss) == pytest.approx(prevalence_loss(labels), rel=1e-3)
    zero = make_cfg("baseline_ft", "zero", "training.head_bias_init=zero", epochs=1)
    assert zero.training.head_bias_init == "zero"


def test_a_saved_config_without_head_bias_init_reads_as_the_old_zero_init(tmp_path):
    from ecgadapt.runs.hashing import config_sha256
    from ecgadapt.train.config import FinetuneConfig

    new = FinetuneConfig()
    saved = new.to_dict()
    del saved["training"]["head_bias_init"]  # written by an ecgadapt from before the field
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(saved))
    old = FinetuneConfig.from_saved(tmp_path / "config.yaml")
    assert old.training.head_bias_init == "zero"
    assert config_sha256(old.to_dict()) != config_sha256(new.to_dict()), (
        "an old run would be reused as a new one"
    )
    with pytest.raises(ConfigError, match="head_bias_init"):
        FinetuneConfig.from_dict({"training": {"head_bias_init": "ones"}})


class Killed(Exception):
    pass


def _record_stage_starts(monkeypatch) -> list[dict[str, torch.Tensor]]:
    """Make every stage append the model's state at its start to the returned list."""
    starts = []
    real_run_stage = loop.Trainer._run_stage

    def run_stage(self, i, stage, plan, state, ckpt):
        starts.append(_state(self.model))
        return real_run_stage(self, i, stage, plan, state, ckpt)

    monkeypatch.setattr(loop.Trainer, "_run_stage", run_stage)
    return starts


def _kill_after(n: int):
    count = {"batches": 0}

    def callback(event: str, info: dict) -> None:
        if event == "batch_end":
            count["batches"] += 1
            if count["batches"] == n:
                raise Killed(f"killed after {n} batches")

    return callback


def _metrics_without_time(run) -> pd.DataFrame:
    return pd.read_csv(run / "metrics.csv").drop(columns=["time_s"])


def test_killed_and_resumed_run_matches_uninterrupted_run_exactly(make_cfg):
    extra = (
        "training.ema=0.9",
        "training.pos_weight=true",
    )  # EMA state and dropout RNG must survive a resume too
    full = run_finetune(make_cfg("post_training", "full", *extra))
    cfg = make_cfg("post_training", "killed", *extra)
    with pytest.raises(Killed):  # mid-epoch in stage 1 (epoch 2, first batch)
        run_finetune(cfg, callbacks=[_kill_after(3)])
    with pytest.raises(Killed):  # mid-epoch in stage 2 (epoch 1, second batch), after one resume
        run_finetune(cfg, resume=True, callbacks=[_kill_after(4)])
    resumed = run_finetune(cfg, resume=True)

    a = json.loads((full / "final.json").read_text())
    b = json.loads((resumed / "final.json").read_text())
    assert a["test"] == b["test"] and a["val"] == b["val"] and a["best"] == b["best"]
    assert _equal(
        load_checkpoint(full / "checkpoints/best.pt")["model"],
        load_checkpoint(resumed / "checkpoints/best.pt")["model"],
    )
    pd.testing.assert_frame_equal(_metrics_without_time(full), _metrics_without_time(resumed))
    env = json.loads((resumed / "env.json").read_text())
    assert len(env["resumes"]) == 2


def test_test_fold_is_scored_only_after_training_ends(make_cfg, monkeypatch):
    from ecgadapt.data import dataset as dataset_module
    from ecgadapt.train import evaluate as evaluate_module
    from ecgadapt.train import finetune as finetune_module

    events: list[str] = []

    class SpyDataset(dataset_module.ECGDataset):
        def __init__(self, cache, task, split, **kw):
            events.append(f"dataset:{split}:fold{kw.get('test_fold', 10)}")
            super().__init__(cache, task, split, **kw)

    monkeypatch.setattr(finetune_module, "ECGDataset", SpyDataset)
    monkeypatch.setattr(evaluate_module, "ECGDataset", SpyDataset)
    real_predict = loop.predict_loader

    def spy_predict(model, loader, *a, **kw):
        events.append(f"predict:{loader.dataset.split}")
        return real_predict(model, loader, *a, **kw)

    monkeypatch.setattr(loop, "predict_loader", spy_predict)
    monkeypatch.setattr(evaluate_module, "predict_loader", spy_predict)
    run_finetune(
        make_cfg("lp_ft", "iso"), callbacks=[lambda e, i: events.append(e) if e == "epoch_end" else None]
    )

    last_epoch = max(i for i, e in enumerate(events) if e == "epoch_end")
    test_events = [i for i, e in enumerate(events) if "test" in e]
    assert test_events and min(test_events) > last_epoch, events
    assert events.count("dataset:test:fold10") == 1
    assert [e for e in events if e.startswith("dataset")][:2] == [
        "dataset:train:fold10",
        "dataset:val:fold10",
    ]


@pytest.fixture
def finished_run(make_cfg):
    return run_finetune(make_cfg("lp_ft", "done", epochs=1))


def test_run_dir_holds_every_artifact(finished_run):
    run = finished_run
    for name in (
        "config.yaml",
        "env.json",
        "metrics.csv",
        "final.json",
        "predictions_val.npz",
        "predictions_test.npz",
    ):
        assert (run / name).is_file(), name
    for name in ("best.pt", "last.pt", "best_stage0.pt", "best_stage1.pt"):
        assert (run / "checkpoints" / name).is_file(), name
    env = json.loads((run / "env.json").read_text())
    assert {
        "python",
        "torch",
        "numpy",
        "device",
        "git_commit",
        "hostname",
        "start_time",
        "command_line",
    } <= set(env)
    rows = pd.read_csv(run / "metrics.csv")
    assert {"stage", "epoch", "train_loss", "val_macro_auroc", "val_macro_auprc", "lr", "time_s"} <= set(
        rows.columns
    )
    final = json.loads((run / "final.json").read_text())
    for key in ("test", "val", "best", "recipe", "seed", "fraction", "task", "model", "timings"):
        assert key in final, key
    assert final["test"]["per_class"] and "macro_auroc" in final["test"]
    pred = load_predictions(run / "predictions_test.npz")
    assert pred["y_score"].shape == pred["y_true"].shape == (len(pred["ecg_ids"]), len(pred["class_names"]))
    assert ((pred["y_score"] >= 0) & (pred["y_score"] <= 1)).all()
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["recipe"]["name"] == "lp_ft" and len(saved["recipe"]["stages"]) == 2


def test_evaluate_reproduces_final_json(finished_run):
    final = json.loads((finished_run / "final.json").read_text())
    test = evaluate_run(finished_run, device="cpu")
    assert test["macro_auroc"] == final["test"]["macro_auroc"]
    assert test["macro_auprc"] == final["test"]["macro_auprc"]
    assert test["per_class"] == final["test"]["per_class"]
    val = evaluate_run(finished_run, split="val", device="cpu")
    assert val["macro_auroc"] == final["val"]["macro_auroc"]


def test_existing_run_dir_needs_resume_or_overwrite(finished_run, make_cfg):
    cfg = make_cfg("lp_ft", "done", epochs=1)
    with pytest.raises(ConfigError, match="already exists"):
        run_finetune(cfg)
    with pytest.raises(ConfigError, match="differs"):
        run_finetune(make_cfg("lp_ft", "done", "training.batch_size=8", epochs=1), resume=True)
    before = json.loads((finished_run / "final.json").read_text())
    run_finetune(cfg, overwrite=True)
    assert (
        json.loads((finished_run / "final.json").read_text())["test"] == before["test"]
    )  # same seed, same result


def test_scratch_ignores_given_weights_and_says_so(make_cfg, tmp_path):
    bogus = tmp_path / "not_a_checkpoint.pt"
    bogus.write_text("if this were loaded, loading would fail")
    run = run_finetune(make_cfg("scratch", "scr", f"model.weights={bogus}", epochs=1))
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert any("NOT loaded" in note for note in saved["notes"])
    assert json.loads((run / "final.json").read_text())["weights"] is None


def test_bundled_weights_missing_is_a_clear_error(make_cfg):
    with pytest.raises(ConfigError, match="no bundled weights"):
        run_finetune(make_cfg("baseline_ft", "b", "model.weights=bundled", model="xresnet1d50"))


def test_bundled_weights_into_another_architecture_name_the_keys(make_cfg):
    # make_cfg's tiny ecg_vit_tiny overrides do not fit the bundled full-size encoder
    with pytest.raises(CheckpointError, match="does not fit model 'ecg_vit_tiny'"):
        run_finetune(make_cfg("baseline_ft", "b2", "model.weights=bundled"))


def test_options_multicrop_layer_decay_select_metric(make_cfg):
    cfg = make_cfg(
        "baseline_ft",
        "opts",
        "training.eval_windows=3",
        "recipe.stages.0.layer_decay=0.7",
        "training.select_metric=macro_auprc",
        "training.grad_clip=null",
        model="xresnet1d50",
        epochs=1,
    )
    run = run_finetune(cfg)
    final = json.loads((run / "final.json").read_text())
    assert final["eval_windows"] == 3
    one = evaluate_run(run, eval_windows=1, device="cpu")
    assert (
        one["eval_windows"] == 1 and one["macro_auroc"] != final["test"]["macro_auroc"]
    )  # 3 x 2.5 s crops differ


def test_cli_finetune_then_evaluate(make_cfg, tmp_path, capsys):
    cfg = make_cfg("linear_probe", "unused", epochs=1)
    cfg_file = tmp_path / "cfg.yaml"
    cfg.to_yaml(cfg_file)
    out = tmp_path / "cli_run"
    rc = main(
        [
            "finetune",
            "--config",
            str(cfg_file),
            "--recipe",
            "linear_probe",
            "--seed",
            "3",
            "--epochs",
            "1",
            "--set",
            "recipe.stages.0.lr=0.01",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert rc == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert (
        saved["seed"] == 3
        and saved["recipe"]["stages"][0]["lr"] == 0.01
        and saved["model"]["kwargs"]["width"] == 16
    )
    assert main(["finetune", "--config", str(cfg_file), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (
        main(["finetune", "--out", str(out), "--resume", "--no-progress"]) == 0
    )  # resumes from the run's config
    capsys.readouterr()
    assert main(["evaluate", str(out), "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["macro_auroc"] == json.loads((out / "final.json").read_text())["test"]["macro_auroc"]
    assert np.isfinite(m["macro_auprc"])


def test_pretrained_weights_load_the_backbone_and_never_the_file_head(make_cfg, tmp_path, monkeypatch):
    cfg = make_cfg("baseline_ft", "pre", epochs=1)
    donor = build_model(
        make_cfg("baseline_ft", "x", "seed=7"), _num_classes(cfg)
    )  # same shapes, head included
    torch.save({"model": donor.state_dict()}, tmp_path / "pretrained.pt")
    starts = _record_stage_starts(monkeypatch)
    run_finetune(make_cfg("baseline_ft", "pre", f"model.weights={tmp_path / 'pretrained.pt'}", epochs=1))
    fresh = _state(build_model(cfg, _num_classes(cfg)))  # no weights: the seeded fresh model
    fresh["head.bias"] = torch.as_tensor(
        prior_log_odds(_train_labels(cfg)), dtype=torch.float32
    )  # at the priors
    donor_state = _state(donor)
    for key, value in starts[0].items():
        expected = fresh[key] if key.startswith("head.") else donor_state[key]
        assert torch.equal(value, expected), key


def test_records_the_initial_weights_were_pretrained_on_are_counted_and_flagged(
    make_cfg, monkeypatch, capsys
):
    import ecgadapt.train.finetune as finetune_module
    from ecgadapt.data.cache import load_or_prepare

    cfg = make_cfg("linear_probe", "seen", epochs=1)
    index = load_or_prepare(cfg.data.root, cfg.data.rate, cache_dir=cfg.data.cache_dir, progress=False).index
    by_fold = {f: index.loc[index["strat_fold"] == f, "ecg_id"].tolist() for f in (1, 9, 10)}
    seen = frozenset([*by_fold[10][:2], by_fold[9][0], *by_fold[1][:3]])  # 2 test, 1 validation, 3 training
    monkeypatch.setattr(finetune_module, "seen_ptbxl_ids", lambda sha: seen)
    assert (
        finetune_module.pretraining_overlap(None, cfg.data, "sha") is None
    )  # synthetic data: ids are not PTB-XL's
    monkeypatch.setattr("ecgadapt.data.synthetic.MARKER_NAME", "no-such-marker")  # as if it were real PTB-XL
    final = json.loads((run_finetune(cfg) / "final.json").read_text())
    overlap = final["pretraining_overlap"]
    assert {k: overlap[k] for k in ("train", "val", "test")} == {"train": 3, "val": 1, "test": 2}
    assert any("signals of 2 test and 1 validation records" in note for note in final["notes"])
    assert (
        "note: the initial weights were pretrained on the (unlabelled) signals of 2 test"
        in capsys.readouterr().out
    )


def test_only_the_bundled_cnn_has_seen_ptbxl_records_and_none_of_ptbxl_500(shared, tmp_path):
    from ecgadapt.data.cache import load_or_prepare
    from ecgadapt.runs.hashing import file_sha256
    from ecgadapt.train.config import DataConfig
    from ecgadapt.train.finetune import pretraining_overlap
    from ecgadapt.weights import bundled_path, seen_ptbxl_ids

    cnn = seen_ptbxl_ids(file_sha256(bundled_path("xresnet1d_tiny")))
    assert len(cnn) == 1785 and min(cnn) == 519 and max(cnn) == 21832
    assert seen_ptbxl_ids(file_sha256(bundled_path("ecg_vit_tiny"))) == frozenset() == seen_ptbxl_ids(None)
    ids_file = shared / "data" / "ptbxl-unlabelled-1785" / "ecg_ids.csv"
    if not ids_file.is_file():
        pytest.skip(f"{ids_file} not found")
    assert cnn == frozenset(int(i) for i in ids_file.read_text().split()[1:])
    root = shared / "data" / "ptbxl-500"
    if not root.is_dir():
        pytest.skip(f"{root} not found")
    cache = load_or_prepare(root, 100, cache_dir=tmp_path, progress=False)
    sha = file_sha256(bundled_path("xresnet1d_tiny"))
    overlap = pretraining_overlap(cache, DataConfig(root=str(root)), sha)
    assert {k: overlap[k] for k in ("train", "val", "test")} == {"train": 0, "val": 0, "test": 0}
    # 5 records share a patient with the encoder's pretraining records (folds 5, 6, 7, 7 and 9)
    assert overlap["same_patient"] == {"train": 4, "val": 1, "test": 0} and overlap["unknown"] == []
