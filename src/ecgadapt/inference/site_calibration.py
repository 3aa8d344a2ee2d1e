"""Temperature scaling fitted on a labelled part of an external site, as a hospital deploying a model does.

``ecgadapt calibrate RUN --data DIR --source S [--labels CSV] --fold K`` scores the run on the site with the
records and code path of ``evaluate --data`` (:func:`~ecgadapt.inference.external.evaluate_external`, which
also rewrites ``external_<site>.json``), fits temperatures on the site's records of fold(s) K, and reports the
calibration error on the site's other records, which the fit never saw: raw, with the run's own temperatures
(fitted on its validation fold) and with the site's.

Which records are "fold K": every source has ten folds. A folder's labels CSV may give them (column ``fold``);
otherwise ecgadapt assigns CinC and folder records to ten label-stratified folds with seed 0 when it scans the
site (:func:`ecgadapt.data.sources.stratified_folds`). So ``--fold K`` is always a seeded, stratified tenth of
the site (``--fold`` repeated: several tenths), and no separate random fraction is needed.

The result is ``calibration_<site>.json`` in the run directory, written under the run's lock; the run's own
``calibration.json`` is never touched. It holds a temperature for every class of the run: a class the site has
no positive of (or, per class, no positive and negative in the fitted folds) keeps the run's own temperature
(1 without one). ``predict --calibration SITE`` and ``evaluate --calibration SITE`` apply it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ecgadapt.data.cache import load_source
from ecgadapt.data.splits import FOLDS
from ecgadapt.errors import ConfigError, DataError
from ecgadapt.eval.calibration import expected_calibration_error
from ecgadapt.eval.temperature import (
    T_BOUNDS,
    apply_temperature,
    bce,
    check_mode,
    fit_temperature,
    load_calibration,
    temperatures_for,
)
from ecgadapt.inference.external import evaluate_external, external_name
from ecgadapt.locks import locked
from ecgadapt.runs.rundir import RunDir, load_predictions
from ecgadapt.train.evaluate import load_run_config


def check_folds(folds: Sequence[int] | None) -> list[int]:
    """The sorted, distinct folds to fit on (each 1-10); a ConfigError naming the flag otherwise."""
    chosen = sorted({int(k) for k in folds or ()})
    if not chosen:
        raise ConfigError(
            "calibrating on a site needs --fold K: the site's fold (1-10) to fit the temperatures on"
        )
    bad = [k for k in chosen if k not in FOLDS]
    if bad:
        raise ConfigError(f"--fold {bad[0]} is not a fold: a site's records are in folds 1-10")
    if len(chosen) == len(FOLDS):
        raise ConfigError("--fold names all ten folds: no record would be left to measure the calibration on")
    return chosen


def record_folds(
    source: str, data: str | Path, rate: int, labels, cache_dir, ecg_ids: np.ndarray
) -> np.ndarray:
    """The site's fold of each record in ``ecg_ids`` (from the site's cache, scanned as ``evaluate --data`` does)."""
    cache = load_source(source, data, rate, labels, cache_dir=cache_dir, progress=False)
    fold_of = dict(
        zip(cache.index["ecg_id"].to_numpy().tolist(), cache.index["strat_fold"].to_numpy().tolist())
    )
    return np.array([fold_of[int(i)] for i in ecg_ids], dtype=np.int64)


def site_mode(run_dir: str | Path, mode: str | None = None) -> str:
    """``mode``, else the run's ``training.calibration`` (global when the run scales nothing)."""
    if mode is not None:
        return check_mode(mode)
    run_mode = load_run_config(run_dir).training.calibration
    return "global" if run_mode == "none" else run_mode


def calibrate_site(
    run_dir: str | Path,
    data: str | Path,
    source: str,
    labels: str | Path | None = None,
    *,
    folds: Sequence[int],
    name: str | None = None,
    mode: str = "global",
    eval_windows: int | None = None,
    device: str = "auto",
    progress: bool = False,
) -> dict:
    """Fit temperature scaling on fold(s) ``folds`` of external set ``data`` and measure it on the site's other
    records; write ``calibration_<site>.json`` into ``run_dir`` (under its lock) and return the record."""
    run_dir = Path(run_dir)
    site = external_name(data, name)
    folds = check_folds(folds)
    mode = check_mode(mode)
    if mode == "none":
        raise ConfigError("--mode none fits nothing; to stop using a site's calibration, delete its file")
    cfg = load_run_config(run_dir)
    run = RunDir(run_dir)
    with locked(run_dir):  # the scoring and the calibration file: one writer
        external = evaluate_external.__wrapped__(  # the unlocked function: this call holds the lock
            run_dir,
            data,
            source,
            labels,
            name=site,
            eval_windows=eval_windows,
            device=device,
            progress=progress,
        )
        pred = load_predictions(run.external_predictions(site))
        at = record_folds(source, data, cfg.data.rate, labels, cfg.data.cache_dir, pred["ecg_ids"])
        record = _fit_and_measure(run_dir, site, external, pred, at, folds, mode)
        run.write_calibration(record, site)
    return record


