"""Temperature scaling of a run's probabilities, fitted on the validation fold only.

A run stores probabilities (mean sigmoid over its evaluation windows); scaling works on their logits
``z = log(p / (1 - p))``: the calibrated probability is ``sigmoid(z / T)``. ``T > 1`` softens over-confident
predictions, ``T < 1`` sharpens under-confident ones. Scaling is monotone per class, so AUROC and AUPRC are
unchanged; the loss and the calibration error are what it fixes.

* ``global``: one temperature for every class; ``per_class``: one per class (a class without both a positive
  and a negative validation record keeps ``T = 1``); ``none``: no scaling.
* The fit minimises the mean binary cross-entropy (the ``loss`` of :func:`ecgadapt.eval.metrics.score`,
  probabilities clipped to ``[1e-7, 1 - 1e-7]``) over ``log T`` in ``[log 0.05, log 20]`` (bounded Brent);
  a temperature that does not lower that loss below ``T = 1``'s is replaced by 1, so the fitted scaling
  never lowers the validation likelihood.
* :func:`fit_run_calibration` reads ``predictions_val.npz`` and nothing else of the run's predictions:
  the test fold never informs the temperatures. It writes ``calibration.json``, which ``predict``,
  ``evaluate`` and ``robustness`` apply unless told ``--uncalibrated``.

Torch-free: numpy and scipy only; the run's files are read and written through :class:`~ecgadapt.runs.RunDir`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ecgadapt.errors import ConfigError, DataError
from ecgadapt.eval.calibration import expected_calibration_error
from ecgadapt.locks import writes_run_dir
from ecgadapt.runs.rundir import RunDir, load_predictions

__all__ = [
    "CALIBRATION",
    "MODES",
    "apply_temperature",
    "bce",
    "calibrate_probs",
    "calibrate_run",
    "fit_run_calibration",
    "fit_temperature",
    "load_calibration",
    "temperatures_for",
]

CALIBRATION = RunDir.CALIBRATION
MODES = ("global", "per_class", "none")
T_BOUNDS = (0.05, 20.0)
_EPS = 1e-7


def check_mode(mode: str) -> str:
    """``mode`` if it is one of :data:`MODES`, else a ConfigError naming the choices."""
    if mode not in MODES:
        raise ConfigError(f"calibration mode must be one of {', '.join(MODES)}, got {mode!r}")
    return mode


def _logits(p: np.ndarray) -> np.ndarray:
    """Logits of probabilities in float64 (0 and 1 map to -inf and +inf)."""
    p = np.asarray(p, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.log(p) - np.log1p(-p)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    """Numerically stable sigmoid in float64 (±inf map to 1 and 0)."""
    out = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    e = np.exp(z[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def apply_temperature(y_prob: np.ndarray, temperatures: float | Sequence[float] | np.ndarray) -> np.ndarray:
    """``sigmoid(logit(p) / T)`` per class (float64); a class with ``T == 1`` is returned exactly as given."""
    p = np.asarray(y_prob, dtype=np.float64)
    t = np.broadcast_to(np.asarray(temperatures, dtype=np.float64), p.shape[-1:])
    if np.any(~np.isfinite(t)) or np.any(t <= 0):
        raise ConfigError(f"temperatures must be positive and finite, got {t.tolist()}")
    out = p.copy()
    scaled = t != 1.0
    if scaled.any():
        out[..., scaled] = _sigmoid(_logits(p[..., scaled]) / t[scaled])
    return out


def bce(y_true: np.ndarray, y_prob: np.ndarray, axis: int | None = None) -> float | np.ndarray:
    """Mean binary cross-entropy (probabilities clipped to ``[1e-7, 1 - 1e-7]``), over all pairs or ``axis``."""
    y = np.asarray(y_true, dtype=np.float64)
    p = np.clip(np.asarray(y_prob, dtype=np.float64), _EPS, 1 - _EPS)
    loss = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    return float(loss.mean()) if axis is None else loss.mean(axis=axis)


def _fit_one(y: np.ndarray, p: np.ndarray) -> float:
    """The temperature minimising the mean BCE of ``(y, p)`` (1 when nothing beats 1)."""
    from scipy.optimize import minimize_scalar

    def loss(log_t: float) -> float:
        return bce(y, apply_temperature(p, math.exp(log_t)))

    lo, hi = (math.log(b) for b in T_BOUNDS)
    res = minimize_scalar(loss, bounds=(lo, hi), method="bounded", options={"xatol": 1e-6})
    t = float(math.exp(res.x))
    return t if loss(res.x) < bce(y, p) else 1.0


def fit_temperature(y_true: np.ndarray, y_prob: np.ndarray, mode: str = "global") -> np.ndarray:
    """Temperatures (one per class, shape (C,)) fitted to ``(y_true, y_prob)`` for ``mode``."""
    check_mode(mode)
    y = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_prob, dtype=np.float64)
    if y.ndim != 2 or y.shape != p.shape or len(y) == 0:
        raise DataError(
            f"temperature scaling needs (records, classes) labels and probabilities, got {y.shape} and {p.shape}"
        )
    if not np.isfinite(p).all() or p.min() < 0 or p.max() > 1:
        raise DataError("temperature scaling needs probabilities in [0, 1]")
    n_classes = y.shape[1]
    if mode == "none":
        return np.ones(n_classes)
    if mode == "global":
        return np.full(n_classes, _fit_one(y, p))
    temps = np.ones(n_classes)
    for j in range(n_classes):
        if 0 < y[:, j].sum() < len(y):
            temps[j] = _fit_one(y[:, j : j + 1], p[:, j : j + 1])
    return temps


def _val_fold(run: RunDir) -> int | None:
    """The validation fold named in the run's config.yaml (None when unreadable)."""
    try:
        return int((run.read_config().get("data") or {}).get("val_fold", 9))
    except (OSError, ConfigError, TypeError, ValueError, AttributeError):
        return None


