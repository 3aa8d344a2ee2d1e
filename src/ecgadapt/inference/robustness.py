"""``ecgadapt robustness``: a finished run's test split scored under controlled corruptions.

Each record is corrupted as read from the cache (12 leads in mV at the cache's rate), *before* the run's
evaluation preprocessing (resampling, band-pass, normalisation, crops), the way noise reaches a real
recording; the model, the transform and the metric code are the run's own (:mod:`ecgadapt.train.evaluate`).
The generator of each (corruption, severity, record) is seeded from ``seed``, the corruption's name, the
severity and the record's ``ecg_id`` (:func:`~ecgadapt.data.corruptions.corruption_rng`), so a rerun gives the
same table whatever the batch size or the number of workers. The run's temperature scaling is applied
(it changes the loss and ECE, never AUROC/AUPRC) unless ``uncalibrated``.

Writes ``robustness.csv`` (one row per corruption and severity, severity 0 = the clean test split, scored
once) and ``robustness.png`` (metric against severity, one panel per corruption) into the run directory.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ecgadapt.data.cache import load_or_prepare, load_source
from ecgadapt.data.corruptions import corrupt, corruption_rng, get_corruption, parse_selection
from ecgadapt.data.dataset import ECGDataset
from ecgadapt.engine.device import resolve_device
from ecgadapt.engine.loop import make_loader, predict_loader
from ecgadapt.errors import CheckpointError, ConfigError
from ecgadapt.eval.figures import figure_png
from ecgadapt.eval.metrics import score
from ecgadapt.eval.robustness import robustness_figure
from ecgadapt.fileio import atomic_write_bytes, atomic_write_text
from ecgadapt.inference.external import external_name, external_set
from ecgadapt.locks import writes_run_dir
from ecgadapt.runs.rundir import RunDir
from ecgadapt.train.evaluate import (
    calibrated_scores,
    eval_dataset,
    load_run_config,
    load_run_model,
    scoring_rules,
)

ROBUSTNESS_CSV, ROBUSTNESS_PNG = RunDir.ROBUSTNESS_CSV, RunDir.ROBUSTNESS_PNG
COLUMNS = (
    "corruption",
    "severity",
    "level",
    "macro_auroc",
    "macro_auprc",
    "loss",
    "ece",
    "n_records",
    "seed",
    "calibration",
)


class CorruptedDataset(Dataset):
    """``base`` (an evaluation ECGDataset) with each raw record corrupted before ``base``'s transform."""

    def __init__(self, base: ECGDataset, corruption: str, severity: int, seed: int) -> None:
        get_corruption(corruption)
        self.base, self.corruption, self.severity, self.seed = base, corruption, int(severity), int(seed)

    def __len__(self) -> int:
        return len(self.base)

    def __getattr__(self, name: str) -> Any:  # class_names, split, labels, ... of the base dataset
        if name == "base":
            raise AttributeError(name)
        return getattr(self.base, name)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        b = self.base
        x = np.array(b.cache.signals[b.rows[i]], dtype=np.float32)
        rng = corruption_rng(self.seed, self.corruption, self.severity, int(b.ecg_ids[i]))
        x = corrupt(x, self.corruption, self.severity, b.rate, rng)
        if b.transform is not None:
            x = b.transform(x)
        x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        return x, torch.from_numpy(b.labels[i].astype(np.float32))


def _scores(
    run_dir: Path,
    model,
    dataset: Dataset,
    cfg,
    device: torch.device,
    uncalibrated: bool,
    rules: tuple[int, dict[str, str] | None],
    select: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None,
    names: list[str] | None = None,
) -> dict:
    """Metrics of ``model`` on ``dataset`` by the one scoring path of ``evaluate``: float32 probabilities, the
    run's class rules (``rules``, see :func:`~ecgadapt.train.evaluate.scoring_rules`) and its temperature
    scaling; ``select`` keeps an external set's shared classes (``names``)."""
    t = cfg.training
    loader = make_loader(
        dataset, t.eval_batch_size or t.batch_size, t.num_workers, pin_memory=device.type == "cuda"
    )
    y_true, y_prob = predict_loader(model, loader, device)
    if select is not None:
        y_true, y_prob = select(y_true, y_prob)
    names = list(names if names is not None else dataset.class_names)
    metrics = score(y_true, y_prob, names, *rules)
    return {**metrics, **calibrated_scores(run_dir, y_true, y_prob, names, uncalibrated, rules)}


@dataclass
class _Target:
    """What a robustness table scores: the clean dataset, its class rules and where the table goes."""

    dataset: ECGDataset
    rules: tuple[int, dict[str, str] | None]
    csv: Path
    png: Path
    title: str
    select: Callable | None = None  # an external set's shared classes (ExternalSet.select) ...
    class_names: list[str] | None = None  # ... and their names


def _own_test_split(run_dir: Path, cfg, model, meta, data, labels, cache_dir) -> _Target:
    """The run's own test fold, read from its own source (PTB-XL, cinc or folder), at ``data`` if it moved."""
    d = cfg.data
    root = data if data is not None else d.root
    cache = load_or_prepare(
        root,
        d.rate,
        cache_dir=cache_dir or d.cache_dir,
        progress=False,
        source=d.source,
        labels=labels if labels is not None else d.labels,
    )
    base = eval_dataset(cache, cfg, model.input_spec, "test", cfg.training.eval_windows)
    if list(base.class_names) != list(meta["class_names"]):
        raise CheckpointError(
            f"the classes of task {d.task!r} in {root} differ from those the run was trained on"
        )
    files = RunDir(run_dir)
    title = f"Robustness: {run_dir.name}"
    return _Target(base, scoring_rules(run_dir, cfg), files.robustness_csv, files.robustness_png, title)


