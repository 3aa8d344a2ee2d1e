"""run_pretrain end to end on tiny configs: run directory, encoder checkpoint, refusal to overwrite, resume."""

import csv
import dataclasses
import re
from pathlib import Path

import pytest
import torch
import yaml
from safetensors import safe_open
from safetensors.torch import load_file

from ecgadapt.cli import main
from ecgadapt.errors import ConfigError
from ecgadapt.models import create_model
from ecgadapt.pretrain.config import PretrainConfig
from ecgadapt.pretrain.pretrain import (
    build_encoder,
    build_masked_model,
    run_pretrain,
    split_rows,
)
from tiny_runs import TINY_PRETRAIN_VIT as TINY  # noqa: E402
from tiny_runs import tiny_pretrain_config  # noqa: E402


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("corpora")


def _cfg(root: Path, cache_dir: Path, **kw) -> PretrainConfig:
    return tiny_pretrain_config(root, cache_dir, **kw)


def _metrics(run: Path) -> list[dict]:
    with (run / "metrics.csv").open() as fh:
        return list(csv.DictReader(fh))


def test_split_rows_holds_out_a_seeded_fraction() -> None:
    train, val = split_rows(100, 0.1, 1000, seed=3)
    assert len(val) == 10 and len(train) == 90 and not set(train) & set(val)
    assert (val == split_rows(100, 0.1, 1000, seed=3)[1]).all()
    assert len(split_rows(100, 0.5, 7, seed=3)[1]) == 7
    assert len(split_rows(100, 0.0, 7, seed=3)[1]) == 0
    assert len(split_rows(10, 0.01, 7, seed=3)[1]) == 1