def _fit_and_measure(
    run_dir: Path, site: str, external: dict, pred: dict, at: np.ndarray, folds: list[int], mode: str
) -> dict:
    """The site's calibration record: temperatures fitted on ``folds``, errors on the other records."""
    y, p = pred["y_true"].astype(np.float64), pred["y_score"].astype(np.float64)
    shared = [str(c) for c in pred["class_names"]]
    fit = np.isin(at, folds)
    held = ~fit
    counts = {int(k): int((at == k).sum()) for k in np.unique(at)}
    if not fit.any() or not held.any():
        empty = "fold(s) " + ", ".join(map(str, folds)) if not fit.any() else "the other folds"
        raise DataError(
            f"{empty} of site {site} hold none of its {len(at)} records labelled in the run's classes (records per "
            f"fold: {counts}); choose other --fold"
        )
    own = load_calibration(run_dir)
    run_classes = [str(c) for c in RunDir(run_dir).read_final()["class_names"]]
    own_t = temperatures_for(own, run_classes) if own else np.ones(len(run_classes))
    fitted = fit_temperature(y[fit], p[fit], mode)
    unfitted = (
        [] if mode == "global" else [c for c, col in zip(shared, y[fit].T) if not 0 < col.sum() < len(col)]
    )
    site_t = {c: float(t) for c, t in zip(shared, fitted) if c not in unfitted}
    temperatures = [site_t.get(c, float(t)) for c, t in zip(run_classes, own_t)]
    scaled = apply_temperature(p[held], _on(temperatures, run_classes, shared))  # what --calibration applies
    with_run = apply_temperature(p[held], _on(own_t, run_classes, shared)) if own else None
    yh = y[held]
    return {
        "mode": mode,
        "class_names": run_classes,
        "temperatures": temperatures,
        "site": site,
        "fitted_on": {
            "site": site,
            "data": external["data"],
            "source": external["source"],
            "labels": external["labels"],
            "folds": folds,
            "n_records": int(fit.sum()),
        },
        "held_out": {"folds": sorted(k for k in counts if k not in folds), "n_records": int(held.sum())},
        "site_classes": shared,
        "classes_from_run": [c for c in run_classes if c not in site_t],
        "unfitted_classes": unfitted,
        "bounds": list(T_BOUNDS),
        "run_calibration": None if own is None else own["mode"],
        "held_out_ece": {
            "raw": expected_calibration_error(yh, p[held]),
            "run_calibration": None if with_run is None else expected_calibration_error(yh, with_run),
            "site_calibration": expected_calibration_error(yh, scaled),
        },
        "held_out_loss": {
            "raw": bce(yh, p[held]),
            "run_calibration": None if with_run is None else bce(yh, with_run),
            "site_calibration": bce(yh, scaled),
        },
    }


def _on(temperatures: np.ndarray, classes: list[str], subset: list[str]) -> np.ndarray:
    """``temperatures`` (in the order of ``classes``) of the classes in ``subset``, in its order."""
    by_name = dict(zip(classes, np.asarray(temperatures, dtype=np.float64)))
    return np.array([by_name[c] for c in subset])


def format_site_calibration(record: dict, run_dir: str | Path) -> str:
    """What ``ecgadapt calibrate --data`` prints: the fit, the held-out errors, and how to apply it."""
    site, fit, held = record["site"], record["fitted_on"], record["held_out"]
    ece, loss = record["held_out_ece"], record["held_out_loss"]
    by_class = dict(zip(record["class_names"], record["temperatures"]))
    shown = [c for c in record["site_classes"] if c not in record["classes_from_run"]]
    temps = (
        f"T = {by_class[shown[0]]:.4g}"
        if record["mode"] == "global" and shown
        else ", ".join(f"{c} {by_class[c]:.3g}" for c in shown)
    )
    folds = ", ".join(map(str, fit["folds"]))

    def three(values: dict) -> str:
        run_part = (
            "" if values["run_calibration"] is None else f", {values['run_calibration']:.4f} with the run's"
        )
        return f"{values['raw']:.4f} raw{run_part}, {values['site_calibration']:.4f} with {site}'s"

    lines = [
        f"{run_dir}: temperature scaling ({record['mode']}) fitted on {fit['n_records']} records of site {site} "
        f"(fold {folds}) -> {RunDir(run_dir).site_calibration(site)}",
        f"  {temps}",
        f"  held-out records of {site} ({held['n_records']}, folds {', '.join(map(str, held['folds']))}): "
        f"ECE {three(ece)}; loss {three(loss)}",
    ]
    if record["classes_from_run"]:
        lines.append(
            f"  the run's own temperature kept for {', '.join(record['classes_from_run'])} (no positive at {site}"
            + (", or none and no negative in the fitted folds)" if record["unfitted_classes"] else ")")
        )
    lines.append(
        f"  apply it: ecgadapt predict {run_dir} INPUT... --calibration {site}; "
        f"ecgadapt evaluate {run_dir} --calibration {site}"
    )
    return "\n".join(lines)
