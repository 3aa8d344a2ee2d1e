"""How the fit loop trains: the ``training`` section of a fine-tuning config (batches, device, clipping, model
selection, evaluation)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TrainingConfig:
    """How to train: batches, device, clipping, model selection and evaluation."""

    batch_size: int = 64
    eval_batch_size: int | None = None  # None: batch_size
    num_workers: int = 0  # loader processes; 0 on CPU: the preprocessing memo stays warm in this process
    device: str = "auto"  # auto: CUDA if available, else CPU
    amp: bool = True  # bf16 autocast on CUDA (never on CPU)
    grad_clip: float | None = 1.0  # max gradient norm; None or 0: off
    select_metric: str = "macro_auroc"  # validation metric for the best checkpoint and early stopping
    eval_windows: int = 1  # windows averaged per record at validation and test time (multi-crop)
    ema: float | None = None  # EMA decay of the weights (e.g. 0.999); None: off
    pos_weight: bool = False  # class-balanced BCE: pos_weight = negatives / positives per class
    max_train_batches: int | None = None  # cap on batches per epoch (test-sized runs)
    min_steps: int = 200  # floor on a recipe's optimiser steps, shared by its stages (see budget.plan_budget)
    min_test_positives: int = 1  # macro metrics leave out classes with fewer positives in the scored split
    exclude_untrained_classes: bool = True  # ... and classes with no positive in the training split
    score_test: bool = True  # False: a tuning candidate, scored on the validation fold only (see bench.tune)
    calibration: str = (
        "global"  # temperature scaling fitted on the validation fold: global, per_class or none
    )
    head_bias_init: str = (
        "prior"  # a fresh head's bias: "prior" (log-odds of the training prevalence) or "zero"
    )
    progress: bool = True  # tqdm progress bars
    logger: str = (
        "csv"  # csv (metrics.csv only), tensorboard or mlflow (see engine.loggers); never changes a result
    )
    cache_frozen_features: bool = True  # a head stage trains on its frozen backbone's features, computed once
