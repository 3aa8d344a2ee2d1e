"""``ecgadapt export RUN --format onnx|torchscript --out FILE``: a run's network for deployment, and how to feed it.

``FILE`` holds the run's best network (:func:`~ecgadapt.inference.run.load_run`'s ``run.model``, eval mode,
float32 on the CPU): its input is the preprocessed window, (N, 12, L) at the run's rate (``signal``), its output
the logits (N, C) (``logits``); the batch size is free. ``FILE.json`` beside it says everything else a
deployment needs to reproduce ``ecgadapt predict``: the rate, filter, normalisation, windows and how their
probabilities are averaged, the class names and the temperature scaling. Export checks the file it wrote on a
batch of windows (onnxruntime for ONNX, ``torch.jit.load`` for TorchScript) and records the largest difference
from PyTorch in ``FILE.json``.

ONNX needs ``pip install "ecgadapt[export]"`` (onnx, onnxscript, onnxruntime); TorchScript needs nothing more,
but PyTorch deprecates it: prefer ONNX.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from ecgadapt.constants import VERSION
from ecgadapt.data.transforms import BandPass, build_transforms
from ecgadapt.errors import ConfigError
from ecgadapt.fileio import replacing, write_json
from ecgadapt.inference.run import Run, load_run
from ecgadapt.models.base import InputSpec

FORMATS = ("onnx", "torchscript")
INPUT_NAME, OUTPUT_NAME = "signal", "logits"
ONNX_OPSET = 18
PARITY_TOLERANCE = 1e-4
"""The largest difference between the exported file's logits and PyTorch's that export accepts."""


def sidecar_path(out: str | os.PathLike) -> Path:
    """``FILE.json``: the deployment description written beside an exported ``FILE``."""
    return Path(f"{out}.json")


def example_windows(spec: InputSpec, n: int = 3, seed: int = 0) -> torch.Tensor:
    """``n`` preprocessed windows of seeded noise (the shape and scale of real input) for tracing and checking."""
    rng = np.random.default_rng(seed)
    transform = build_transforms(spec, spec.sampling_rate, train=False)
    records = rng.normal(0.0, 0.3, (n, 12, spec.length)).astype(np.float32)
    return torch.from_numpy(np.stack([transform(x) for x in records]))


def preprocessing_record(run: Run) -> dict:
    """What turns a record (12, T) in millivolts at its own rate into the network's windows, and the windows'
    probabilities into ``predict``'s numbers (the steps of :func:`ecgadapt.data.transforms.build_transforms`)."""
    spec = run.model.input_spec
    band = None
    if spec.band_pass is not None:
        f = BandPass(spec.sampling_rate, *spec.band_pass)
        band = {
            "low_hz": spec.band_pass[0],
            "high_hz": spec.band_pass[1],
            "filter": f"Butterworth, order {f.order}, second-order sections, applied forwards and backwards "
            "(zero phase): scipy.signal.sosfiltfilt(butter(order, [low, high], 'bandpass', fs=rate, "
            f"output='sos'), x, axis=-1, padtype='even', padlen=min({f.padlen}, T - 1))",
        }
    normalisation = {
        "lead": "per lead, over the whole record before windowing: (x - mean) / std; a lead with std < 1e-6 "
        "becomes zeros",
        "global": "one mean and std over all leads and samples of the record, before windowing; std < 1e-6 gives "
        "zeros",
        "minmax": "per lead, over the whole record: 2 * (x - min) / (max - min) - 1; a flat lead becomes zeros",
        "none": "none",
    }[spec.normalisation]
    return {
        "order": ["resample", "band_pass", "normalisation", "windows (see windows)", "flatten_leads"],
        "leads": list(spec.leads),
        "units": "millivolts",
        "sampling_rate": spec.sampling_rate,
        "resample": "from the record's rate to sampling_rate with scipy.signal.resample_poly(x, up, down, axis=-1, "
        "padtype='line'), up/down the reduced ratio sampling_rate / rate (denominators up to 1000)",
        "band_pass": band,
        "normalisation": {"mode": spec.normalisation, "how": normalisation},
        "flatten_leads": spec.flatten_leads,
        "reference": "ecgadapt.data.transforms.build_transforms(input_spec, rate, train=False, n_eval_windows=W)",
    }


def windows_record(run: Run) -> dict:
    """How ``predict`` cuts a record into windows and averages them."""
    spec = run.model.input_spec
    return {
        "length": spec.length,
        "min_windows": int(run.config.training.eval_windows),
        "count": "W = max(min_windows, ceil(R / length)), R = ceil(T * sampling_rate / rate - 1e-6) the resampled "
        "length",
        "placement": "a record shorter than length is zero-padded at the end; W = 1: the central window, start "
        "(R - length) // 2; W > 1: starts round(linspace(0, R - length, W)), the first at 0 and the last ending "
        "at R",
        "aggregation": "p = mean over the W windows of sigmoid(logits), per class",
    }


