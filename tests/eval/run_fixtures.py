"""Fabricated run directories in the layout of ``run_finetune`` (config.yaml, metrics.csv, predictions, final.json).

Scores are random but informative: ``quality`` scales how far positives' scores sit above negatives', so a
recipe given a higher quality wins on average.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import yaml

from ecgadapt.eval.metrics import classification_metrics

CLASSES = ("CD", "HYP", "MI", "NORM", "STTC")


def labels(n: int, n_classes: int = len(CLASSES), seed: int = 123) -> np.ndarray:
    """Multi-label 0/1 matrix with every class positive and negative at least twice."""
    rng = np.random.default_rng(seed)
    y = (rng.random((n, n_classes)) < 0.3).astype(np.int8)
    y[:2] = 1
    y[2:4] = 0
    return y


def scores(y: np.ndarray, quality: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    logits = quality * (2 * y - 1) + rng.normal(size=y.shape)
    return (1 / (1 + np.exp(-logits))).astype(np.float32)


def config(
    task: str = "superdiagnostic",
    recipe: str = "post_training",
    seed: int = 0,
    fraction: float = 1.0,
    model: str = "ecg_vit_tiny",
    test_fold: int = 10,
    val_fold: int = 9,
) -> dict:
    """A plain config dict shaped like ``FinetuneConfig.to_dict()``."""
    stages = [{"name": "finetune", "trainable": "all", "epochs": 3, "lr": 1e-4, "drop_path_rate": 0.0}]
    if recipe.startswith("post_training") or recipe == "lp_ft":
        stages = [
            {"name": "probe", "trainable": "head", "epochs": 2, "lr": 1e-3, "drop_path_rate": 0.0},
            {"name": "finetune", "trainable": "all", "epochs": 3, "lr": 1e-4, "drop_path_rate": 0.2},
        ]
    return {
        "data": {
            "root": "/data/ptbxl",
            "rate": 100,
            "task": task,
            "fraction": fraction,
            "seed": None,
            "cache_dir": None,
            "test_fold": test_fold,
            "val_fold": val_fold,
        },
        "model": {"name": model, "weights": None, "kwargs": {"width": 16}},
        "recipe": {"name": recipe, "stages": stages, "pretrained": True},
        "training": {"batch_size": 8, "max_train_batches": 2},
        "seed": seed,
        "out": None,
        "notes": [],
    }


def write_run(
    run_dir: Path,
    cfg: dict,
    *,
    y_test: np.ndarray,
    ids_test: np.ndarray,
    y_val: np.ndarray | None = None,
    ids_val: np.ndarray | None = None,
    quality: float = 1.0,
    finished: bool = True,
) -> Path:
    """Write a run directory for ``cfg`` (plain dict) with predictions of the given quality."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    seed = int(cfg["seed"])
    stages = cfg["recipe"]["stages"]
    rows = []
    rng = np.random.default_rng(seed)
    for i, st in enumerate(stages):
        for e in range(st["epochs"]):
            rows.append(
                {
                    "stage": i,
                    "stage_name": st["name"],
                    "epoch": e,
                    "train_loss": 0.7 - 0.01 * e,
                    "val_loss": 0.69,
                    "val_macro_auroc": 0.5 + 0.05 * (i + e) + 0.01 * rng.random(),
                    "val_macro_auprc": 0.3,
                    "lr": st["lr"],
                    "time_s": 0.1,
                    "best": 1,
                }
            )
    with (run_dir / "metrics.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    if not finished:
        return run_dir
    if y_val is None:
        y_val, ids_val = y_test, ids_test + 100_000
    task = cfg["data"]["task"]
    out = {}
    for split, y, ids in (("val", y_val, ids_val), ("test", y_test, ids_test)):
        s = scores(y, quality, seed * 1000 + (split == "test") + int(cfg["data"]["test_fold"]) * 7)
        np.savez(
            run_dir / f"predictions_{split}.npz",
            ecg_ids=np.asarray(ids),
            class_names=np.asarray(CLASSES[: y.shape[1]]),
            y_true=y.astype(np.int8),
            y_score=s,
        )
        out[split] = classification_metrics(y, s, CLASSES[: y.shape[1]])
        out[split]["loss"] = 0.6
    final = {
        "recipe": cfg["recipe"]["name"],
        "stages": stages,
        "seed": seed,
        "fraction": cfg["data"]["fraction"],
        "task": task,
        "model": cfg["model"]["name"],
        "weights": None,
        "notes": [],
        "class_names": list(CLASSES[: y_test.shape[1]]),
        "n_records": {"train": 300, "val": len(y_val), "test": len(y_test)},
        "best": {
            "stage": len(stages) - 1,
            "stage_name": stages[-1]["name"],
            "epoch": 1,
            "val": {"macro_auroc": out["val"]["macro_auroc"], "macro_auprc": out["val"]["macro_auprc"]},
        },
        "val": out["val"],
        "test": out["test"],
        "timings": {"train_s": 1.5, "final_eval_s": 0.2},
    }
    (run_dir / "final.json").write_text(json.dumps(final, indent=2))
    return run_dir


QUALITY = {
    "baseline_ft": 0.8,
    "post_training": 1.2,
    "post_training_no_lp": 1.0,
    "post_training_no_sd": 1.1,
    "post_training_no_dropout": 1.15,
    "scratch": 0.3,
}


def fabricate_results(
    root: Path,
    tasks=("superdiagnostic", "rhythm"),
    recipes=("baseline_ft", "post_training"),
    fractions=(1.0,),
    seeds=(0, 1, 2),
    n_test: int = 80,
) -> Path:
    """A results folder ``root/runs/<cell>`` of finished official-split runs (same test records per task)."""
    for t_i, task in enumerate(tasks):
        y = labels(n_test, seed=10 + t_i)
        ids = np.arange(n_test) + 1000 * t_i
        for recipe in recipes:
            for fraction in fractions:
                for seed in seeds:
                    cfg = config(task, recipe, seed, fraction)
                    name = f"{task}__ecg_vit_tiny__{recipe}__frac{fraction:g}__seed{seed}"
                    write_run(
                        root / "runs" / name,
                        cfg,
                        y_test=y,
                        ids_test=ids,
                        quality=QUALITY.get(recipe, 1.0) * (0.6 + 0.4 * fraction),
                    )
    return root


def add_shift_results(root: Path, corruptions=("gaussian_noise", "lead_sets")) -> Path:
    """Give every run under ``root/runs`` a fitted ``calibration.json`` and a fabricated ``robustness.csv``
    (AUROC falling with severity, faster for a lower-quality recipe)."""
    from ecgadapt.data.corruptions import CORRUPTIONS
    from ecgadapt.eval.temperature import fit_run_calibration

    for run_dir in sorted((root / "runs").iterdir()):
        if not (run_dir / "final.json").is_file():
            continue
        fit_run_calibration(run_dir, "global")
        final = json.loads((run_dir / "final.json").read_text())
        quality = QUALITY.get(final["recipe"], 1.0)
        clean = final["test"]["macro_auroc"]
        rows = []
        for name in corruptions:
            c = CORRUPTIONS[name]
            for s in c.severities:
                auroc = clean - 0.04 * s / quality
                rows.append(
                    {
                        "corruption": name,
                        "severity": s,
                        "level": c.level(s),
                        "macro_auroc": auroc,
                        "macro_auprc": auroc - 0.3,
                        "loss": 0.5 + 0.05 * s,
                        "ece": 0.05,
                        "n_records": 80,
                        "seed": 0,
                        "calibration": "global",
                    }
                )
        with (run_dir / "robustness.csv").open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return root


def fabricate_rotate_results(
    root: Path,
    cells: tuple[tuple[str, str], ...] = (("ecg_vit_tiny", "baseline_ft"), ("ecg_vit_tiny", "post_training")),
    tasks=("superdiagnostic",),
    seeds=(0, 1),
    n_per_fold: int = 12,
    fold_final: dict | None = None,
    patients: bool = False,
) -> Path:
    """A results folder of finished rotate-folds cells ``runs/<cell>/foldNN`` (fold k tests records of fold k,
    validates fold k % 10 + 1), each pooled as the grid pools it; ``cells``: (model label, recipe) pairs.
    ``fold_final(k, final) -> final`` edits each fold's ``final.json`` before pooling; ``patients`` saves
    ``patient_ids`` beside the predictions (two consecutive ecg_ids per patient)."""
    from ecgadapt.eval.pooling import write_pooled_cell

    for t_i, task in enumerate(tasks):
        y_all = labels(10 * n_per_fold, seed=20 + t_i)
        ids_all = np.arange(10 * n_per_fold) + 1 + 10_000 * t_i
        for model, recipe in cells:
            for seed in seeds:
                cell_id = f"{task}__{model}__{recipe}__frac1__seed{seed}__rotate-folds"
                cell = root / "runs" / cell_id
                dirs, folds = [], []
                for k in range(1, 11):
                    v = k % 10 + 1
                    sl_t = slice((k - 1) * n_per_fold, k * n_per_fold)
                    sl_v = slice((v - 1) * n_per_fold, v * n_per_fold)
                    d = write_run(
                        cell / f"fold{k:02d}",
                        config(task, recipe, seed, test_fold=k, val_fold=v),
                        y_test=y_all[sl_t],
                        ids_test=ids_all[sl_t],
                        y_val=y_all[sl_v],
                        ids_val=ids_all[sl_v],
                        quality=QUALITY.get(recipe, 1.0),
                    )
                    if patients:
                        add_patient_ids(d)
                    if fold_final is not None:
                        path = d / "final.json"
                        path.write_text(json.dumps(fold_final(k, json.loads(path.read_text()))))
                    dirs.append(d)
                    folds.append({"run": d.name, "test_fold": k, "val_fold": v})
                meta = {
                    "cell_id": cell_id,
                    "protocol": "rotate-folds",
                    "task": task,
                    "model_label": model,
                    "recipe_label": recipe,
                    "fraction": 1.0,
                    "seed": seed,
                    "folds": folds,
                    "config": config(task, recipe, seed),
                }
                (cell / "cell.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
                write_pooled_cell(cell, dirs)
    return root


def add_patient_ids(run_dir: Path, per_patient: int = 2) -> None:
    """Save ``patient_ids`` beside a run's predictions: ``per_patient`` consecutive ecg_ids share a patient."""
    for split in ("val", "test"):
        path = Path(run_dir) / f"predictions_{split}.npz"
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
        arrays["patient_ids"] = (arrays["ecg_ids"].astype(np.int64) - 1) // per_patient
        np.savez(path, **arrays)
