"""Per-record class probabilities from a finished run, for WFDB records and ``.npy`` arrays.

Inputs go through the run's evaluation preprocessing (:func:`ecgadapt.data.transforms.build_transforms`
for the model's input spec): resampled from their own rate to the model's, band-passed and normalised,
then cut into evenly spaced windows of the model's input length that cover the whole record; the
probabilities of the windows are averaged. Records with the wrong number of leads, NaNs, or fewer
samples than one window are refused with an error naming the input.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ecgadapt.constants import LEADS
from ecgadapt.data.ptbxl import read_header, read_record
from ecgadapt.data.transforms import build_transforms
from ecgadapt.engine.device import resolve_device
from ecgadapt.errors import CheckpointError, DataError
from ecgadapt.eval.temperature import calibrate_probs, load_calibration
from ecgadapt.fileio import numpy_load_reason
from ecgadapt.models.base import ECGModel, InputSpec
from ecgadapt.train.config import FinetuneConfig
from ecgadapt.train.evaluate import load_run_config, load_run_model


def _wfdb_base(path: Path) -> Path | None:
    """The record base name of a WFDB input (``x.hea``, ``x.dat`` or ``x``), or None if not WFDB."""
    if path.suffix in (".hea", ".dat"):
        return path.with_suffix("")
    if Path(f"{path}.hea").is_file():
        return path
    return None


MIN_RATE, MAX_RATE = 50.0, 20000.0
"""Sampling rates (Hz) an ECG input may have: below 50 Hz the QRS complex is lost; above 20 kHz is no ECG."""


def check_rate_value(rate, source: str = "--rate") -> float:
    """``rate`` as a float when it is a plausible ECG sampling rate in Hz; one DataError otherwise."""
    try:
        value = float(rate)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value) or not MIN_RATE <= value <= MAX_RATE:
        raise DataError(
            f"{source} {rate!r} is not a usable sampling rate: give the rate of the array in Hz, a number between "
            f"{MIN_RATE:g} and {MAX_RATE:g} (e.g. 100 or 500 for PTB-XL)"
        )
    return value


def sidecar_rate(path: Path) -> float | None:
    """The rate recorded beside an array: ``<name>.json`` holding ``{"rate": HZ}``; None when there is none."""
    side = path.with_suffix(".json")
    if not side.is_file():
        return None
    try:
        meta = json.loads(side.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise DataError(
            f"sidecar {side} of input {path} is not readable JSON ({err}); fix it or pass --rate"
        ) from err
    if not isinstance(meta, dict) or "rate" not in meta:
        raise DataError(f'sidecar {side} of input {path} has no "rate" (Hz); add it or pass --rate')
    return check_rate_value(meta["rate"], f"sidecar {side}: rate")


def load_inputs(
    path: str | Path, rate: float | None, default_rate: float | None = None
) -> Iterator[tuple[str, np.ndarray, float]]:
    """Yield ``(record name, signal (12, T) float32, rate)`` for one input path (one or more records).

    The rate of a ``.npy`` array is ``rate`` (``--rate``) or its sidecar's; it is never guessed (``default_rate``
    is ignored and kept for compatibility).
    """
    path = Path(path)
    if path.suffix == ".npy":
        if not path.is_file():
            raise DataError(f"input {path} does not exist")
        side = sidecar_rate(path)
        if rate is not None and side is not None and abs(float(rate) - side) > 1e-6:
            raise DataError(
                f"input {path}: --rate {float(rate):g} contradicts its sidecar {path.with_suffix('.json')} "
                f"({side:g} Hz); drop one of them"
            )
        if rate is None and side is None:
            raise DataError(
                f"input {path}: the sampling rate of a .npy array is unknown; pass --rate HZ (e.g. --rate 500), or "
                f'write {path.with_suffix(".json")} holding {{"rate": HZ}}; ecgadapt does not guess it'
            )
        src_rate = float(rate) if rate is not None else side
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as err:
            raise DataError(f"input {path} is not a readable .npy array: {numpy_load_reason(err)}") from None
        yield from array_records(path.stem, arr, src_rate, f"input {path}")
        return
    base = _wfdb_base(path)
    if base is None:
        raise DataError(
            f"input {path} is neither a .npy array nor a WFDB record (no {path}.hea); pass a .hea path, "
            "a record base name, or a .npy file"
        )
    header = read_header(base)
    if rate is not None and abs(header.fs - rate) > 1e-6:
        raise DataError(
            f"input {path}: --rate {rate:g} contradicts the record's header ({header.fs:g} Hz); --rate applies to "
            ".npy inputs, drop it for WFDB records"
        )
    yield base.name, read_record(base), float(header.fs)


def array_records(
    stem: str, arr: np.ndarray, rate: float, where: str
) -> Iterator[tuple[str, np.ndarray, float]]:
    """``(record name, signal, rate)`` of an array of one record (12, T), named ``stem``, or of records
    (N, 12, T), named ``stem[i]``; ``where`` names the array in the error for any other shape."""
    if arr.ndim == 2:
        yield stem, arr, rate
    elif arr.ndim == 3:
        for i, x in enumerate(arr):
            yield f"{stem}[{i}]", x, rate
    else:
        raise DataError(
            f"{where} has shape {arr.shape}; expected (12, samples) or (records, 12, samples), "
            f"leads in the order {', '.join(LEADS)}"
        )


def check_signal(name: str, x: np.ndarray, rate: float, spec: InputSpec) -> np.ndarray:
    """Validate one record (12 leads, finite, at least one window long after resampling)."""
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] != len(LEADS):
        raise DataError(
            f"input {name}: shape {x.shape} is not (12, samples); the model needs the 12 standard leads in the "
            f"order {', '.join(LEADS)} (transpose a (samples, 12) array first)"
        )
    if not np.issubdtype(x.dtype, np.number):
        raise DataError(f"input {name}: dtype {x.dtype} is not numeric")
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise DataError(
            f"input {name}: {int((~np.isfinite(x)).sum())} NaN/inf sample(s); fill or drop them first"
        )
    resampled = x.shape[1] * spec.sampling_rate / rate
    if resampled + 1e-6 < spec.length:
        need = math.ceil(spec.length * rate / spec.sampling_rate)
        raise DataError(
            f"input {name}: {x.shape[1]} samples at {rate:g} Hz ({x.shape[1] / rate:.2f} s) is shorter than the "
            f"model's window of {spec.length} samples at {spec.sampling_rate} Hz "
            f"({spec.length / spec.sampling_rate:.2f} s); need at least {need} samples at {rate:g} Hz"
        )
    return x


def n_windows(n_samples: int, rate: float, spec: InputSpec, minimum: int = 1) -> int:
    """Windows needed to cover a record of ``n_samples`` at ``rate`` with the model's window (at least ``minimum``)."""
    resampled = math.ceil(n_samples * spec.sampling_rate / rate - 1e-6)
    return max(minimum, math.ceil(resampled / spec.length - 1e-9))


