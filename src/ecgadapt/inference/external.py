"""Scoring a finished run on an external dataset (a CinC or labelled-folder source) on the classes both share.

The external records go through the source cache at the run's rate and the run's deterministic evaluation
transform (a record longer than 10 s on every 10 s segment, the probabilities averaged per record as
``predict`` averages its windows), and are scored with the metrics, bootstrap intervals and per-class table
of the PTB-XL test (:func:`ecgadapt.train.evaluate.score_split`'s code path), so a folder holding copies of
the run's own test records gives exactly its test metrics. A class of the run is *shared* when at least one external
record is positive for it; the others are listed as without counterpart, as are the external labels
(unmapped SNOMED codes, statements or class names) that mark no class of the run.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ecgadapt.data.cache import ECGCache, load_source
from ecgadapt.data.dataset import ECGDataset, record_starts
from ecgadapt.data.identity import cache_patient_ids
from ecgadapt.data.sources import scan_source, unmatched_labels
from ecgadapt.data.transforms import build_transforms
from ecgadapt.engine.device import resolve_device
from ecgadapt.engine.loop import make_loader, predict_loader
from ecgadapt.errors import ConfigError, DataError, ECGAdaptError
from ecgadapt.eval.bootstrap import bootstrap_ci
from ecgadapt.eval.calibration import expected_calibration_error
from ecgadapt.eval.metrics import score
from ecgadapt.eval.summary import ece_text, interval_note, macro_text, per_class_lines, rare_class_warning
from ecgadapt.eval.temperature import calibrate_probs
from ecgadapt.locks import writes_run_dir
from ecgadapt.models.base import InputSpec
from ecgadapt.runs.rundir import RunDir
from ecgadapt.train.evaluate import calibration_fitted_on, load_run_config, load_run_model


def external_name(data: str | Path, name: str | None = None) -> str:
    """A file-safe name of an external set (default: the data folder's name)."""
    raw = name if name else Path(data).expanduser().resolve().name
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", str(raw)).strip("._")
    if not safe:
        raise ConfigError(f"external set name {raw!r} has no usable character; pass --name")
    return safe


@dataclass
class ExternalSet:
    """An external source ready to be scored by a run: its records positive for a class the run shares, read
    with the run's evaluation transform, and where the shared classes sit among the source's labels and the
    run's outputs."""

    dataset: ECGDataset
    shared: list[str]
    counts: dict[str, int]  # positives per run class among the source's records
    first: np.ndarray  # each record's first cache row (a long record has several)
    source_columns: list[int]
    run_columns: list[int]

    def select(self, y_true: np.ndarray, y_prob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Labels and probabilities of ``predict_loader`` on :attr:`dataset`, on the shared classes only."""
        return y_true[:, self.source_columns], y_prob[:, self.run_columns]


def external_set(
    cache: ECGCache, task: str, run_classes: list[str], input_spec: InputSpec, windows: int, data: str | Path
) -> ExternalSet:
    """The records of an external ``cache`` scored on ``task``'s classes the run shares with it (a class is
    shared when some record is positive for it); an error when none is."""
    first = record_starts(cache.index["ecg_id"].to_numpy())  # a record's first row (long ones have several)
    y_all, classes = cache.labels(task)
    col = {c: i for i, c in enumerate(classes)}
    counts = {c: int(y_all[first, col[c]].sum()) if c in col else 0 for c in run_classes}
    shared = [c for c in run_classes if counts[c] > 0]
    if not shared:
        raise DataError(
            f"no record of {data} is positive for any class of the run ({', '.join(run_classes)}, task {task!r}); "
            "check --source and the labels"
        )
    source_columns = [col[c] for c in shared]
    rows = np.flatnonzero(y_all[:, source_columns].any(axis=1))
    transform = build_transforms(input_spec, cache.rate, train=False, n_eval_windows=windows)
    dataset = ECGDataset(cache, task, "test", transform=transform, rows=rows)
    return ExternalSet(dataset, shared, counts, first, source_columns, [run_classes.index(c) for c in shared])


@writes_run_dir
def evaluate_external(
    run_dir: str | Path,
    data: str | Path,
    source: str,
    labels: str | Path | None = None,
    *,
    name: str | None = None,
    eval_windows: int | None = None,
    device: str = "auto",
    n_resamples: int = 1000,
    seed: int = 0,
    progress: bool = False,
    calibration: str | None = None,
) -> dict:
    """Score ``run_dir``'s best model on the external set ``data``; write its JSON and predictions into the run.

    Its ECE after temperature scaling uses the run's own temperatures, or given ``calibration``, those fitted on
    that external site (``ecgadapt calibrate --data``)."""
    run_dir = Path(run_dir)
    name = external_name(data, name)
    cfg = load_run_config(run_dir)
    dev = resolve_device(device)
    model, meta = load_run_model(run_dir, dev)
    windows = int(eval_windows or cfg.training.eval_windows)
    cache = load_source(source, data, cfg.data.rate, labels, cache_dir=cfg.data.cache_dir, progress=progress)
    task = cfg.data.task
    ext = external_set(cache, task, list(meta["class_names"]), model.input_spec, windows, data)
    first, counts, shared, dataset = ext.first, ext.counts, ext.shared, ext.dataset
    run_classes = list(meta["class_names"])
    t = cfg.training
    loader = make_loader(
        dataset, t.eval_batch_size or t.batch_size, t.num_workers, pin_memory=dev.type == "cuda"
    )
    y_true, y_prob = ext.select(*predict_loader(model, loader, dev, f"scoring {name}" if progress else None))
    metrics = score(y_true, y_prob, shared)
    calibration = _calibration_record(run_dir, y_true, y_prob, shared, calibration)

    other: Counter = unmatched_labels(
        list(cache.index["scp_codes"][first]),
        cache.statements,
        task,
        cache.manifest.get("labels", "statements"),
    )
    other.update(cache.manifest.get("summary", {}).get("unmapped_codes", {}))
    result = {
        "name": name,
        "fingerprint": external_fingerprint(source, data, labels, windows, cache),
        "source": source,
        "data": str(Path(data).expanduser().resolve()),
        "labels": None if labels is None else str(Path(labels).expanduser().resolve()),
        "task": task,
        "eval_windows": windows,
        "n_records": len(dataset.record_ids),
        "n_records_total": int(first.sum()),
        "shared_classes": shared,
        "run_classes_without_counterpart": [c for c in run_classes if c not in shared],
        "external_labels_without_counterpart": dict(sorted(other.items(), key=lambda kv: (-kv[1], kv[0]))),
        "class_counts": counts,
        **metrics,
        "calibration": calibration,
        "bootstrap": {
            m: _interval(y_true, y_prob, m, n_resamples, seed) for m in ("macro_auroc", "macro_auprc")
        },
    }
    files = RunDir(run_dir)
    patients = cache_patient_ids(cache, dataset.record_ids)
    files.write_predictions(f"external_{name}", dataset.record_ids, shared, y_true, y_prob, patients)
    files.write_external(name, result)
    return result


def _calibration_record(
    run_dir: Path, y_true: np.ndarray, y_prob: np.ndarray, classes: list[str], site: str | None = None
) -> dict:
    """ECE of the raw probabilities and, when the run has temperature scaling (fitted on its fold 9, or given
    ``site`` on part of that external site), of the scaled ones, on the external records: does the fold-9
    calibration carry over to another dataset?"""
    scaled, fitted = calibrate_probs(run_dir, y_prob, classes, site=site)
    return {
        "mode": None if fitted is None else fitted["mode"],
        "ece_raw": float(expected_calibration_error(y_true, y_prob)),
        "ece_calibrated": None if fitted is None else float(expected_calibration_error(y_true, scaled)),
        "site": site,
        "fitted_on": calibration_fitted_on(fitted),
    }


def _interval(
    y_true: np.ndarray, y_prob: np.ndarray, metric: str, n_resamples: int, seed: int
) -> dict | None:
    """Bootstrap interval of a macro metric, None when no class can be scored."""
    try:
        return bootstrap_ci(y_true, y_prob, metric, n_resamples=n_resamples, seed=seed)
    except DataError:
        return None


def format_external(result: dict) -> str:
    """A short text summary of :func:`evaluate_external`'s result (what the CLI prints)."""
    lines = [
        f"external set {result['name']} ({result['source']}, {result['n_records']} of {result['n_records_total']} "
        f"records labelled in the run's classes, task {result['task']})",
        f"  {macro_text(result, result.get('bootstrap'))}",
    ]
    note = interval_note(result.get("bootstrap"))
    if note:
        lines.append(f"  {note}")
    cal = result.get("calibration") or {}
    if cal:
        where = cal.get("fitted_on") or "the run's validation fold"
        if cal.get("site") == result["name"]:
            where += ", records scored here too: calibrate's held-out ECE leaves them out"
        lines.append(f"  {ece_text(cal.get('ece_raw'), cal.get('ece_calibrated'), cal.get('mode'), where)}")
    warning = rare_class_warning(result, "external")
    if warning:
        lines.append(f"  {warning}")
    lines.append(f"  shared classes: {', '.join(result['shared_classes'])}")
    lines.append(
        f"  run classes without counterpart: {', '.join(result['run_classes_without_counterpart']) or '-'}"
    )
    other = result["external_labels_without_counterpart"]
    lines.append(
        "  external labels without counterpart: " + (", ".join(f"{k} ({v})" for k, v in other.items()) or "-")
    )
    lines += per_class_lines(result["per_class"])
    return "\n".join(lines)


def external_fingerprint(
    source: str, data: str | Path, labels: str | Path | None, eval_windows: int, cache: ECGCache
) -> dict:
    """What an external score depends on besides the model: the set's settings and the data its cache read (the
    cache's fingerprint: the labels CSV or headers, and every record file's size and modification time)."""
    read = json.dumps(cache.manifest.get("fingerprint"), sort_keys=True)
    return {
        "settings": {
            "source": source,
            "data": str(Path(data).expanduser().resolve()),
            "labels": None if labels is None else str(Path(labels).expanduser().resolve()),
            "eval_windows": int(eval_windows),
        },
        "data_sha256": hashlib.sha256(read.encode()).hexdigest(),
    }


def check_external_sets(sets: list[dict]) -> None:
    """Raise a DataError or ConfigError naming the external set whose ``data`` folder (or ``labels`` CSV) cannot
    be read as its source, before anything trains."""
    for e in sets:
        try:
            scan_source(e.get("source", "folder"), e["data"], e.get("labels"))
        except (DataError, ConfigError) as err:
            raise type(err)(f"external set {e['name']!r}: {err}") from None


def score_external_sets(
    sets: list[dict], run_dirs: list[str | Path], progress: bool = True, failed: dict[str, str] | None = None
) -> list[Path]:
    """Score every finished run on every external set of a benchmark spec. A result is reused only when it is
    newer than the run's model and its fingerprint (:func:`external_fingerprint`: the set's settings and the
    data read) is the current one; else the run is rescored. With ``failed``, a set that cannot be scored is
    recorded there (``"<run dir> (external <name>)"``: the error) instead of stopping the others."""
    written = []
    caches: dict[tuple, ECGCache] = {}
    for run_dir in map(Path, run_dirs):
        files = RunDir(run_dir)
        best = files.best_checkpoint
        if not (best.is_file() and files.final.is_file()):
            continue
        for e in sets:
            name = external_name(e["data"], e["name"])
            source, labels = e.get("source", "folder"), e.get("labels")
            try:
                cfg = load_run_config(run_dir)
                key = (source, e["data"], labels, cfg.data.rate, cfg.data.cache_dir)
                if key not in caches:
                    caches[key] = load_source(
                        source, e["data"], cfg.data.rate, labels, cache_dir=cfg.data.cache_dir, progress=False
                    )
                now = external_fingerprint(source, e["data"], labels, cfg.training.eval_windows, caches[key])
                if _is_current(files, name, now):
                    continue
                r = evaluate_external(run_dir, e["data"], source, labels, name=e["name"])
            except ECGAdaptError as err:
                if failed is None:
                    raise
                failed[f"{run_dir} (external {name})"] = str(err)
                continue
            if progress:
                print(f"{run_dir.name}: external {r['name']} macro AUROC {r['macro_auroc']:.4f}")
            written.append(files.external(name))
    return written


def _is_current(files: RunDir, name: str, fingerprint: dict) -> bool:
    """Whether the run's ``external_<name>.json`` scored its current model on the data and settings of
    ``fingerprint``."""
    out, best = files.external(name), files.best_checkpoint
    if not out.is_file() or out.stat().st_mtime_ns < best.stat().st_mtime_ns:
        return False
    try:
        return files.read_external(name).get("fingerprint") == fingerprint
    except ECGAdaptError:
        return False
