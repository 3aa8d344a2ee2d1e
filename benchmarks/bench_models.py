"""Training and inference throughput of every registered model at its native input spec (CPU, and CUDA if present).

Usage: python benchmarks/bench_models.py [--models NAME ...] [--batch-size 32] [--large-batch-size 4]
       [--iters 5] [--warmup 2] [--large-iters 2] [--large-warmup 1] [--repeats 2] [--threads 2]
       [--devices cpu cuda] [--peak-tflops 989.4] [--out results.json] [--markdown table.md]

Training = forward + backward + AdamW step (ecgadapt.engine.optim.create_optimizer: fused on CUDA) with
BCE-with-logits on random multi-label targets, drop_rate / drop_path_rate as in fine-tuning; inference =
eval mode under torch.inference_mode. CUDA runs use bf16 autocast. Models with more than --large-params
parameters get --large-batch-size, --large-iters and --large-warmup on CPU so the whole run takes minutes.
Each number is the best of --repeats timed runs (best, because the CPU may be shared). Models that fail to
build or run (e.g. a missing optional dependency) are listed with the reason instead of numbers. Inputs are
random tensors of the native shape; models with ``flatten_leads`` are probed for the layout their forward takes
((B, leads*length), (B, 1, leads*length) or (B, leads, length)), or give one via an ``example_input`` method.

Model FLOPs utilisation (MFU, CUDA rows): samples/s times the model's FLOPs per sample (forward for inference,
forward and backward for training; matrix products and convolutions, counted by
:class:`torch.utils.flop_counter.FlopCounterMode` on a batch of 2, attention through the math backend) over the
GPU's bf16 dense peak, ``--peak-tflops`` (default: the H200's, :data:`H200_BF16_DENSE_PEAK_TFLOPS`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

from ecgadapt.engine.optim import create_optimizer
from ecgadapt.models import create_model, list_models, model_info
from ecgadapt.models.base import ECGModel

NUM_CLASSES = 5

H200_BF16_DENSE_PEAK_TFLOPS = 989.4
"""NVIDIA H200 SXM, BF16 tensor-core peak without sparsity: the datasheet's 1,979 TFLOPS "with sparsity" halved
(NVIDIA H200 Tensor Core GPU datasheet, 2024; the same GH100 tensor cores as the H100 SXM's 989.4 dense)."""


def conv_backward_flops(
    grad_out_shape,
    x_shape,
    w_shape,
    _bias,
    _stride,
    _padding,
    _dilation,
    transposed,
    _output_padding,
    _groups,
    output_mask,
    out_shape=None,
    **kwargs,
) -> int:
    """A convolution's backward: the input's gradient and the weight's each cost one forward pass (PyTorch's own
    formula counts a grouped convolution's weight gradient as if it were dense: ``groups`` times too much)."""
    forward = conv_flop_count(list(x_shape), list(w_shape), list(grad_out_shape), transposed=transposed)
    return forward * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


def count_flops(model: torch.nn.Module, x: torch.Tensor) -> tuple[int, int]:
    """``(forward, forward + backward)`` FLOPs of ``model`` on the batch ``x``."""
    mapping = {torch.ops.aten.convolution_backward: conv_backward_flops}
    with sdpa_kernel(SDPBackend.MATH):
        with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
            model(x)
        forward = counter.get_total_flops()
        model.zero_grad(set_to_none=True)
        with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
            model(x).float().sum().backward()
        total = counter.get_total_flops()
    model.zero_grad(set_to_none=True)
    return forward, total


def input_candidates(model: ECGModel, batch_size: int) -> list[tuple[int, ...]]:
    """Input shapes to try, most likely first: (B, leads, length), or flattened leads when the spec says so."""
    spec = model.input_spec
    shapes = [(batch_size, spec.num_leads, spec.length)]
    if spec.flatten_leads:
        flat = spec.num_leads * spec.length
        shapes = [(batch_size, flat), (batch_size, 1, flat), *shapes]
    return shapes


def example_input(model: ECGModel, batch_size: int, device: torch.device) -> torch.Tensor:
    """A random batch the model accepts: its own ``example_input`` if it has one, else the first shape that runs."""
    if hasattr(model, "example_input"):
        return model.example_input(batch_size).to(device)
    errors = []
    was_training = model.training
    model.eval()
    try:
        for shape in input_candidates(model, batch_size):
            x = torch.randn(*shape, device=device)
            try:
                with torch.inference_mode():
                    model(x[:2])
                return x
            except Exception as exc:  # try the next layout
                errors.append(f"{shape}: {str(exc).splitlines()[0][:120]}")
    finally:
        model.train(was_training)
    raise RuntimeError("no input layout worked: " + "; ".join(errors))


def sync(device: torch.device) -> None:
    """Wait for queued CUDA work so wall-clock timings are honest."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_rate(
    step: Callable[[], None], batch: int, iters: int, warmup: int, repeats: int, device: torch.device
) -> float:
    """Best samples/s over ``repeats`` runs of ``iters`` steps, after ``warmup`` untimed steps."""
    for _ in range(warmup):
        step()
    sync(device)
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(iters):
            step()
        sync(device)
        best = max(best, iters * batch / (time.perf_counter() - t0))
    return best


def bench_one(name: str, device: torch.device, args: argparse.Namespace) -> dict:
    """Build ``name`` on ``device`` and time training and inference; returns one result row."""
    row: dict = {"model": name, "device": device.type}
    try:
        row["family"] = model_info(name).family
        torch.manual_seed(0)
        model = create_model(
            name, num_classes=NUM_CLASSES, drop_rate=args.drop_rate, drop_path_rate=args.drop_path_rate
        ).to(device)
    except Exception as exc:  # report and go on with the next model
        row["note"] = f"build failed: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
        return row
    n_params = sum(p.numel() for p in model.parameters())
    large = device.type == "cpu" and n_params > args.large_params
    batch = args.large_batch_size if large else args.batch_size
    iters = args.large_iters if large else args.iters
    warmup = args.large_warmup if large else args.warmup
    row.update(params=n_params, batch_size=batch, iters=iters)
    try:
        x = example_input(model, batch, device)
        row["input_shape"] = list(x.shape[1:])
        y = torch.randint(0, 2, (batch, NUM_CLASSES), device=device).float()
        opt = create_optimizer(model, lr=1e-4, weight_decay=0.05)
        autocast = (
            torch.autocast("cuda", dtype=torch.bfloat16)
            if device.type == "cuda"
            else contextlib.nullcontext()
        )

        def train_step() -> None:
            with autocast:
                loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        def infer_step() -> None:
            with torch.inference_mode(), autocast:
                model(x)

        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        model.train()
        row["train_samples_s"] = best_rate(train_step, batch, iters, warmup, args.repeats, device)
        model.eval()
        row["infer_samples_s"] = best_rate(infer_step, batch, iters, warmup, args.repeats, device)
        if device.type == "cuda":
            row["peak_mem_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        model.train()
        forward, total = count_flops(model, x[:2])
        row["forward_gflops"], row["train_gflops"] = forward / 2e9, total / 2e9  # per sample
        if device.type == "cuda":
            peak = args.peak_tflops * 1e12
            row["train_mfu"] = row["train_samples_s"] * total / 2 / peak
            row["infer_mfu"] = row["infer_samples_s"] * forward / 2 / peak
    except Exception as exc:
        row["note"] = f"run failed: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
    return row


def markdown_table(rows: list[dict]) -> str:
    """Results as a markdown table (one line per model and device)."""
    lines = [
        "| model | device | params (M) | input (per sample) | batch | train samples/s | infer samples/s "
        "| train GFLOPs/sample | MFU train / infer | note |",
        "|---|---|---:|---|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        params = f"{r['params'] / 1e6:.2f}" if "params" in r else ""
        shape = "x".join(map(str, r.get("input_shape", [])))
        train = f"{r['train_samples_s']:.1f}" if "train_samples_s" in r else ""
        infer = f"{r['infer_samples_s']:.1f}" if "infer_samples_s" in r else ""
        flops = f"{r['train_gflops']:.2f}" if "train_gflops" in r else ""
        mfu = f"{r['train_mfu']:.1%} / {r['infer_mfu']:.1%}" if "train_mfu" in r else ""
        note = r.get("note", "")
        if "peak_mem_gib" in r:
            note = f"peak {r['peak_mem_gib']:.2f} GiB" + (f"; {note}" if note else "")
        lines.append(
            f"| {r['model']} | {r['device']} | {params} | {shape} | {r.get('batch_size', '')} | {train} | {infer} "
            f"| {flops} | {mfu} | {note} |"
        )
    return "\n".join(lines)


def environment(args: argparse.Namespace) -> dict:
    """Where the numbers come from."""
    env = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "threads": args.threads,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "peak_tflops": args.peak_tflops,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    return env


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=None, help="model names (default: all registered)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--large-batch-size", type=int, default=4, help="CPU batch for models over --large-params")
    p.add_argument("--large-params", type=float, default=20e6)
    p.add_argument("--iters", type=int, default=5, help="timed steps per repeat")
    p.add_argument(
        "--large-iters", type=int, default=2, help="timed steps per repeat for large models on CPU"
    )
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--large-warmup", type=int, default=1, help="untimed steps for large models on CPU")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads on CPU")
    p.add_argument("--devices", nargs="+", default=["cpu", "cuda"], choices=["cpu", "cuda"])
    p.add_argument("--drop-rate", type=float, default=0.1)
    p.add_argument("--drop-path-rate", type=float, default=0.1)
    p.add_argument(
        "--peak-tflops",
        type=float,
        default=H200_BF16_DENSE_PEAK_TFLOPS,
        help="the GPU's bf16 dense peak, for MFU (default: the H200's)",
    )
    p.add_argument("--out", type=Path, default=None, help="write results as JSON here")
    p.add_argument("--markdown", type=Path, default=None, help="write the table as Markdown here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    names = args.models or list_models()
    devices = [torch.device(d) for d in args.devices if d == "cpu" or torch.cuda.is_available()]
    rows = []
    for device in devices:
        for name in names:
            t0 = time.perf_counter()
            row = bench_one(name, device, args)
            row["seconds"] = round(time.perf_counter() - t0, 1)
            print(f"{name} on {device.type}: {row.get('note', 'ok')} ({row['seconds']} s)", file=sys.stderr)
            rows.append(row)
    table = markdown_table(rows)
    print(table)
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(table + "\n")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"environment": environment(args), "results": rows}, indent=2))
    return rows


if __name__ == "__main__":
    main()