def calibration_record(run: Run) -> dict | None:
    """The temperature scaling ``predict`` applies to the averaged probabilities (None: none)."""
    if run.calibration is None:
        return None
    temperature = run.temperature
    by_class = temperature if isinstance(temperature, dict) else dict.fromkeys(run.classes, temperature)
    return {
        "mode": run.calibration["mode"],
        "temperatures": by_class,
        "formula": "p_calibrated = sigmoid(logit(p) / T[class]), logit(p) = log(p) - log(1 - p), on the "
        "window-averaged probability p",
    }


def deployment_record(run: Run, fmt: str, out: Path, max_abs_diff: float) -> dict:
    """The content of ``FILE.json``."""
    spec = run.model.input_spec
    shape = (
        ["N", 1, spec.num_leads * spec.length] if spec.flatten_leads else ["N", spec.num_leads, spec.length]
    )
    return {
        "format": fmt,
        "file": out.name,
        "ecgadapt_version": VERSION,
        "run": str(run.path.resolve()),
        "model_name": run.model.model_name,
        "task": run.config.data.task,
        "input": {"name": INPUT_NAME, "shape": shape, "dtype": "float32", "what": "preprocessed windows"},
        "output": {"name": OUTPUT_NAME, "shape": ["N", len(run.classes)], "what": "logits, one per class"},
        "class_names": list(run.classes),
        "preprocessing": preprocessing_record(run),
        "windows": windows_record(run),
        "calibration": calibration_record(run),
        "check": {"max_abs_diff_logits_vs_pytorch": max_abs_diff, "tolerance": PARITY_TOLERANCE},
    }


@contextlib.contextmanager
def _quiet_export() -> Iterator[None]:
    """Silence the exporters' chatter: TorchScript's deprecation and tracer warnings (eval-mode branches and the
    fixed window length are constants of the exported network by design) and ONNX's optional-op notices."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._dynamo")]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels):
                lg.setLevel(level)


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as err:
        raise ConfigError(
            f'ONNX export needs the optional packages of ecgadapt[export] ({err.name} is missing): pip install "ecgadapt[export]"'
        ) from None


def write_onnx(model: torch.nn.Module, example: torch.Tensor, out: Path) -> None:
    """The network as one ONNX file (opset 18, batch dimension free) via ``torch.onnx.export(dynamo=True)``."""
    _require_onnx()
    with _quiet_export(), replacing(out) as tmp:
        torch.onnx.export(
            model,
            (example,),
            str(tmp),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=ONNX_OPSET,
            dynamo=True,
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            external_data=False,
            verbose=False,
        )


def write_torchscript(model: torch.nn.Module, example: torch.Tensor, out: Path) -> None:
    """The network traced to TorchScript (checked on another batch size, so the batch dimension stays free)."""
    with _quiet_export(), replacing(out) as tmp:
        traced = torch.jit.trace(model, example, check_inputs=[(example[:1],), (example.repeat(2, 1, 1),)])
        torch.jit.save(traced, str(tmp))


def run_exported(fmt: str, path: Path, windows: torch.Tensor) -> np.ndarray:
    """Logits of the exported file on ``windows`` (onnxruntime on the CPU, or ``torch.jit.load``)."""
    if fmt == "onnx":
        try:
            import onnxruntime as ort
        except ImportError:
            raise ConfigError(
                'checking the ONNX file needs onnxruntime: pip install "ecgadapt[export]"'
            ) from None
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run([OUTPUT_NAME], {INPUT_NAME: windows.numpy()})[0]
    with _quiet_export(), torch.no_grad():
        return torch.jit.load(str(path), map_location="cpu")(windows).numpy()


def export_run(run_dir: str | os.PathLike, fmt: str, out: str | os.PathLike) -> tuple[Path, dict]:
    """Export a finished run's network to ``out`` (``fmt``: onnx or torchscript) and write ``out.json``; return
    ``(out, the deployment record)``. The file is checked against PyTorch on windows of another batch size."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    out = Path(out).expanduser()
    if not out.parent.is_dir():
        raise ConfigError(f"the folder of --out {out} does not exist; create it first")
    run = load_run(run_dir, device="cpu")
    model = run.model.float().eval()
    example = example_windows(model.input_spec, n=2)
    (write_onnx if fmt == "onnx" else write_torchscript)(model, example, out)
    check = example_windows(model.input_spec, n=5, seed=1)
    with torch.no_grad():
        expected = model(check).numpy()
    got = run_exported(fmt, out, check)
    max_abs_diff = float(np.abs(got - expected).max()) if got.shape == expected.shape else math.inf
    if not max_abs_diff <= PARITY_TOLERANCE:
        out.unlink(missing_ok=True)
        raise ConfigError(
            f"the exported {fmt} network differs from PyTorch by {max_abs_diff:.3g} (shape {got.shape} vs "
            f"{expected.shape}); nothing was written"
        )
    record = deployment_record(run, fmt, out, max_abs_diff)
    write_json(sidecar_path(out), record)
    return out, record
