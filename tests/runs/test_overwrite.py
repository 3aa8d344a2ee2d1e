"""``--overwrite`` clears only a recognisable run, and only the files a run writes (issue 22, item 2).

Real folders, real files and real symlinks: what is refused must be left byte for byte as it was.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ecgadapt.errors import ConfigError
from ecgadapt.runs.creation import check_run_dir, foreign_entries, prepare_run_dir, run_dir_problem

FINETUNE_CONFIG = "data: {task: rhythm}\nmodel: {name: ecg_vit_tiny}\nrecipe: {name: scratch}\n"
PRETRAIN_CONFIG = "model: ecg_vit_tiny\ncorpora: [deepfake:8]\nepochs: 1\n"


def write_run(path: Path, config: str = FINETUNE_CONFIG) -> Path:
    """Every kind of file a finished (tuned, scored, interrupted) run leaves, with dummy contents."""
    files = [
        "config.yaml",
        "inputs.json",
        "env.json",
        "metrics.csv",
        "final.json",
        "calibration.json",
        "tune.json",
        "predictions_val.npz",
        "predictions_test.npz",
        "external_cinc.json",
        "predictions_external_cinc.npz",
        "robustness.csv",
        "robustness.png",
        ".lock",
        "final.json.k3j_9xq2.tmp",  # left by a killed atomic write
        "predictions_val.npz.ab12cd34.tmp.npz",
        "checkpoints/last.pt",
        "checkpoints/best.pt",
        "checkpoints/best_stage0.pt",
        "checkpoints/best_stage1.pt",
        "checkpoints/last.pt.zz99aa11.tmp",
        "candidates/lr1e-4/config.yaml",
        "candidates/lr1e-4/inputs.json",
        "candidates/lr1e-4/checkpoints/best.pt",
        "candidates/lr1e-3/final.json",
    ]
    for name in files:
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(config if name.endswith("config.yaml") else "x")
    return path


def snapshot(path: Path) -> dict[str, str]:
    """Every entry under ``path``: file contents, symlink targets, folders."""
    out = {}
    for p in sorted(path.rglob("*")):
        key = str(p.relative_to(path))
        if p.is_symlink():
            out[key] = f"-> {p.readlink()}"
        elif p.is_dir():
            out[key] = "/"
        else:
            out[key] = p.read_text()
    return out


def test_the_issue_reproduction_a_folder_with_a_config_yaml_is_not_deleted(tmp_path):
    v = tmp_path / "v"
    (v / "src").mkdir(parents=True)
    (v / "config.yaml").write_text("name: p\n")
    (v / "src" / "thesis.tex").write_text("x\n")
    before = snapshot(v)
    with pytest.raises(ConfigError, match="refusing to overwrite .*not an ecgadapt run directory"):
        prepare_run_dir(v, overwrite=True)
    assert snapshot(v) == before


def test_a_run_is_cleared_of_its_own_files_only_and_the_folder_is_kept(tmp_path):
    run = write_run(tmp_path / "run")
    assert foreign_entries(run) == []
    assert prepare_run_dir(run, overwrite=True) == run
    assert run.is_dir() and list(run.iterdir()) == []


def test_a_pretraining_run_is_recognised_too(tmp_path):
    run = tmp_path / "pre"
    for name in ("config.yaml", "env.json", "metrics.csv", "encoder.safetensors", "seen_ptbxl_ids.txt"):
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_text(PRETRAIN_CONFIG if name == "config.yaml" else "x")
    assert run_dir_problem(run) is None
    prepare_run_dir(run, overwrite=True)
    assert list(run.iterdir()) == []


@pytest.mark.parametrize(
    "extra",
    [
        "notes.txt",
        "data/ecg.dat",
        "checkpoints/mine.pt",
        "checkpoints/old/best.pt",
        "candidates/lr1e-4/paper.tex",
    ],
)
def test_a_run_holding_anything_else_is_refused_naming_it(tmp_path, extra):
    run = write_run(tmp_path / "run")
    (run / extra).parent.mkdir(parents=True, exist_ok=True)
    (run / extra).write_text("precious\n")
    before = snapshot(run)
    with pytest.raises(ConfigError, match="would delete; nothing was deleted") as info:
        check_run_dir(run, overwrite=True)
    assert extra.split("/")[0] in str(info.value) or extra in str(info.value)
    with pytest.raises(ConfigError):
        prepare_run_dir(run, overwrite=True)
    assert snapshot(run) == before


@pytest.mark.parametrize(
    ("config", "markers", "why"),
    [
        (None, ["env.json"], "holds no config.yaml"),
        ("seed: 0\n", ["env.json"], "not a run's config"),
        ("[1, 2\n", ["env.json"], "does not parse"),
        (FINETUNE_CONFIG, [], "none of a run's marker files"),
    ],
)
def test_a_folder_that_is_not_recognisably_a_run_is_refused(tmp_path, config, markers, why):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.csv").write_text("x")
    if config is not None:
        (run / "config.yaml").write_text(config)
    for name in markers:
        (run / name).write_text("{}")
    before = snapshot(run)
    with pytest.raises(ConfigError, match=why):
        prepare_run_dir(run, overwrite=True)
    assert snapshot(run) == before


def test_symlinks_in_a_run_are_removed_never_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim.txt"
    victim.write_text("keep\n")
    run = write_run(tmp_path / "run")
    for name in ("final.json", "checkpoints/last.pt", "candidates/lr1e-4/inputs.json"):
        (run / name).unlink()
        (run / name).symlink_to(victim)
    prepare_run_dir(run, overwrite=True)
    assert list(run.iterdir()) == [] and victim.read_text() == "keep\n"


def test_a_symlinked_folder_inside_a_run_is_refused_and_its_target_kept(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "best.pt").write_text("keep\n")
    run = write_run(tmp_path / "run")
    (run / "data").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ConfigError, match="data"):
        prepare_run_dir(run, overwrite=True)
    assert (outside / "best.pt").read_text() == "keep\n" and (run / "data").is_symlink()
