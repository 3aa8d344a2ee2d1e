"""CUDA checks (``pytest -m gpu``; ``benchmarks/gpu_check.sh`` runs them): training under bf16 autocast with fused
AdamW, scores in float32 whatever the device, and on two GPUs NCCL runs equal to one GPU (SyncBatchNorm).

Every test here needs CUDA and skips without it. The fused-AdamW creation test is in ``test_optim.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ecgadapt.engine.loop import make_loader, predict_loader
from ecgadapt.models import create_model
from ecgadapt.train.finetune import run_finetune
from tiny_runs import TINY_VIT

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


def test_the_fit_loop_trains_under_bf16_autocast_with_fused_adamw(make_cfg, monkeypatch):
    import ecgadapt.engine.loop as loop

    seen: dict[str, list] = {"bf16": [], "fused": []}
    real_autocast, real_create = loop.autocast, loop.create_optimizer

    @contextlib.contextmanager
    def recording_autocast(device, enabled=True):
        with real_autocast(device, enabled):
            seen["bf16"].append(
                torch.is_autocast_enabled("cuda") and torch.get_autocast_dtype("cuda") == torch.bfloat16
            )
            yield

    def recording_create(model, **kw):
        optimizer = real_create(model, **kw)
        seen["fused"].append(bool(optimizer.defaults.get("fused")))
        return optimizer

    monkeypatch.setattr(loop, "autocast", recording_autocast)
    monkeypatch.setattr(loop, "create_optimizer", recording_create)
    run = run_finetune(make_cfg("lp_ft", "cuda", "training.device=cuda", epochs=1))
    final = json.loads((run / "final.json").read_text())
    assert final["device"].startswith("cuda")
    assert seen["bf16"] and all(seen["bf16"])  # every training step ran under bf16 autocast
    assert seen["fused"] and all(seen["fused"])  # and stepped fused AdamW
    assert np.isfinite([final["val"]["loss"], final["test"]["loss"]]).all()


def test_scores_on_cuda_are_computed_in_float32(make_cfg):
    from ecgadapt.data.cache import load_or_prepare
    from ecgadapt.train.evaluate import eval_dataset

    cfg = make_cfg("linear_probe", "scores")
    cache = load_or_prepare(cfg.data.root, cfg.data.rate, cache_dir=cfg.data.cache_dir, progress=False)
    torch.manual_seed(0)
    model = create_model(cfg.model.name, num_classes=len(cache.labels(cfg.data.task)[1]), **TINY_VIT)
    loader = make_loader(eval_dataset(cache, cfg, model.input_spec, "val", 1), 16, 0)
    _, p_cpu = predict_loader(model, loader, torch.device("cpu"))
    heads = []
    model.get_classifier().register_forward_hook(
        lambda module, args, out: heads.append((out.dtype, torch.is_autocast_enabled("cuda")))
    )
    _, p_gpu = predict_loader(model.cuda(), loader, torch.device("cuda"))
    assert heads and set(heads) == {(torch.float32, False)}  # no autocast: float32 logits
    assert p_gpu.dtype == np.float32
    np.testing.assert_allclose(p_gpu, p_cpu, atol=1e-3)  # cuDNN may convolve in TF32


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
@pytest.mark.parametrize("model", ["ecg_vit_tiny", "xresnet1d50"])
def test_two_gpus_with_nccl_give_the_scores_of_one_gpu(make_cfg, tmp_path, model):
    # float32 (amp off) so that the two runs can be compared; xresnet1d50's BatchNorm is synchronised
    overrides = ("training.device=cuda", "training.amp=false", "training.batch_size=15")
    one = run_finetune(make_cfg("lp_ft", "one", *overrides, model=model))
    two = make_cfg("lp_ft", "two", *overrides, model=model)
    two.to_yaml(tmp_path / "two.yaml")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd += ["-m", "ecgadapt", "finetune", "--config", str(tmp_path / "two.yaml")]
    proc = subprocess.run(cmd, env=dict(os.environ), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = (json.loads((Path(r) / "final.json").read_text()) for r in (one, two.out))
    for split in ("val", "test"):
        assert a[split]["macro_auroc"] == pytest.approx(b[split]["macro_auroc"], abs=1e-4)
        assert a[split]["loss"] == pytest.approx(b[split]["loss"], abs=1e-4)
