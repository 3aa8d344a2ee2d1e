"""Scoring a finished run's best checkpoint on a split: shared by the final step of a run and ``evaluate``.

Because :func:`ecgadapt.train.finetune.run_finetune` scores the test fold with :func:`score_split` too,
``evaluate_run(run_dir)`` reproduces ``final.json``'s test metrics exactly (same weights, same
deterministic evaluation transform, same metric code).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ecgadapt.data.cache import ECGCache, load_or_prepare
from ecgadapt.data.dataset import ECGDataset
from ecgadapt.data.transforms import build_transforms
from ecgadapt.engine.checkpoints import load_checkpoint
from ecgadapt.engine.device import resolve_device
from ecgadapt.engine.loop import make_loader, predict_loader
from ecgadapt.errors import CheckpointError, ConfigError
from ecgadapt.eval.calibration import expected_calibration_error
from ecgadapt.eval.metrics import score
from ecgadapt.eval.summary import (
    ece_text,
    interval_note,
    macro_intervals,
    macro_text,
    per_class_lines,
    rare_class_warning,
)
from ecgadapt.eval.temperature import calibrate_probs, load_calibration
from ecgadapt.models import create_model
from ecgadapt.models.base import ECGModel, InputSpec
from ecgadapt.runs.rundir import RunDir, read_json
from ecgadapt.train.config import FinetuneConfig

SPLITS = ("train", "val", "test")


def load_run_config(run_dir: str | Path) -> FinetuneConfig:
    """The resolved config of a run directory."""
    path = RunDir(run_dir).config
    if not path.is_file():
        raise ConfigError(f"{run_dir} is not an ecgadapt run directory: {RunDir.CONFIG} is missing")
    return FinetuneConfig.from_saved(path)


def load_run_model(run_dir: str | Path, device: str | torch.device = "cpu") -> tuple[ECGModel, dict]:
    """The best model of a finished run (eval mode, on ``device``) and its checkpoint metadata."""
    path = RunDir(run_dir).best_checkpoint
    if not path.is_file():
        raise CheckpointError(
            f"{path} does not exist: the run in {run_dir} has not finished training; resume it with --resume"
        )
    ckpt = load_checkpoint(path)
    for key in ("model_name", "num_classes", "class_names", "model_kwargs"):
        if key not in ckpt:
            raise CheckpointError(f"{path} lacks {key!r}: it was not written by ecgadapt finetune")
    model = create_model(
        ckpt["model_name"], num_classes=int(ckpt["num_classes"]), **dict(ckpt["model_kwargs"])
    )
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as err:
        raise CheckpointError(f"{path} does not fit model {ckpt['model_name']!r}: {err}") from err
    meta = {k: v for k, v in ckpt.items() if k != "model"}
    return model.to(device).eval(), meta


def eval_dataset(
    cache: ECGCache, cfg: FinetuneConfig, input_spec: InputSpec, split: str, eval_windows: int
) -> ECGDataset:
    """The dataset of ``split`` with the deterministic evaluation transform (``eval_windows`` crops per record)."""
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    transform = build_transforms(input_spec, cache.rate, train=False, n_eval_windows=eval_windows)
    d = cfg.data
    return ECGDataset(
        cache,
        d.task,
        split,
        fraction=d.fraction if split == "train" else 1.0,
        seed=d.seed if d.seed is not None else cfg.seed,
        transform=transform,
        test_fold=d.test_fold,
        val_fold=d.val_fold,
        cache_preprocessing=d.cache_preprocessing,
    )


def score_split(
    model: ECGModel,
    dataset: ECGDataset,
    cfg: FinetuneConfig,
    device: torch.device,
    exclude: dict[str, str] | None = None,
    desc: str | None = None,
) -> tuple[dict, np.ndarray, np.ndarray]:
    """``(metrics, y_true, y_prob)`` of ``model`` on ``dataset``; metrics include per-class AUROC/AUPRC.

    The macro metrics leave out ``exclude``'s classes and those with fewer than ``training.min_test_positives``.
    ``desc`` labels a progress bar over the batches (None: no bar)."""
    t = cfg.training
    loader = make_loader(
        dataset, t.eval_batch_size or t.batch_size, t.num_workers, pin_memory=device.type == "cuda"
    )
    y_true, y_prob = predict_loader(model, loader, device, desc)
    return score(y_true, y_prob, dataset.class_names, t.min_test_positives, exclude), y_true, y_prob


def scoring_rules(run_dir: str | Path, cfg: FinetuneConfig) -> tuple[int, dict[str, str]]:
    """The run's macro-metric class rules, as ``final.json``'s test score applied them: its
    ``training.min_test_positives`` and the classes ``final.json`` lists as untrained (the arguments
    ``min_positives, exclude`` of :func:`~ecgadapt.eval.metrics.score`)."""
    final_path = RunDir(run_dir).final
    untrained = (read_json(final_path).get("untrained_classes") or {}) if final_path.is_file() else {}
    return cfg.training.min_test_positives, dict(untrained)


def evaluate_run(
    run_dir: str | Path,
    split: str = "test",
    eval_windows: int | None = None,
    device: str = "auto",
    cache: ECGCache | None = None,
    uncalibrated: bool = False,
    progress: bool = False,
    calibration: str | None = None,
) -> dict:
    """Re-score a finished run's best checkpoint on ``split`` (default: the run's ``eval_windows``); the run's
    temperature scaling (``calibration.json``; given ``calibration``, the one fitted on that external site) is
    applied unless ``uncalibrated`` (AUROC/AUPRC are unchanged by it). ``progress`` shows a bar over the batches."""
    cfg = load_run_config(run_dir)
    if calibration is not None and not uncalibrated:
        load_calibration(run_dir, calibration)  # a missing site file is an error before anything is scored
    dev = resolve_device(device)
    model, meta = load_run_model(run_dir, dev)
    windows = int(eval_windows or cfg.training.eval_windows)
    if cache is None:
        if cfg.data.root is None:
            raise ConfigError(
                f"{run_dir}/{RunDir.CONFIG} has no data.root; cannot find the data to evaluate on"
            )
        d = cfg.data
        cache = load_or_prepare(
            d.root, d.rate, cache_dir=d.cache_dir, progress=False, source=d.source, labels=d.labels
        )
    dataset = eval_dataset(cache, cfg, model.input_spec, split, windows)
    if list(dataset.class_names) != list(meta["class_names"]):
        raise CheckpointError(
            f"the classes of task {cfg.data.task!r} in {cfg.data.root} differ from those the run was trained on"
        )
    rules = scoring_rules(run_dir, cfg)
    desc = f"scoring {split}" if progress else None
    metrics, y_true, y_prob = score_split(model, dataset, cfg, dev, rules[1], desc)
    metrics = {
        **metrics,
        **calibrated_scores(run_dir, y_true, y_prob, dataset.class_names, uncalibrated, rules, calibration),
        "ece_raw": expected_calibration_error(y_true, y_prob),
        "bootstrap": macro_intervals(y_true, y_prob, metrics),
    }
    return {"split": split, "eval_windows": windows, "n_records": len(dataset.record_ids), **metrics}


def format_evaluation(run_dir: str | Path, m: dict) -> str:
    """:func:`evaluate_run`'s result as text (what ``ecgadapt evaluate`` prints): the macro figures with their
    intervals, ECE before and after temperature scaling, rare classes, and a line per class."""
    lines = [
        f"{run_dir} [{m['split']}, {m['n_records']} records, {m['eval_windows']} window(s)]: "
        f"{macro_text(m, m.get('bootstrap'))}"
    ]
    note = interval_note(m.get("bootstrap"))
    if note:
        lines.append(f"  {note}")
    after = m.get("ece") if m.get("calibration") else None
    where = m.get("calibration_fitted_on")
    lines.append(f"  {ece_text(m.get('ece_raw', m.get('ece')), after, m.get('calibration'), where)}")
    warning = rare_class_warning(m, m["split"])
    if warning:
        lines.append(f"  {warning}")
    lines += per_class_lines(m["per_class"])
    return "\n".join(lines)


def calibrated_scores(
    run_dir: str | Path,
    y_true: np.ndarray,
    y_prob: np.ndarray,
    class_names: list[str],
    uncalibrated: bool = False,
    rules: tuple[int, dict[str, str] | None] = (1, None),
    site: str | None = None,
) -> dict:
    """Metrics of the run's calibrated probabilities (raw ones when ``uncalibrated`` or the run has no
    ``calibration.json``; given ``site``, scaled by the temperatures fitted on that external site), with ``ece``,
    ``calibration`` (the mode applied, or None) and ``calibration_fitted_on`` (in words). ``rules`` are the
    macro-metric class rules (min positives, excluded classes) of :func:`~ecgadapt.eval.metrics.score`."""
    probs, calibration = calibrate_probs(run_dir, y_prob, class_names, uncalibrated, site)
    metrics = score(y_true, probs, class_names, *rules) if calibration is not None else {}
    mode = None if calibration is None else calibration["mode"]
    return {
        **metrics,
        "ece": expected_calibration_error(y_true, probs),
        "calibration": mode,
        "calibration_fitted_on": calibration_fitted_on(calibration),
    }


def calibration_fitted_on(calibration: dict | None) -> str | None:
    """Which records a calibration's temperatures were fitted on, in words (None without one)."""
    if calibration is None:
        return None
    fit = calibration.get("fitted_on") or {}
    if "site" in fit:
        return f"fold {', '.join(map(str, fit['folds']))} of site {fit['site']}"
    return "the run's validation fold"
