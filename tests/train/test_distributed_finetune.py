"""Fine-tuning on two gloo processes (DistributedDataParallel) against one process with the same global batch.

What is promised, and tested here: without BatchNorm in training mode and without dropout, a 2-process run's
validation and test scores, per-record predictions, metrics rows and weights equal the 1-process run's within
float tolerance (the ranks sum their gradients in another order); a BatchNorm backbone in eval mode (a probe)
does too. Rank 1 never opens a file of the run directory; a killed 2-process run resumes at 2 or 1 processes
to the uninterrupted run's result; a locked run directory fails both ranks with the lock's message.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from distributed_runs import rank_errors, run_ranks
from ecgadapt.engine.checkpoints import load_checkpoint
from ecgadapt.locks import RunLock
from ecgadapt.train.config import FinetuneConfig
from ecgadapt.train.finetune import build_model, run_finetune
from tiny_runs import tiny_config

MOVING = (
    "training.batch_size=15",  # 96 training records: global batches of 15 split 8 + 7, so the loss weights matter
    "recipe.stages.0.lr=0.03",
    "recipe.stages.1.lr=0.003",
    "recipe.stages.1.warmup_epochs=0",
)
"""lp_ft on the tiny ViT (LayerNorm, no dropout) with learning rates that move the scores epoch by epoch."""

SCORE_TOL = 1e-5
WEIGHT_TOL = (
    1e-4  # AdamW divides by the root of tiny second moments: last-bit gradient differences grow a little
)
METRIC_COLUMNS = ["train_loss", "val_loss", "val_macro_auroc", "val_macro_auprc"]


def _final(run: Path) -> dict:
    return json.loads((run / "final.json").read_text())


def assert_same_results(a: Path, b: Path) -> None:
    """Equal scores, predictions, epochs and weights within float tolerance."""
    fa, fb = _final(a), _final(b)
    for split in ("val", "test"):
        for metric in ("macro_auroc", "macro_auprc", "loss"):
            assert fa[split][metric] == pytest.approx(fb[split][metric], abs=SCORE_TOL), (split, metric)
        pa, pb = np.load(a / f"predictions_{split}.npz"), np.load(b / f"predictions_{split}.npz")
        assert (pa["ecg_ids"] == pb["ecg_ids"]).all()
        np.testing.assert_allclose(pa["y_score"], pb["y_score"], atol=SCORE_TOL)
    assert (fa["best"]["stage"], fa["best"]["epoch"]) == (fb["best"]["stage"], fb["best"]["epoch"])
    ma, mb = (pd.read_csv(r / "metrics.csv") for r in (a, b))
    assert ma[["stage", "epoch", "best"]].equals(mb[["stage", "epoch", "best"]])
    pd.testing.assert_frame_equal(ma[METRIC_COLUMNS], mb[METRIC_COLUMNS], rtol=1e-4)
    wa, wb = (load_checkpoint(r / "checkpoints/best.pt")["model"] for r in (a, b))
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], atol=WEIGHT_TOL, rtol=WEIGHT_TOL)


def _finetune_watched(cfg: FinetuneConfig, log_dir: Path) -> None:
    """``run_finetune(cfg)``, writing to ``log_dir/rank{r}.json`` every path under the run directory that this
    process opened, renamed, removed or listed (Python's audit events)."""
    run_dir, touched = os.path.realpath(cfg.out), []

    def audit(event: str, args: tuple) -> None:
        try:
            first = args[0] if args else None
            if isinstance(first, (str, bytes, os.PathLike)) and os.path.realpath(
                os.fsdecode(first)
            ).startswith(run_dir):
                touched.append([event, os.fsdecode(first)])
        except Exception:  # noqa: BLE001 - an audit hook must never fail the event
            pass

    sys.addaudithook(audit)
    run_finetune(cfg)
    rank = int(os.environ["RANK"])
    (log_dir / f"rank{rank}.json").write_text(json.dumps(touched))


@pytest.fixture(scope="module")
def reference(synthetic_root: Path, syn_cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The lp_ft run in one process and in two (whose ranks' file accesses are in ``touched``)."""
    base = tmp_path_factory.mktemp("ddp")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = run_finetune(tiny_config(synthetic_root, syn_cache_dir, base / "one", "lp_ft", *MOVING))
        two = tiny_config(synthetic_root, syn_cache_dir, base / "two", "lp_ft", *MOVING)
        codes = run_ranks(_finetune_watched, 2, two, base, errors=base / "errors")
    finally:
        torch.set_num_threads(threads)
    assert codes == [0, 0], rank_errors(base / "errors")
    touched = [json.loads((base / f"rank{r}.json").read_text()) for r in (0, 1)]
    return {"one": one, "two": Path(two.out), "touched": touched, "config": two}


def test_two_processes_give_the_scores_predictions_and_weights_of_one(reference):
    one, two = reference["one"], reference["two"]
    assert_same_results(one, two)
    rows = pd.read_csv(two / "metrics.csv")
    assert (
        rows["val_macro_auroc"].nunique() > 1
    )  # the scores moved: the equality is not that of untouched models
    initial = build_model(reference["config"], 5).state_dict()
    trained = load_checkpoint(two / "checkpoints/best.pt")["model"]
    assert max((trained[k] - initial[k]).abs().max().item() for k in initial) > 100 * WEIGHT_TOL
    envs = [json.loads((run / "env.json").read_text()) for run in (one, two)]
    assert [e["world_size"] for e in envs] == [1, 2]


def test_only_rank_0_touches_the_run_directory(reference):
    rank0, rank1 = reference["touched"]
    assert rank1 == []
    assert {"open", "os.rename"} <= {event for event, _ in rank0}  # the watch sees rank 0's writes
    files = {p.relative_to(reference["two"]) for p in reference["two"].rglob("*")}
    assert files == {p.relative_to(reference["one"]) for p in reference["one"].rglob("*")}


def test_a_probe_of_a_batchnorm_backbone_in_eval_mode_gives_the_scores_of_one_process(make_cfg, tmp_path):
    # xresnet1d50 has BatchNorm: in a probe the frozen backbone is in eval mode, so no batch statistics differ
    one = run_finetune(make_cfg("linear_probe", "one", *MOVING[:2], model="xresnet1d50"))
    two = make_cfg("linear_probe", "two", *MOVING[:2], model="xresnet1d50")
    assert run_ranks(run_finetune, 2, two, errors=tmp_path / "errors") == [0, 0], rank_errors(
        tmp_path / "errors"
    )
    assert_same_results(one, Path(two.out))


def _kill_rank_0_after(epochs: int):
    """A callback (rank 0 only calls callbacks) that SIGKILLs its process once ``epochs`` epochs are written."""
    ends = []

    def callback(event: str, info: dict) -> None:
        if event == "epoch_end":
            ends.append(info)
            if len(ends) == epochs:
                os.kill(os.getpid(), signal.SIGKILL)

    return callback


def _finetune_killed(cfg: FinetuneConfig, epochs: int) -> None:
    run_finetune(cfg, callbacks=[_kill_rank_0_after(epochs)])


def test_a_killed_two_process_run_resumes_at_two_or_one_process_to_the_same_result(
    reference, synthetic_root, syn_cache_dir, tmp_path
):
    killed = tiny_config(synthetic_root, syn_cache_dir, tmp_path / "killed", "lp_ft", *MOVING)
    # killed after stage 1's first epoch: the resume continues mid-stage (optimizer, schedule, last.pt's model)
    codes = run_ranks(_finetune_killed, 2, killed, 3, errors=tmp_path / "errors")
    assert codes[0] == -signal.SIGKILL and codes[1] != 0  # rank 1 fails at its next collective
    assert (
        len(pd.read_csv(tmp_path / "killed/metrics.csv")) == 3
        and not (tmp_path / "killed/final.json").exists()
    )
    shutil.copytree(tmp_path / "killed", tmp_path / "alone")

    codes = run_ranks(run_finetune, 2, killed, True, errors=tmp_path / "errors2")
    assert codes == [0, 0], rank_errors(tmp_path / "errors2")
    assert_same_results(Path(killed.out), reference["two"])

    alone = tiny_config(synthetic_root, syn_cache_dir, tmp_path / "alone", "lp_ft", *MOVING)
    run_finetune(alone, resume=True)
    assert_same_results(tmp_path / "alone", reference["two"])
    env = json.loads((tmp_path / "alone/env.json").read_text())
    assert [env["world_size"], *(r["world_size"] for r in env["resumes"])] == [2, 1]


def test_a_locked_run_directory_fails_every_rank_with_the_lock_message(make_cfg, tmp_path):
    cfg = make_cfg("lp_ft", "locked")
    Path(cfg.out).mkdir()
    with RunLock(cfg.out):  # another process writes this run
        codes = run_ranks(run_finetune, 2, cfg, errors=tmp_path / "errors")
    errors = rank_errors(tmp_path / "errors")
    assert codes == [1, 1]
    assert errors[0] == errors[1] and errors[0].startswith(
        f"RunLockedError: run directory {cfg.out} is being"
    )
    assert sorted(p.name for p in Path(cfg.out).iterdir()) == []


@pytest.mark.slow  # three fresh interpreters import torch (about 10 s); the forked runs above cover the rest
def test_torchrun_starts_python_m_ecgadapt_finetune_in_two_processes(reference, tmp_path):
    cfg = dataclasses.replace(reference["config"], out=str(tmp_path / "cli"))
    cfg.to_yaml(tmp_path / "cfg.yaml")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ECGADAPT_DIST_TIMEOUT_S": "60"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd += ["-m", "ecgadapt", "finetune", "--config", str(tmp_path / "cfg.yaml")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("starting ") == 1 and "x 2 processes" in proc.stdout  # rank 1 prints nothing
    assert_same_results(tmp_path / "cli", reference["one"])
