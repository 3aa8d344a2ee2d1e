"""A run never writes through a symlink planted at any of its file names (issue 22, item 1), with real runs,
real symlinks and victim files outside the run directory."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ecgadapt.errors import WriteError
from ecgadapt.runs.rundir import MetricsLog
from ecgadapt.train.finetune import run_finetune

FIT_FILES = (
    "config.yaml",
    "inputs.json",
    "env.json",
    "metrics.csv",
    "final.json",
    "calibration.json",
    "predictions_val.npz",
    "predictions_test.npz",
    "checkpoints/last.pt",
    "checkpoints/best.pt",
    "checkpoints/best_stage0.pt",
    "checkpoints/best_stage1.pt",
)
"""Every file a fine-tuning run writes (its lock aside: a symlinked ``.lock`` is refused, tests/test_locks.py)."""


class Stop(Exception):
    """Raised by a callback to stop a run after its first epoch (as a kill would, ``last.pt`` written)."""


def stop_after_first_epoch(event: str, info: dict) -> None:
    if event == "epoch_end":
        raise Stop


def plant_links(run: Path, names: tuple[str, ...], outside: Path) -> dict[Path, bytes]:
    """Replace each of ``names`` in ``run`` by a symlink to a file in ``outside`` holding the same bytes (or
    ``keep`` when the run has no such file yet); return every victim's bytes."""
    outside.mkdir(exist_ok=True)
    victims = {}
    for name in names:
        path = run / name
        victim = outside / name.replace("/", "__")
        if path.is_file():
            shutil.copyfile(path, victim)
            path.unlink()
        else:
            victim.write_bytes(b"keep\n")
            path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to(victim)
        victims[victim] = victim.read_bytes()
    return victims


def test_resuming_a_run_whose_files_are_all_symlinks_writes_none_of_their_targets(make_cfg, tmp_path):
    cfg = make_cfg("lp_ft", "linked", epochs=2)
    with pytest.raises(Stop):
        run_finetune(cfg, callbacks=[stop_after_first_epoch])
    run = Path(cfg.out)
    victims = plant_links(run, FIT_FILES, tmp_path / "outside")
    run_finetune(cfg, resume=True)
    assert {v: v.read_bytes() for v in victims} == victims, "a run wrote through a symlink"
    for name in set(FIT_FILES) - {"checkpoints/best_stage0.pt"}:  # the probe's best was not bettered: kept
        assert (run / name).is_file() and not (run / name).is_symlink(), f"{name} was not rewritten"
    assert len(MetricsLog(run / "metrics.csv").rows()) == 4


def test_robustness_and_calibrate_never_write_through_a_symlink(make_cfg, tmp_path):
    from ecgadapt.eval.temperature import calibrate_run
    from ecgadapt.inference.robustness import run_robustness

    run = run_finetune(make_cfg("linear_probe", "scored", epochs=1))
    names = ("robustness.csv", "robustness.png", "calibration.json")
    victims = plant_links(run, names, tmp_path / "outside")
    run_robustness(run, corruptions=["gaussian_noise"], severities=[1])
    calibrate_run(run, "per_class")
    assert {v: v.read_bytes() for v in victims} == victims
    assert all((run / n).is_file() and not (run / n).is_symlink() for n in names)


def test_appending_a_metrics_row_never_follows_a_symlink(tmp_path):
    victim = tmp_path / "victim.csv"
    victim.write_text("keep\n")
    (tmp_path / "metrics.csv").symlink_to(victim)
    log = MetricsLog(tmp_path / "metrics.csv")
    with pytest.raises(WriteError, match="symlink"):
        log.append({"stage": 0, "epoch": 0})
    log.truncate(0)  # what a resume does first: the link is replaced by the run's own file
    log.append({"stage": 0, "epoch": 0})
    assert victim.read_text() == "keep\n" and [r["epoch"] for r in log.rows()] == ["0"]


def test_a_pretrained_encoder_is_never_written_through_a_symlink(tmp_path):
    from ecgadapt.models import create_model
    from ecgadapt.pretrain.pretrain import save_encoder

    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    for name in ("encoder.safetensors", "encoder.safetensors.tmp"):
        (tmp_path / name).symlink_to(victim)
    encoder = create_model("ecg_vit_tiny", num_classes=0, width=16, depth=1, heads=1, patch_size=250)
    save_encoder(encoder, tmp_path / "encoder.safetensors", "ecg_vit_tiny")
    assert victim.read_text() == "keep\n" and not (tmp_path / "encoder.safetensors").is_symlink()