def fit_run_calibration(run_dir: str | Path, mode: str = "global") -> dict | None:
    """Fit temperature scaling on ``run_dir/predictions_val.npz`` and write ``calibration.json``; return it.

    ``mode='none'`` removes any ``calibration.json`` (the run's probabilities are then used as they are) and
    returns None. Only the validation predictions are read: never the test fold's.
    """
    check_mode(mode)
    run = RunDir(run_dir)
    if mode == "none":
        run.calibration.unlink(missing_ok=True)
        return None
    val_path = run.predictions("val")
    if not val_path.is_file():
        raise DataError(
            f"{val_path} does not exist: temperature scaling is fitted on the validation predictions of a finished "
            "run; finish (or resume) the run first"
        )
    val = load_predictions(val_path)
    y, p, names = val["y_true"], val["y_score"], [str(c) for c in val["class_names"]]
    temps = fit_temperature(y, p, mode)
    scaled = apply_temperature(p, temps)
    unfitted = [] if mode == "global" else [n for n, col in zip(names, y.T) if not 0 < col.sum() < len(col)]
    record = {
        "mode": mode,
        "class_names": names,
        "temperatures": [float(t) for t in temps],
        "fitted_on": {
            "file": val_path.name,
            "split": "val",
            "fold": _val_fold(run),
            "n_records": int(len(y)),
        },
        "bounds": list(T_BOUNDS),
        "unfitted_classes": unfitted,
        "val_loss": {"before": bce(y, p), "after": bce(y, scaled)},
        "val_ece": {
            "before": expected_calibration_error(y, p),
            "after": expected_calibration_error(y, scaled),
        },
    }
    run.write_calibration(record)
    return record


