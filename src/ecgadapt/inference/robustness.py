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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from ecgadapt.data.cache import load_or_prepare
from ecgadapt.data.corruptions import corrupt, corruption_rng, get_corruption, parse_selection
from ecgadapt.data.dataset import ECGDataset
from ecgadapt.engine.loop import make_loader, predict_loader, resolve_device
from ecgadapt.errors import CheckpointError, ConfigError
from ecgadapt.eval.figures import figure_png
from ecgadapt.eval.metrics import score
from ecgadapt.eval.robustness import robustness_figure
from ecgadapt.fileio import atomic_write_text
from ecgadapt.locks import writes_run_dir
from ecgadapt.runs.rundir import RunDir
from ecgadapt.train.evaluate import calibrated_scores, eval_dataset, load_run_config, load_run_model

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


def _scores(run_dir: Path, model, dataset: Dataset, cfg, device: torch.device, uncalibrated: bool) -> dict:
    t = cfg.training
    loader = make_loader(
        dataset, t.eval_batch_size or t.batch_size, t.num_workers, pin_memory=device.type == "cuda"
    )
    y_true, y_prob = predict_loader(model, loader, device)
    metrics = score(y_true, y_prob, dataset.class_names)
    return {**metrics, **calibrated_scores(run_dir, y_true, y_prob, list(dataset.class_names), uncalibrated)}


@writes_run_dir
def run_robustness(
    run_dir: str | Path,
    data: str | Path | None = None,
    *,
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] | None = None,
    seed: int = 0,
    device: str = "auto",
    uncalibrated: bool = False,
    cache_dir: str | Path | None = None,
) -> pd.DataFrame:
    """Score ``run_dir``'s best model on its test split under each corruption and severity; write
    ``robustness.csv`` and ``robustness.png`` into the run and return the table.

    ``data`` replaces the run's ``data.root`` (the same dataset moved elsewhere); ``corruptions`` and
    ``severities`` restrict the grid (default: every corruption at every severity).
    """
    run_dir = Path(run_dir)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ConfigError(f"--seed {seed!r} is not a corruption seed: give a whole number >= 0 (default 0)")
    cfg = load_run_config(run_dir)
    selection = parse_selection(corruptions, severities)
    root = data if data is not None else cfg.data.root
    if root is None:
        raise ConfigError(f"{run_dir}/{RunDir.CONFIG} has no data.root; pass --data DIR (the run's dataset)")
    dev = resolve_device(device)
    model, meta = load_run_model(run_dir, dev)
    cache = load_or_prepare(root, cfg.data.rate, cache_dir=cache_dir or cfg.data.cache_dir, progress=False)
    base = eval_dataset(cache, cfg, model.input_spec, "test", cfg.training.eval_windows)
    if list(base.class_names) != list(meta["class_names"]):
        raise CheckpointError(
            f"the classes of task {cfg.data.task!r} in {root} differ from those the run was trained on"
        )
    clean = _scores(run_dir, model, base, cfg, dev, uncalibrated)
    rows = []
    for name, levels in selection:
        c = get_corruption(name)
        rows.append(_row(name, 0, c.level(0), clean, len(base.record_ids), seed))
        for severity in levels:
            m = _scores(run_dir, model, CorruptedDataset(base, name, severity, seed), cfg, dev, uncalibrated)
            rows.append(_row(name, severity, c.level(severity), m, len(base.record_ids), seed))
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    atomic_write_text(RunDir(run_dir).robustness_csv, table.to_csv(index=False, float_format="%.6g"))
    figure_png(robustness_figure(table, title=f"Robustness: {run_dir.name}"), RunDir(run_dir).robustness_png)
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
    return (
        f"{run_dir}: test macro AUROC under corruption (severity 0 = clean) -> "
        f"{RunDir(run_dir).robustness_csv}, {RunDir(run_dir).robustness_png}\n"
        + wide.to_string(float_format=lambda v: f"{v:.4f}", na_rep="–")
    )
