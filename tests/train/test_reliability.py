"""Issue 10: one writer per run directory, failed starts that leave nothing, overwrite that keeps the old run
until the new one starts, and one clear message for a full disk or a read-only --out."""

from __future__ import annotations

import errno
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ecgadapt.bench.cells import make_run, run_status
from ecgadapt.cli import main
from ecgadapt.engine import checkpoints as rundir
from ecgadapt.errors import CheckpointError, ConfigError, DataError, WriteError
from ecgadapt.locks import LOCK_FILE, RunLock, RunLockedError
from ecgadapt.train.finetune import run_finetune


@pytest.fixture
def lock_holder():
    """``hold(run_dir)``: another process that holds ``run_dir``'s lock until the test ends; returns its PID."""
    procs = []

    def hold(run_dir: Path) -> int:
        code = textwrap.dedent(f"""
            import sys, time
            from ecgadapt.locks import RunLock
            lock = RunLock({str(run_dir)!r})
            print("locked", flush=True)
            time.sleep(120)
        """)
        p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        procs.append(p)
        assert p.stdout.readline().strip() == "locked"
        return p.pid

    yield hold
    for p in procs:
        p.kill()
        p.wait()


def test_second_writer_on_a_locked_run_is_refused_naming_dir_and_pid(make_cfg, tmp_path, lock_holder):
    cfg = make_cfg("linear_probe", "locked", epochs=1)
    run = run_finetune(cfg)
    final = (run / "final.json").read_text()
    pid = lock_holder(run)
    for kwargs in ({"resume": True}, {"overwrite": True}):
        with pytest.raises(RunLockedError) as info:
            run_finetune(cfg, **kwargs)
        assert str(run) in str(info.value) and f"PID {pid}" in str(info.value)
    assert (run / "final.json").read_text() == final  # the overwrite deleted nothing


def test_lock_is_released_and_removed_after_a_run(make_cfg):
    run = run_finetune(make_cfg("linear_probe", "released", epochs=1))
    assert not (run / LOCK_FILE).exists()
    with RunLock(run):  # free again
        pass


def test_a_lock_file_left_by_a_killed_start_blocks_nothing(make_cfg, tmp_path):
    cfg = make_cfg("linear_probe", "stale", epochs=1)
    Path(cfg.out).mkdir()
    (Path(cfg.out) / LOCK_FILE).write_text("999999\n")  # a killed holder: the kernel dropped its flock
    assert run_status(make_run(Path(cfg.out), cfg)) == "new"
    run_finetune(cfg)
    assert (Path(cfg.out) / "final.json").is_file()


@pytest.mark.parametrize("bad", ["weights", "empty_weights", "data"])
def test_failed_start_leaves_nothing_and_a_plain_retry_succeeds(make_cfg, tmp_path, bad):
    bogus = tmp_path / "broken.pt"
    bogus.write_bytes(b"" if bad == "empty_weights" else b"not a checkpoint")
    override = {
        "weights": f"model.weights={bogus}",
        "empty_weights": f"model.weights={bogus}",
        "data": f"data.root={tmp_path / 'no_such_folder'}",
    }[bad]
    with pytest.raises((ConfigError, DataError, CheckpointError)):
        run_finetune(make_cfg("baseline_ft", "retry", override, epochs=1))
    out = tmp_path / "retry"
    assert not out.exists() or not any(out.iterdir()), "a failed start left files that block its retry"
    good = make_cfg("baseline_ft", "retry", "model.weights=null", epochs=1)
    assert (run_finetune(good) / "final.json").is_file()  # no --resume, no --overwrite needed


def test_overwrite_with_bad_inputs_keeps_the_old_run(make_cfg, tmp_path):
    cfg = make_cfg("linear_probe", "keep", epochs=1)
    run = run_finetune(cfg)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    bogus = tmp_path / "empty.pt"
    bogus.write_bytes(b"")
    for bad in ([f"model.weights={bogus}"], [f"data.root={tmp_path / 'missing'}"]):
        with pytest.raises((CheckpointError, DataError, ConfigError)):
            run_finetune(make_cfg("linear_probe", "keep", *bad, epochs=1), overwrite=True)
        assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    run_finetune(cfg, overwrite=True)  # good inputs replace it
    assert (run / "final.json").is_file()