def predict(
    run_dir: str | Path,
    inputs: Sequence[str | Path],
    *,
    rate: float | None = None,
    eval_windows: int | None = None,
    device: str = "auto",
    batch_size: int = 64,
    uncalibrated: bool = False,
    calibration: str | None = None,
) -> pd.DataFrame:
    """One row per record: ``record``, ``input``, ``windows`` and one probability column per class.

    Probabilities go through the run's temperature scaling (``calibration.json``) when it has one, unless
    ``uncalibrated``; given ``calibration`` (a site name), through the temperatures fitted on that external site
    instead (``calibration_<site>.json``, see ``ecgadapt calibrate --data``). ``df.attrs["calibration"]`` names
    the mode applied (None: raw probabilities) and ``df.attrs["calibration_site"]`` the site.

    ``rate`` is the sampling rate of ``.npy`` inputs (else each array's ``<name>.json`` sidecar must give it; it
    is never guessed); WFDB records carry their own.
    ``eval_windows`` is the minimum number of windows per record (default: the run's ``eval_windows``);
    more are used when needed to cover a longer record.
    """
    if not inputs:
        raise DataError("no input given: pass WFDB records (.hea or base name) or .npy files")
    if rate is not None:
        rate = check_rate_value(rate)
    if calibration is not None and not uncalibrated:
        load_calibration(run_dir, calibration)  # a missing site file is an error before any record is read
    cfg = load_run_config(run_dir)
    dev = resolve_device(device)
    model, meta = load_run_model(run_dir, dev)
    records = (
        (name, str(item), x, src_rate)
        for item in inputs
        for name, x, src_rate in load_inputs(item, rate, model.input_spec.sampling_rate)
    )
    return predict_records(
        run_dir,
        cfg,
        model,
        list(meta["class_names"]),
        records,
        device=dev,
        eval_windows=eval_windows,
        batch_size=batch_size,
        uncalibrated=uncalibrated,
        calibration=calibration,
    )