def _external_target(run_dir: Path, cfg, model, meta, data, source, labels, name, cache_dir) -> _Target:
    """Every record of an external set labelled in a class the run shares, scored as ``evaluate --data`` scores
    it (its shared classes, default class rules)."""
    cache = load_source(
        source, data, cfg.data.rate, labels, cache_dir=cache_dir or cfg.data.cache_dir, progress=False
    )
    ext = external_set(
        cache, cfg.data.task, list(meta["class_names"]), model.input_spec, cfg.training.eval_windows, data
    )
    name = external_name(data, name)
    files = RunDir(run_dir)
    return _Target(
        ext.dataset,
        (1, None),
        files.external_robustness(name, "csv"),
        files.external_robustness(name, "png"),
        f"Robustness: {run_dir.name} on {name}",
        ext.select,
        ext.shared,
    )


@writes_run_dir
def run_robustness(
    run_dir: str | Path,
    data: str | Path | None = None,
    *,
    source: str | None = None,
    labels: str | Path | None = None,
    name: str | None = None,
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] | None = None,
    seed: int = 0,
    device: str = "auto",
    uncalibrated: bool = False,
    cache_dir: str | Path | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Score ``run_dir``'s best model under each corruption and severity; write the table and figure into the
    run and return the table.

    Without ``source``: the run's test fold, from the run's own source (``data.source``, ``data.labels``), at
    ``data`` when the dataset moved; writes ``robustness.csv`` / ``.png``. With ``source`` (``cinc`` or
    ``folder``, ``labels`` for a folder): the external set ``data``, every record labelled in a class the run
    shares, scored as ``evaluate --data`` scores it; writes ``robustness_external_<name>.csv`` / ``.png``.
    ``corruptions`` and ``severities`` restrict the grid (default: every corruption at every severity).
    ``progress`` shows a bar over the corrupted splits scored.
    """
    run_dir = Path(run_dir)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ConfigError(f"--seed {seed!r} is not a corruption seed: give a whole number >= 0 (default 0)")
    cfg = load_run_config(run_dir)
    selection = parse_selection(corruptions, severities)
    if source is not None and data is None:
        raise ConfigError("--source names the layout of an external set: give its folder with --data DIR")
    if source is None and data is None and cfg.data.root is None:
        raise ConfigError(f"{run_dir}/{RunDir.CONFIG} has no data.root; pass --data DIR (the run's dataset)")
    dev = resolve_device(device)
    model, meta = load_run_model(run_dir, dev)
    if source is None:
        target = _own_test_split(run_dir, cfg, model, meta, data, labels, cache_dir)
    else:
        target = _external_target(run_dir, cfg, model, meta, data, source, labels, name, cache_dir)
    base = target.dataset

    def scores(dataset: Dataset) -> dict:
        return _scores(
            run_dir, model, dataset, cfg, dev, uncalibrated, target.rules, target.select, target.class_names
        )

    bar = tqdm(
        total=1 + sum(len(levels) for _, levels in selection),
        desc=f"robustness {run_dir.name}",
        unit="split",
        disable=not progress,
    )
    clean = scores(base)
    bar.update(1)
    rows = []
    for corruption, levels in selection:
        c = get_corruption(corruption)
        rows.append(_row(corruption, 0, c.level(0), clean, len(base.record_ids), seed))
        for severity in levels:
            bar.set_postfix_str(f"{corruption} {severity}")
            m = scores(CorruptedDataset(base, corruption, severity, seed))
            rows.append(_row(corruption, severity, c.level(severity), m, len(base.record_ids), seed))
            bar.update(1)
    bar.close()
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    png = figure_png(robustness_figure(table, title=target.title))  # drawn before anything is written
    atomic_write_text(target.csv, table.to_csv(index=False, float_format="%.6g"))
    atomic_write_bytes(target.png, png)
    table.attrs["csv"], table.attrs["png"] = str(target.csv), str(target.png)
    return table


def _row(name: str, severity: int, level: str, m: dict, n: int, seed: int) -> dict:
    return {
        "corruption": name,
        "severity": severity,
        "level": level,
        "macro_auroc": m["macro_auroc"],
        "macro_auprc": m["macro_auprc"],
        "loss": m["loss"],
        "ece": m["ece"],
        "n_records": n,
        "seed": seed,
        "calibration": m["calibration"] or "none",
    }


def format_robustness(table: pd.DataFrame, run_dir: str | Path) -> str:
    """The table as text: macro AUROC per corruption (rows) and severity (columns)."""
    wide = table.pivot_table(index="corruption", columns="severity", values="macro_auroc", sort=False)
    wide.columns = [f"sev {c}" for c in wide.columns]
    csv = table.attrs.get("csv", RunDir(run_dir).robustness_csv)
    png = table.attrs.get("png", RunDir(run_dir).robustness_png)
    return (
        f"{run_dir}: test macro AUROC under corruption (severity 0 = clean) -> {csv}, {png}\n"
        + wide.to_string(float_format=lambda v: f"{v:.4f}", na_rep="–")
    )