def test_full_disk_during_finetune_is_one_clear_message(make_cfg, tmp_path, monkeypatch, capsys):
    cfg = make_cfg("linear_probe", "unused", epochs=1)
    cfg_file = tmp_path / "cfg.yaml"
    cfg.to_yaml(cfg_file)
    out = tmp_path / "full"

    def no_space(obj, path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(rundir.torch, "save", no_space)
    rc = main(["finetune", "--config", str(cfg_file), "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "disk is full" in err and "--resume" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not list((out / "checkpoints").glob("*.tmp"))  # no half-written checkpoint left


def test_torch_zip_writer_failure_is_reported_as_a_write_error(tmp_path, monkeypatch):
    def failed(obj, path, *args, **kwargs):
        raise RuntimeError(
            "[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed writing file"
        )

    monkeypatch.setattr(rundir.torch, "save", failed)
    monkeypatch.setattr(rundir, "_disk_full", lambda path: True)
    with pytest.raises(WriteError, match="disk is full"):
        rundir.save_checkpoint(tmp_path / "checkpoints" / "last.pt", {"x": 1})


def test_read_only_out_is_one_clear_message(make_cfg, tmp_path, monkeypatch, capsys):
    cfg = make_cfg("linear_probe", "unused", epochs=1)
    cfg_file = tmp_path / "cfg.yaml"
    cfg.to_yaml(cfg_file)
    out = tmp_path / "ro" / "run"
    real_mkdir = Path.mkdir

    def read_only(self, *args, **kwargs):
        if str(self).startswith(str(tmp_path / "ro")):
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", read_only)
    rc = main(["finetune", "--config", str(cfg_file), "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "read-only" in err and str(out) in err and "Traceback" not in err


def test_missing_data_folder_names_the_finetune_flag(make_cfg, tmp_path):
    with pytest.raises(DataError, match="--data for finetune") as info:
        run_finetune(make_cfg("linear_probe", "nodata", f"data.root={tmp_path / 'missing'}", epochs=1))
    assert "pass --root" not in str(info.value)


def test_spec_recipe_typo_names_the_spec_file(tmp_path, synthetic_root):
    from ecgadapt.bench.grid import expand_cells, load_spec

    spec = tmp_path / "typo.yaml"
    spec.write_text(
        "name: typo\ntasks: [superdiagnostic]\nmodels: [{name: ecg_vit_tiny, weights: null}]\n"
        "recipes: [lp_fft]\nfractions: [1.0]\nseeds: [0]\n"
    )
    with pytest.raises(ConfigError, match=f"spec {spec}.*unknown recipe 'lp_fft'"):
        expand_cells(load_spec(spec), synthetic_root, tmp_path / "out")


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_stop_signal_ends_finetune_cleanly_and_says_how_to_resume(make_cfg, tmp_path, sig):
    import os
    import signal
    import time

    import torch

    cfg = make_cfg("linear_probe", "unused", epochs=200)
    cfg_file = tmp_path / "cfg.yaml"
    cfg.to_yaml(cfg_file)
    out = tmp_path / "stopped"
    code = f"import sys; from ecgadapt.cli import main; sys.exit(main(['finetune', '--config', {str(cfg_file)!r}, '--out', {str(out)!r}, '--no-progress']))"  # noqa: E501
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        deadline = time.monotonic() + 120
        while not (out / "checkpoints" / "last.pt").is_file() and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.1)
        proc.send_signal(getattr(signal, sig))
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + getattr(signal, sig)
    assert (
        f"interrupted ({sig})" in err
        and f"ecgadapt finetune --out {out} --resume" in err
        and "Traceback" not in err
    )
    state = torch.load(out / "checkpoints" / "last.pt", weights_only=True)["state"]  # a complete checkpoint
    assert state["n_metric_rows"] >= 1
    assert not list(out.rglob("*.tmp")) and not (out / LOCK_FILE).exists()


def test_overwrite_of_a_tuned_run_with_bad_inputs_keeps_it(make_cfg, tmp_path):
    from ecgadapt.bench.tune import run_tuned
    from ecgadapt.train.config import apply_overrides

    cfg = apply_overrides(make_cfg("linear_probe", "tuned", epochs=1), ["tune.lr=[0.001,0.01]"])
    run = run_tuned(cfg)
    final = (run / "final.json").read_text()
    bad = apply_overrides(cfg, [f"data.root={tmp_path / 'missing'}"])
    with pytest.raises(DataError):
        run_tuned(bad, overwrite=True)
    assert (run / "final.json").read_text() == final


@pytest.mark.slow
@pytest.mark.parametrize("sig", ["SIGKILL", "SIGTERM"])
def test_killed_or_stopped_benchmark_leaves_no_worker_training(synthetic_root, syn_cache_dir, tmp_path, sig):
    """``kill -9`` (or SIGTERM) of ``ecgadapt benchmark --jobs 2``: its workers (the holders of the cells' locks)
    exit within seconds and no cell stays locked; SIGTERM also exits 143 saying how to continue."""
    import os
    import signal
    import time

    out = tmp_path / "res"
    args = [
        sys.executable,
        "-m",
        "ecgadapt.cli",
        "benchmark",
        "--spec",
        "paper-main",
        "--data",
        str(synthetic_root),
        "--out",
        str(out),
        "--jobs",
        "2",
        "--no-progress",
        "--set",
        "models=[{name: ecg_vit_tiny, weights: null, kwargs: {width: 16, depth: 1, heads: 1, patch_size: 250}}]",
        "--set",
        "recipes=[linear_probe,scratch]",
        "--set",
        "tasks=[superdiagnostic]",
        "--set",
        "seeds=[0,1,2,3]",
        "--set",
        "budget_epochs=500",
        "--set",
        "training.min_steps=0",
        "--set",
        "training.max_train_batches=1",
        "--set",
        f"data.cache_dir={syn_cache_dir}",
        "--set",
        "data.rate=100",
    ]
    log = tmp_path / "stderr.txt"
    with log.open("w") as fh:  # a file, not a pipe: its reader would wait for every process that inherited it
        env = {**os.environ, "OMP_NUM_THREADS": "1", "ECGADAPT_TEST_MARK": str(tmp_path)}
        parent = subprocess.Popen(args, env=env, stderr=fh)
    try:
        deadline = time.monotonic() + 180
        locks: list[Path] = []
        while len(locks) < 2 and time.monotonic() < deadline:
            assert parent.poll() is None, log.read_text()
            locks = [p for p in (out / "runs").glob(f"*/{LOCK_FILE}") if (p.parent / "checkpoints").is_dir()]
            time.sleep(0.2)
        assert len(locks) >= 2, "the workers never started training"
        workers = {int(p.read_text()) for p in locks}
        parent.send_signal(getattr(signal, sig))
        parent.wait(60)
        err = log.read_text()

        def alive(pid: int) -> bool:
            try:
                return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
            except OSError:
                return False

        deadline = time.monotonic() + 5
        while any(alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(alive(w) for w in workers), "workers kept training after their parent was stopped"
        for (
            lock
        ) in locks:  # nobody holds the cells any more (their loader workers, which share the lock, die too)
            deadline = time.monotonic() + 10
            while True:
                try:
                    RunLock(lock.parent).release()
                    break
                except RunLockedError:
                    assert time.monotonic() < deadline, f"{lock.parent} stayed locked"
                    time.sleep(0.1)
        deadline = time.monotonic() + 120  # data-loader workers may still be starting (importing torch) first
        while _marked(str(tmp_path)) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not _marked(str(tmp_path)), "processes of the benchmark outlived it"
        if sig == "SIGTERM":
            assert parent.returncode == 143 and "interrupted (SIGTERM); rerun the same command" in err
            assert (
                len([p for p in (out / "runs").iterdir() if (p / "config.yaml").is_file()]) == 2
            )  # none queued ran
    finally:
        if parent.poll() is None:
            parent.kill()


def _marked(mark: str) -> list[int]:
    """PIDs of live processes whose environment holds ``ECGADAPT_TEST_MARK=mark``."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if f"ECGADAPT_TEST_MARK={mark}".encode() in (proc / "environ").read_bytes().split(b"\0"):
                if (proc / "stat").read_text().split(")")[-1].split()[0] != "Z":
                    found.append(int(proc.name))
        except OSError:
            continue
    return found


def test_evaluate_external_robustness_and_selection_refuse_a_run_being_written(make_cfg, tmp_path):
    from ecgadapt.bench.candidates import finish_tuned_run
    from ecgadapt.inference.external import evaluate_external
    from ecgadapt.inference.robustness import run_robustness

    run = run_finetune(make_cfg("linear_probe", "held", epochs=1))
    before = sorted(p.name for p in run.iterdir())
    with RunLock(run):  # a training process writing it (flock: conflicts even from this process)
        for call in (
            lambda: evaluate_external(run, tmp_path, "folder"),
            lambda: run_robustness(run),
            lambda: finish_tuned_run(run),
        ):
            with pytest.raises(RunLockedError, match=str(run)):
                call()
    assert sorted(p.name for p in run.iterdir()) == before  # nothing written


def test_overwrite_deletes_no_folder_that_is_not_a_run_and_nothing_a_run_did_not_write(
    make_cfg, tmp_path, capsys
):
    """Issue 22, item 2: ``finetune --overwrite`` on a folder with a ``config.yaml`` deleted all of it."""
    cfg = make_cfg("linear_probe", "unused", epochs=1)
    cfg_file = tmp_path / "cfg.yaml"
    cfg.to_yaml(cfg_file)
    v = tmp_path / "v"
    (v / "src").mkdir(parents=True)
    (v / "config.yaml").write_text("name: p\n")
    (v / "src" / "thesis.tex").write_text("x\n")
    args = ["finetune", "--config", str(cfg_file), "--no-progress", "--overwrite", "--out"]
    assert main([*args, str(v)]) == 2
    err = capsys.readouterr().err
    assert (
        "refusing to overwrite" in err and "not an ecgadapt run directory" in err and "Traceback" not in err
    )
    assert (v / "src" / "thesis.tex").read_text() == "x\n" and (v / "config.yaml").read_text() == "name: p\n"

    run = run_finetune(make_cfg("linear_probe", "real", epochs=1))
    (run / "notes.txt").write_text("mine\n")
    assert main([*args, str(run)]) == 2
    err = capsys.readouterr().err
    assert "notes.txt" in err and "would delete; nothing was deleted" in err
    assert (run / "notes.txt").is_file() and (run / "final.json").is_file()
    (run / "notes.txt").unlink()
    assert main([*args, str(run)]) == 0  # a run holding only its own files is replaced
    assert (run / "final.json").is_file()


def _poison(checkpoint: Path) -> str:
    """Set one element of the first floating-point model tensor of ``checkpoint`` to NaN; return its name."""
    import torch

    state = torch.load(checkpoint, weights_only=True)
    key = next(k for k, v in state["model"].items() if v.is_floating_point())
    state["model"][key].view(-1)[0] = float("nan")
    torch.save(state, checkpoint)
    return f"model.{key}"


def test_nan_weights_in_a_runs_checkpoints_are_refused_by_every_command(make_cfg, tmp_path, capsys):
    """Issue 22, item 4: ``predict`` printed empty probabilities with exit 0; evaluate, robustness and --resume
    said "lower the learning rate"."""
    cfg = make_cfg("linear_probe", "poisoned", epochs=1)
    run = run_finetune(cfg)
    capsys.readouterr()
    bad = _poison(run / "checkpoints" / "best.pt")
    _poison(run / "checkpoints" / "last.pt")
    record = str(Path(cfg.data.root) / "records100" / "00000" / "00001_lr")
    commands = [
        ["predict", "--run", str(run), record],
        ["evaluate", str(run)],
        ["robustness", str(run), "--corruption", "gaussian_noise", "--severity", "1"],
    ]
    for args in commands:
        assert main(args) == 2, args
        captured = capsys.readouterr()
        assert "the file is corrupted" in captured.err and bad in captured.err, args
        assert "learning rate" not in captured.err and "Traceback" not in captured.err
        assert captured.out == ""  # no empty probabilities
    with pytest.raises(CheckpointError, match="last.pt holds NaN.*the file is corrupted"):
        run_finetune(cfg, resume=True)


def _stop_after(n_epochs: int):
    """A callback that stops a run (as a kill would, its ``last.pt`` written) after ``n_epochs`` epochs."""
    done = []

    def callback(event: str, info: dict) -> None:
        if event == "epoch_end":
            done.append(info)
            if len(done) >= n_epochs:
                raise KeyboardInterrupt

    return callback


def test_resume_refuses_another_runs_last_checkpoint_and_keeps_every_metrics_row(make_cfg):
    """Issue 22, item 7: ``--resume`` accepted another run's ``last.pt`` and truncated metrics.csv to its rows."""
    import shutil

    mine = make_cfg("linear_probe", "mine", epochs=4)
    other = make_cfg("linear_probe", "other", "seed=1", epochs=4)
    with pytest.raises(KeyboardInterrupt):
        run_finetune(mine, callbacks=[_stop_after(2)])
    with pytest.raises(KeyboardInterrupt):
        run_finetune(other, callbacks=[_stop_after(1)])
    run = Path(mine.out)
    metrics = (run / "metrics.csv").read_text()
    shutil.copyfile(Path(other.out) / "checkpoints" / "last.pt", run / "checkpoints" / "last.pt")
    with pytest.raises(ConfigError, match=r"last.pt belongs to another run \(config hash"):
        run_finetune(mine, resume=True)
    assert (run / "metrics.csv").read_text() == metrics  # no row dropped


def test_resume_refuses_a_metrics_log_that_lacks_checkpointed_epochs(make_cfg):
    cfg = make_cfg("linear_probe", "short", epochs=4)
    with pytest.raises(KeyboardInterrupt):
        run_finetune(cfg, callbacks=[_stop_after(2)])
    metrics = Path(cfg.out) / "metrics.csv"
    lines = metrics.read_text().splitlines(keepends=True)
    metrics.write_text("".join(lines[:-1]))  # the second epoch's row is gone
    with pytest.raises(ConfigError, match=r"holds 1 row\(s\) that do not end there"):
        run_finetune(cfg, resume=True)
    metrics.write_text("".join(lines))
    run_finetune(cfg, resume=True)
    assert len(metrics.read_text().splitlines()) == 1 + 4


def _one_message(capsys) -> str:
    """The error a command printed: one line, no traceback, no advice to load a file unsafely."""
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for unsafe in ("allow_pickle", "unsafely", "add_safe_globals", "weights_only", "pickle.load"):
        assert unsafe not in err, err
    return err


def test_a_negative_robustness_seed_is_one_message(trained_run, capsys):
    """Issue 22, item 11: ``robustness --seed -5`` gave numpy's traceback."""
    before = sorted(p.name for p in trained_run.iterdir())
    assert main(["robustness", str(trained_run), "--corruption", "gaussian_noise", "--seed", "-5"]) == 2
    assert "--seed -5" in _one_message(capsys)
    assert sorted(p.name for p in trained_run.iterdir()) == before


@pytest.mark.parametrize("damage", ["truncated", "object_array", "not_numpy"])
def test_calibrate_on_a_damaged_validation_file_is_one_message(trained_run, tmp_path, capsys, damage):
    """Issue 22, items 11 and 12: a truncated or object-array ``predictions_val.npz`` gave a traceback (and
    numpy's advice to load it with allow_pickle)."""
    import shutil

    import numpy as np

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    val = run / "predictions_val.npz"
    if damage == "truncated":
        val.write_bytes(val.read_bytes()[:300])
    elif damage == "object_array":
        np.savez(val, ecg_ids=np.array([1, "x"], dtype=object), class_names=np.array(["A"]))
    else:
        val.write_bytes(b"\x80\x04K\x01.")  # a pickle
    assert main(["calibrate", str(run)]) == 2
    err = _one_message(capsys)
    assert f"cannot read {val}" in err and "damaged or was not written by ecgadapt" in err


def test_torch_and_numpy_advice_to_load_unsafely_is_never_relayed(trained_run, tmp_path, capsys):
    import argparse

    import numpy as np
    import torch

    from ecgadapt.engine.checkpoints import load_checkpoint

    pickled = tmp_path / "pickled.pt"
    torch.save({"model": {"w": torch.ones(1)}, "args": argparse.Namespace(lr=1)}, pickled)
    with pytest.raises(CheckpointError, match="pickled Python object \\(argparse.Namespace\\)") as info:
        load_checkpoint(pickled)
    assert "add_safe_globals" not in str(info.value) and "trust" not in str(info.value)

    array = tmp_path / "x.npy"
    np.save(array, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert main(["predict", "--run", str(trained_run), str(array), "--rate", "100"]) == 2
    assert f"input {array} is not a readable .npy array: it holds pickled Python objects" in _one_message(
        capsys
    )


def test_calibrate_refuses_a_run_being_written(trained_run, tmp_path, capsys):
    """Issue 22, item 12: ``calibrate`` wrote calibration.json without taking the run's lock."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    before = (run / "calibration.json").read_bytes()
    with RunLock(run):
        assert main(["calibrate", str(run), "--mode", "per_class"]) == 2
    assert "being written by another ecgadapt process" in _one_message(capsys)
    assert (run / "calibration.json").read_bytes() == before
    assert main(["calibrate", str(run), "--mode", "per_class"]) == 0


def test_a_full_disk_while_writing_any_run_file_names_that_file(make_cfg, tmp_path, monkeypatch, capsys):
    """Found by the issue-22 probe: a full disk while writing config.yaml said "cannot write (output)" and gave
    the free space of the current folder's disk, not the one written to."""
    cfg = make_cfg("linear_probe", "unused", epochs=1)
    cfg_file = tmp_path / "cfg.yaml"
    cfg.to_yaml(cfg_file)
    out = tmp_path / "full"
    real_write_text = Path.write_text

    def full_disk(self, *args, **kwargs):
        if self.name.startswith("config.yaml."):  # the temporary file of the run's config
            raise OSError(errno.ENOSPC, "No space left on device")  # as a failed write: no file name
        return real_write_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full_disk)
    rc = main(["finetune", "--config", str(cfg_file), "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and f"cannot write {out / 'config.yaml'}: the disk is full" in err
    assert "(output)" not in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not list(out.glob("*.tmp"))