def predict_records(
    run_dir: str | Path,
    cfg: FinetuneConfig,
    model: ECGModel,
    class_names: list[str],
    records: Iterable[tuple[str, str, np.ndarray, float]],
    *,
    device: torch.device,
    eval_windows: int | None = None,
    batch_size: int = 64,
    uncalibrated: bool = False,
    calibration: str | None = None,
) -> pd.DataFrame:
    """:func:`predict`'s table for ``(record name, input name, signal (12, T), rate)`` records, scored with a
    run's loaded model and config: the one code path of ``ecgadapt predict`` and :meth:`ecgadapt.Run.predict`."""
    spec = model.input_spec
    minimum = int(eval_windows or cfg.training.eval_windows)
    rows = []
    for name, item, x, src_rate in records:
        x = check_signal(name, x, src_rate, spec)
        w = n_windows(x.shape[1], src_rate, spec, minimum)
        windows = build_transforms(spec, src_rate, train=False, n_eval_windows=w)(x)
        if windows.ndim == 2:
            windows = windows[None]
        probs = _window_probs(model, torch.from_numpy(windows), device, batch_size)
        if not np.isfinite(probs).all():  # never print empty probabilities and exit 0
            raise CheckpointError(
                f"input {name}: the model of {run_dir} gave NaN or infinite probabilities; its best checkpoint "
                "is unusable: rerun the run, or use another one"
            )
        rows.append({"record": name, "input": item, "windows": w, **dict(zip(class_names, probs.tolist()))})
    df = pd.DataFrame(rows, columns=["record", "input", "windows", *class_names])
    probs, fitted = calibrate_probs(
        run_dir, df[class_names].to_numpy(np.float64), class_names, uncalibrated, calibration
    )
    if fitted is not None and len(df):
        df[class_names] = probs
    df.attrs["calibration"] = None if fitted is None else fitted["mode"]
    df.attrs["calibration_site"] = None if fitted is None else calibration
    return df


@torch.no_grad()
def _window_probs(model, windows: torch.Tensor, device: torch.device, batch_size: int) -> np.ndarray:
    """Mean sigmoid probability over a record's windows (W, leads, L), in float32 and never under autocast,
    as the loop scores validation and test (:func:`~ecgadapt.engine.loop.predict_loader`): the run's
    temperatures were fitted on those float32 probabilities."""
    out = []
    for chunk in windows.split(batch_size):
        logits = model(chunk.to(device, dtype=torch.float32))
        out.append(torch.sigmoid(logits.float()).cpu())
    return torch.cat(out).mean(dim=0).numpy()


def write_predictions(df: pd.DataFrame, out: str | Path | None, fmt: str = "csv") -> str:
    """Write ``df`` as CSV or JSON (records) to ``out``, or return the text when ``out`` is None.

    JSON goes through the standard library, not ``DataFrame.to_json``: pandas escapes every ``/`` of a path
    as ``\\/`` and rounds floats to 10 digits."""
    if fmt not in ("csv", "json"):
        raise DataError(f"unknown output format {fmt!r}; use csv or json")
    if fmt == "csv":
        text = df.to_csv(index=False)
    else:
        text = json.dumps(df.to_dict(orient="records"), indent=2) + "\n"
    if out is not None:
        Path(out).write_text(text)
    return text