def load_calibration(run_dir: str | Path, site: str | None = None) -> dict | None:
    """The run's ``calibration.json``, or None when it has none; given ``site``, the temperature scaling fitted on
    that external site (``calibration_<site>.json``), which must exist."""
    run = RunDir(run_dir)
    path = run.calibration if site is None else run.site_calibration(site)
    try:
        record = run.read_calibration(site)
        if record is None and site is not None:
            raise DataError(
                f"{run_dir} has no temperature scaling for site {site!r} ({path.name} is missing); fit it with "
                f"`ecgadapt calibrate {run_dir} --data DIR --source SOURCE --fold K --name {site}`"
            )
        if record is None:
            return None
        check_mode(record["mode"])
        [float(t) for t in record["temperatures"]]
    except (OSError, ValueError, KeyError, TypeError, ConfigError) as err:
        raise DataError(
            f"{path} is not a calibration written by ecgadapt ({err}); refit it with `ecgadapt calibrate {run_dir}`"
        ) from err
    return record


def temperatures_for(calibration: dict, class_names: Sequence[str]) -> np.ndarray:
    """The temperatures of ``calibration`` in the order of ``class_names`` (a clear error on a mismatch)."""
    by_name = dict(zip(calibration["class_names"], calibration["temperatures"]))
    missing = [c for c in class_names if c not in by_name]
    if missing:
        raise DataError(
            f"the run's {CALIBRATION} has no temperature for class(es) {', '.join(missing)}; refit it with "
            "`ecgadapt calibrate RUN`"
        )
    return np.array([float(by_name[c]) for c in class_names])


def calibrate_probs(
    run_dir: str | Path,
    y_prob: np.ndarray,
    class_names: Sequence[str],
    uncalibrated: bool = False,
    site: str | None = None,
) -> tuple[np.ndarray, dict[str, Any] | None]:
    """``(probabilities, calibration)``: the run's temperature scaling (given ``site``, the one fitted on that
    external site) applied to ``y_prob`` when the run has one and ``uncalibrated`` is False, else ``y_prob``
    unchanged and None."""
    calibration = None if uncalibrated else load_calibration(run_dir, site)
    if calibration is None:
        return np.asarray(y_prob), None
    return apply_temperature(y_prob, temperatures_for(calibration, class_names)), calibration


@writes_run_dir
def calibrate_run(run_dir: str | Path, mode: str | None = None) -> str:
    """``ecgadapt calibrate``: fit the run's temperature scaling (``mode`` default: the run's
    ``training.calibration``) and return a one-paragraph summary. The run's lock is held while it writes."""
    run_dir = Path(run_dir)
    run = RunDir(run_dir)
    if not run.config.is_file():
        raise ConfigError(f"{run_dir} is not an ecgadapt run directory: {RunDir.CONFIG} is missing")
    if mode is None:
        mode = str((run.read_config().get("training") or {}).get("calibration", "global"))
    record = fit_run_calibration(run_dir, mode)
    if record is None:
        return f"{run_dir}: calibration none: {CALIBRATION} removed, predictions are the raw probabilities"
    temps = record["temperatures"]
    shown = (
        f"T = {temps[0]:.4g}"
        if mode == "global"
        else ", ".join(f"{c} {t:.3g}" for c, t in zip(record["class_names"], temps))
    )
    fold = record["fitted_on"]["fold"]
    lines = [
        f"{run_dir}: temperature scaling ({mode}) fitted on {record['fitted_on']['n_records']} validation records "
        f"(fold {fold}) -> {run_dir / CALIBRATION}",
        f"  {shown}",
        f"  validation loss {record['val_loss']['before']:.4f} -> {record['val_loss']['after']:.4f}, "
        f"ECE {record['val_ece']['before']:.4f} -> {record['val_ece']['after']:.4f}",
    ]
    if record["unfitted_classes"]:
        lines.append(
            f"  T = 1 for {', '.join(record['unfitted_classes'])} (no positive or no negative validation record)"
        )
    return "\n".join(lines)