def test_run_writes_config_metrics_and_a_loadable_encoder(
    synthetic_root: Path, cache_dir: Path, tmp_path: Path
) -> None:
    cfg = _cfg(synthetic_root, cache_dir, epochs=2, real_val=str(synthetic_root / "records100"))
    run = run_pretrain(cfg, tmp_path / "run")
    assert {p.name for p in run.iterdir()} >= {
        "config.yaml",
        "env.json",
        "metrics.csv",
        "final.json",
        "encoder.safetensors",
    }
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["input_spec"]["sampling_rate"] == 100 and saved["input_spec"]["length"] == 200
    rows = _metrics(run)
    assert [r["epoch"] for r in rows] == ["1", "2"]
    for r in rows:
        assert float(r["train_loss"]) > 0 and float(r["val_loss"]) > 0 and float(r["real_val_loss"]) > 0
        assert float(r["samples_per_s"]) > 0

    # the saved encoder is the trained encoder: same features through create_model(pretrained=...)
    mae = build_masked_model(cfg, build_encoder(cfg))
    mae.load_state_dict(torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"])
    trained = mae.encoder.eval()
    loaded = create_model(
        "ecg_vit_tiny", num_classes=5, pretrained=run / "encoder.safetensors", **TINY
    ).eval()
    x = torch.randn(3, 12, 200)
    with torch.no_grad():
        assert torch.equal(loaded.forward_features(x), trained.forward_features(x))
    assert not any(k.startswith("head.") for k in load_file(run / "encoder.safetensors"))
    with safe_open(run / "encoder.safetensors", "pt") as f:
        meta = f.metadata()
    assert meta["model"] == "ecg_vit_tiny" and '"sampling_rate": 100' in meta["input_spec"]


def test_existing_run_is_never_overwritten_silently(
    synthetic_root: Path, cache_dir: Path, tmp_path: Path
) -> None:
    cfg = _cfg(synthetic_root, cache_dir, epochs=1, steps_per_epoch=1)
    run = run_pretrain(cfg, tmp_path / "run")
    stamp = (run / "encoder.safetensors").stat().st_mtime_ns
    with pytest.raises(ConfigError, match="already exists"):
        run_pretrain(cfg, run)
    assert (run / "encoder.safetensors").stat().st_mtime_ns == stamp
    run_pretrain(cfg, run, resume=True)  # finished: nothing to do
    assert (run / "encoder.safetensors").stat().st_mtime_ns == stamp
    run_pretrain(cfg, run, force=True)
    assert (run / "encoder.safetensors").stat().st_mtime_ns != stamp
    with pytest.raises(ConfigError, match="config differs"):
        run_pretrain(dataclasses.replace(cfg, lr=1e-4), run, resume=True)


def test_a_pretraining_run_being_written_is_refused_and_never_deleted(
    synthetic_root: Path, cache_dir: Path, tmp_path: Path
) -> None:
    from ecgadapt.locks import LOCK_FILE, RunLock, RunLockedError

    cfg = _cfg(synthetic_root, cache_dir, epochs=1, steps_per_epoch=1)
    run = run_pretrain(cfg, tmp_path / "run")
    assert not (run / LOCK_FILE).exists(), "the lock is released after the run"
    stamp = (run / "encoder.safetensors").stat().st_mtime_ns
    with RunLock(run):  # another writer (flock: a second open file conflicts even in this process)
        for kwargs in ({"resume": True}, {"force": True}):
            with pytest.raises(RunLockedError, match=str(run)):
                run_pretrain(cfg, run, **kwargs)
    assert (run / "encoder.safetensors").stat().st_mtime_ns == stamp


def test_a_capped_steps_per_epoch_says_so(
    synthetic_root: Path, cache_dir: Path, tmp_path: Path, capsys
) -> None:
    cfg = _cfg(synthetic_root, cache_dir, epochs=1, steps_per_epoch=3, batch_size=64, max_val_samples=4)
    run_pretrain(cfg, tmp_path / "run")
    out = capsys.readouterr().out
    n_batches = int(re.search(r"(\d+) steps x 1 epochs", out).group(1))
    assert n_batches < 3 and f"steps_per_epoch 3 is capped at {n_batches}, one pass over" in out


class _Stop(Exception):
    pass


def test_resume_repeats_the_uninterrupted_run(synthetic_root: Path, cache_dir: Path, tmp_path: Path) -> None:
    cfg = _cfg(synthetic_root, cache_dir)
    full = run_pretrain(cfg, tmp_path / "full")

    def stop_after_first(event: str, row: dict) -> None:
        if event == "epoch_end" and row["epoch"] == 1:
            raise _Stop

    with pytest.raises(_Stop):
        run_pretrain(cfg, tmp_path / "cut", callbacks=[stop_after_first])
    assert not (tmp_path / "cut" / "encoder.safetensors").exists()
    cut = run_pretrain(cfg, tmp_path / "cut", resume=True)
    a, b = load_file(full / "encoder.safetensors"), load_file(cut / "encoder.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (full / "encoder.safetensors").read_bytes() == (
        cut / "encoder.safetensors"
    ).read_bytes()  # same file
    losses = lambda run: [(r["train_loss"], r["val_loss"]) for r in _metrics(run)]  # noqa: E731
    assert losses(full) == losses(cut) and len(losses(cut)) == 3


def test_resume_refuses_a_last_checkpoint_copied_from_another_run(
    synthetic_root: Path, cache_dir: Path, tmp_path: Path
) -> None:
    """Another run's last.pt would silently continue that run's training here: one error, nothing changed."""
    other = run_pretrain(_cfg(synthetic_root, cache_dir, seed=1, epochs=1), tmp_path / "other")
    cfg = _cfg(synthetic_root, cache_dir, epochs=2)

    def stop_after_first(event: str, row: dict) -> None:
        if event == "epoch_end" and row["epoch"] == 1:
            raise _Stop

    with pytest.raises(_Stop):
        run_pretrain(cfg, tmp_path / "cut", callbacks=[stop_after_first])
    last = tmp_path / "cut" / "checkpoints" / "last.pt"
    last.write_bytes((other / "checkpoints" / "last.pt").read_bytes())
    before = last.read_bytes()
    with pytest.raises(ConfigError, match="belongs to another run"):
        run_pretrain(cfg, tmp_path / "cut", resume=True)
    assert last.read_bytes() == before and not (tmp_path / "cut" / "encoder.safetensors").exists()


def test_bad_configs_are_config_errors(synthetic_root: Path, cache_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no pretraining corpus"):
        run_pretrain(_cfg(synthetic_root, cache_dir, corpora=[]), tmp_path / "a")
    with pytest.raises(ConfigError, match="ecg_vit and xresnet1d models only"):
        run_pretrain(_cfg(synthetic_root, cache_dir, model="st_mem_vit_b75", model_kwargs={}), tmp_path / "b")
    with pytest.raises(ConfigError, match="device must be"):
        run_pretrain(_cfg(synthetic_root, cache_dir, device="gpu"), tmp_path / "c")
    assert not (tmp_path / "c").exists()
    with pytest.raises(ConfigError, match="unknown pretraining config key"):
        PretrainConfig.from_dict({"modle": "ecg_vit_tiny"})


def test_cli_pretrain_runs_and_refuses_to_overwrite(
    synthetic_root: Path, cache_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cli"
    args = [
        "pretrain",
        "--model",
        "ecg_vit_tiny",
        "--corpus",
        str(synthetic_root),
        "--out",
        str(out),
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--steps-per-epoch",
        "1",
        "--cache-dir",
        str(cache_dir),
        "--decoder-width",
        "32",
        "--decoder-depth",
        "1",
        "--no-progress",
        "--model-arg",
        "width=32",
        "--model-arg",
        "depth=1",
        "--model-arg",
        "heads=2",
    ]
    assert main(args) == 0
    assert (out / "encoder.safetensors").is_file()
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["model_kwargs"] == {"width": 32, "depth": 1, "heads": 2} and saved["batch_size"] == 8
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err
    assert main([*args, "--resume"]) == 0


def test_mixture_indices_follow_the_weights_not_the_sizes() -> None:
    from ecgadapt.pretrain.pretrain import mixture_indices

    rows = mixture_indices([1000, 10, 0], [0.5, 0.5, 3.0], 4000, torch.Generator().manual_seed(0))
    small = (rows >= 1000).mean()
    assert 0.45 < small < 0.55 and rows.max() < 1010  # the empty part is never drawn
    again = mixture_indices([1000, 10, 0], [0.5, 0.5, 3.0], 4000, torch.Generator().manual_seed(0))
    assert (rows == again).all()


def test_mixed_corpora_report_held_out_losses_per_origin(
    synthetic_root: Path, cache_dir: Path, tmp_path: Path
) -> None:
    import numpy as np

    real = tmp_path / "real_100hz.npy"  # a lead-normalised array, like ptbxl-unlabelled-1785
    x = np.random.default_rng(0).normal(size=(40, 12, 1000))
    np.save(real, ((x - x.mean(-1, keepdims=True)) / x.std(-1, keepdims=True)).astype(np.float16))
    cfg = _cfg(
        synthetic_root,
        cache_dir,
        corpora=[str(synthetic_root), f"npy:{real}"],
        corpus_weights=[1.0, 3.0],
        epochs=1,
        val_fraction=0.1,
    )
    run = run_pretrain(cfg, tmp_path / "run")
    row = _metrics(run)[0]
    assert float(row["val_loss_synthetic"]) > 0 and float(row["val_loss_real"]) > 0
    assert row["val_loss_generated"] == "" and row["real_val_loss"] == ""
    pooled = (12 * float(row["val_loss_synthetic"]) + 4 * float(row["val_loss_real"])) / 16
    assert abs(float(row["val_loss"]) - pooled) < 1e-6
    final = yaml.safe_load((run / "final.json").read_text())
    assert [(c["origin"], c["weight"], c["normalisation"]) for c in final["corpora"]] == [
        ("synthetic", 1.0, "none"),
        ("real", 3.0, "lead"),
    ]
    with pytest.raises(ConfigError, match="one weight >= 0 per corpus"):
        run_pretrain(dataclasses.replace(cfg, corpus_weights=[1.0]), tmp_path / "bad")


def test_cli_passes_corpus_weights_and_the_cnn_objective(
    synthetic_root: Path, cache_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "cnn"
    args = [
        "pretrain",
        "--model",
        "xresnet1d_tiny",
        "--corpus",
        str(synthetic_root),
        "--corpus-weight",
        "2",
        "--out",
        str(out),
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--steps-per-epoch",
        "1",
        "--segment-size",
        "50",
        "--mask-ratio",
        "0.5",
        "--decoder-width",
        "16",
        "--cache-dir",
        str(cache_dir),
        "--no-progress",
        "--model-arg",
        "widths=[8,8,8,8]",
        "--model-arg",
        "stem_widths=[8,8,8]",
    ]
    assert main(args) == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["corpus_weights"] == [2.0] and saved["segment_size"] == 50
    with safe_open(out / "encoder.safetensors", "pt") as f:
        assert f.metadata()["pretrain"] == '"masked-segment"'


def test_the_same_encoder_and_metadata_always_give_the_same_bytes(tmp_path: Path) -> None:
    import json
    import struct

    from ecgadapt.pretrain.pretrain import save_encoder

    torch.manual_seed(0)
    encoder = create_model("ecg_vit_tiny", num_classes=0, **TINY)
    extra = {f"key_{i}": i for i in range(12)}  # many keys: safetensors alone writes them in hash order
    files = [
        save_encoder(encoder, tmp_path / f"{i}.safetensors", "ecg_vit_tiny", extra=extra) for i in range(4)
    ]
    assert len({f.read_bytes() for f in files}) == 1
    raw = files[0].read_bytes()
    header = json.loads(raw[8 : 8 + struct.unpack("<Q", raw[:8])[0]])
    assert list(header["__metadata__"]) == sorted(header["__metadata__"])
    with safe_open(files[0], "pt") as f:
        assert f.metadata()["key_3"] == "3" and f.metadata()["model"] == "ecg_vit_tiny"
    state = load_file(files[0])
    assert all(torch.equal(state[k], v) for k, v in encoder.state_dict().items() if k in state)
