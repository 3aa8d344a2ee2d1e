"""The fit loop: stages in order, one epoch at a time, validation, best checkpoints, early stopping, resume.

:func:`fit` sees the training and validation datasets only; the test split is scored afterwards by
:mod:`ecgadapt.train.finetune`. Each epoch reseeds every RNG from ``(seed, stage, epoch)`` and draws its
shuffling from a generator seeded the same way; every training item draws its random crop (or segment) under
its own seed ``(seed, stage, epoch, item)``, so the number of loader workers never changes a result. ``last.pt``
is written after every epoch, so a run killed at any point and resumed repeats the uninterrupted run exactly (on
CPU). Each stage starts from the previous stage's best checkpoint file (``best_stage{i}.pt``), in an
uninterrupted run and a resumed one alike.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ecgadapt.data.dataset import record_mean
from ecgadapt.engine.budget import StagePlan, batches_per_epoch, plan_budget
from ecgadapt.engine.checkpoints import load_checkpoint, save_checkpoint
from ecgadapt.engine.optim import cosine_schedule_with_warmup, create_optimizer
from ecgadapt.engine.seeding import (
    SeededItems,
    cpu_rng_digest,
    epoch_generator,
    get_rng_state,
    item_seed_base,
    seed_epoch,
    seed_worker,
    set_rng_state,
)
from ecgadapt.engine.settings import TrainingConfig
from ecgadapt.engine.stages import Recipe, Stage, set_drop_rates, set_train_mode, set_trainable
from ecgadapt.errors import ConfigError, DataError
from ecgadapt.models.base import ECGModel
from ecgadapt.runs.rundir import RunDir

Callback = Callable[[str, dict], None]
"""``callback(event, info)``; events: ``"batch_end"`` (stage, epoch, batch, loss) and ``"epoch_end"`` (row), and
from :func:`~ecgadapt.train.finetune.run_finetune` ``"run_end"`` (run_dir, final); see :mod:`ecgadapt.engine.loggers`."""

Scorer = Callable[[np.ndarray, np.ndarray, Sequence[str], int, Mapping[str, str]], dict]
"""``scorer(y_true, y_prob, class_names, min_positives, exclude)``: the validation metrics of an epoch, a dict
with ``loss``, ``macro_auroc`` and ``macro_auprc`` (e.g. :func:`ecgadapt.eval.metrics.score`)."""


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"``: CUDA if available, else CPU; asking for CUDA without one is an error."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available; use --device cpu or auto")
    return dev


def autocast(device: torch.device, enabled: bool = True) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA; a no-op on CPU (CPU runs stay in float32 and repeat exactly)."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


class ModelEMA:
    """Exponential moving average of a model's weights (buffers are copied); evaluated instead of the model."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = float(decay)
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """``ema = decay * ema + (1 - decay) * model`` for float tensors; other tensors are copied."""
        for ema_t, t in zip(self.module.state_dict().values(), model.state_dict().values()):
            if ema_t.dtype.is_floating_point:
                ema_t.lerp_(t.detach(), 1.0 - self.decay)
            else:
                ema_t.copy_(t)

    def state_dict(self) -> dict:
        return self.module.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state)


def pos_weight_from_labels(labels: np.ndarray, max_weight: float = 100.0) -> torch.Tensor:
    """Class-balanced BCE weights ``negatives / positives`` per class, clipped to [1/max, max]."""
    labels = np.asarray(labels, dtype=np.float64)
    pos = labels.sum(axis=0)
    neg = labels.shape[0] - pos
    w = np.where(pos > 0, neg / np.maximum(pos, 1.0), 1.0)
    return torch.as_tensor(np.clip(w, 1.0 / max_weight, max_weight), dtype=torch.float32)


def make_loader(
    dataset: Dataset,
    batch_size: int,
    num_workers: int,
    *,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
    pin_memory: bool = False,
) -> DataLoader:
    """A DataLoader with seeded workers (``seed_worker``) and an optional seeded shuffling generator."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        generator=generator,
        worker_init_fn=seed_worker if num_workers > 0 else None,
        drop_last=drop_last,
        pin_memory=pin_memory,
    )


@torch.no_grad()
def predict_loader(
    model: nn.Module, loader: DataLoader, device: torch.device, desc: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(y_true, y_prob)`` over ``loader``; items of shape (W, leads, L) are averaged over their W windows, and
    items of one record (the segments of a long external record, see ``ECGDataset``) over the record.

    Always in float32, never under autocast: validation and test scores must not depend on bf16 rounding.
    """
    model.eval()
    ys, probs = [], []
    for x, y in tqdm(loader, desc=desc, leave=False, disable=desc is None):
        x = x.to(device, non_blocking=True)
        windows = x.shape[1] if x.ndim == 4 else 0
        if windows:
            x = x.flatten(0, 1)
        logits = model(x)
        p = torch.sigmoid(logits.float())
        if windows:
            p = p.view(-1, windows, p.shape[-1]).mean(dim=1)
        probs.append(p.cpu())
        ys.append(y)
    if not probs:
        raise DataError("nothing to predict: the evaluation split is empty")
    y_true, y_prob = torch.cat(ys).numpy(), torch.cat(probs).numpy()
    ids = getattr(loader.dataset, "ecg_ids", None)
    return (y_true, y_prob) if ids is None else record_mean(ids, y_true, y_prob)


def class_exclusions(train_set: Any, class_names: Sequence[str], settings: Any) -> dict[str, str]:
    """The classes to leave out of macro metrics by rule of ``settings`` (untrained ones, when asked)."""
    labels = getattr(train_set, "labels", None)
    if not getattr(settings, "exclude_untrained_classes", False) or labels is None or not class_names:
        return {}
    return untrained_classes(np.asarray(labels), class_names)


def untrained_classes(train_labels: np.ndarray, class_names: Sequence[str]) -> dict[str, str]:
    """``{class: reason}`` of the classes with no positive among the training records (unlearnable)."""
    n_pos = np.asarray(train_labels).sum(axis=0)
    return {name: "no positive in the training split" for name, k in zip(class_names, n_pos) if k == 0}


def _better(value: float, best: float | None, metric: str) -> bool:
    """Whether ``value`` improves on ``best`` (higher is better, except for ``loss``).

    The first epoch of a stage always counts as an improvement (``best`` is None), so every stage has a best
    checkpoint even when its metric cannot be computed; a NaN never improves on a number.
    """
    return _significant(value, best, metric, 0.0)


def _significant(value: float, reference: float | None, metric: str, min_delta: float) -> bool:
    """Whether ``value`` improves on ``reference`` by more than ``min_delta`` (the early-stopping rule)."""
    if reference is None:
        return True
    if value is None or math.isnan(value):
        return False
    if math.isnan(reference):
        return True
    return value < reference - min_delta if metric == "loss" else value > reference + min_delta


@dataclass
class FrozenFeatures:
    """A frozen backbone's pooled features (the head's input), computed once for a ``trainable="head"`` stage."""

    train: torch.Tensor  # (N, num_features): training item i in row i
    train_labels: torch.Tensor  # (N, C)
    # per validation batch: the features of its B items' W windows (B x W rows, W = 0 without windows), labels
    val: list[tuple[torch.Tensor, torch.Tensor, int]]
    seconds: float = 0.0  # time taken to compute them


def batch_items(dataset: Dataset, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(x, y)`` batches of ``dataset`` in item order, stacked in this process as an unshuffled loader would
    (without a loader, whose start draws from torch's global RNG)."""
    for start in range(0, len(dataset), batch_size):  # type: ignore[arg-type]
        items = [dataset[j] for j in range(start, min(start + batch_size, len(dataset)))]  # type: ignore[arg-type]
        yield torch.stack([x for x, _ in items]), torch.stack([y for _, y in items])


@torch.no_grad()
def pooled_features(
    model: ECGModel, x: torch.Tensor, device: torch.device, amp: bool
) -> tuple[torch.Tensor, int]:
    """``(features, windows)``: ``model.forward_features`` of a batch, its items' W windows as consecutive rows."""
    x = x.to(device, non_blocking=True)
    windows = x.shape[1] if x.ndim == 4 else 0
    with autocast(device, amp):
        return model.forward_features(x.flatten(0, 1) if windows else x), windows


@torch.no_grad()
def predict_frozen(model: ECGModel, frozen: FrozenFeatures, ecg_ids: Any) -> tuple[np.ndarray, np.ndarray]:
    """:func:`predict_loader` of the validation split on its cached features: ``model``'s head only."""
    model.eval()
    ys, probs = [], []
    for features, y, windows in frozen.val:
        p = torch.sigmoid(model.forward_head(features).float())
        if windows:
            p = p.view(-1, windows, p.shape[-1]).mean(dim=1)
        probs.append(p.cpu())
        ys.append(y)
    y_true, y_prob = torch.cat(ys).numpy(), torch.cat(probs).numpy()
    return (y_true, y_prob) if ecg_ids is None else record_mean(ecg_ids, y_true, y_prob)


@dataclass
class FitState:
    """Progress of a fit, saved in ``last.pt``: where it stands and the current stage's best so far."""

    stage: int = 0
    epoch: int = -1  # last completed epoch of ``stage``
    stage_done: bool = False
    best_score: float | None = None
    best_epoch: int = -1
    ref_score: float | None = None  # early-stopping reference: the last score that improved by > min_delta
    bad_epochs: int = 0  # epochs since the last significant improvement (early-stopping counter)
    n_metric_rows: int = 0
    train_time_s: float = 0.0
    stage_times_s: list[float] = field(default_factory=list)
    stage_steps: list[int] = field(default_factory=list)  # optimiser steps run per stage
    stage_epochs: list[int] = field(default_factory=list)  # epochs run per stage
    stopped_early: list[bool] = field(default_factory=list)


@dataclass
class FitResult:
    """What :func:`fit` leaves: the best checkpoint of every stage and of the run."""

    best_path: Path
    stage_best_paths: list[Path]
    best: dict  # stage, epoch, val metrics of the final best checkpoint
    train_time_s: float
    stage_times_s: list[float]
    budget: dict = field(default_factory=dict)  # planned and used optimiser steps (see Trainer.budget)


class Trainer:
    """Runs a recipe's stages on one model; see :func:`fit`."""

    def __init__(
        self,
        model: ECGModel,
        recipe: Recipe,
        train_set: Dataset,
        val_set: Dataset,
        *,
        run_dir: Path,
        settings: TrainingConfig,
        seed: int,
        device: torch.device,
        scorer: Scorer,
        drop_reference: Callable[[Stage], nn.Module | None] | None = None,
        pos_weight: torch.Tensor | None = None,
        checkpoint_meta: dict | None = None,
        callbacks: Sequence[Callback] = (),
    ) -> None:
        self.model = model.to(device)
        self.recipe = recipe
        self.train_set, self.val_set = train_set, val_set
        self.run_dir = Path(run_dir)
        self.files = RunDir(self.run_dir)
        self.scorer = scorer
        self.settings = settings
        self.seed = int(seed)
        self.device = device
        self.drop_reference = drop_reference
        self.loss_fn = nn.BCEWithLogitsLoss(pos_weight=None if pos_weight is None else pos_weight.to(device))
        self.meta = dict(checkpoint_meta or {})
        self.callbacks = list(callbacks)
        self.metrics = self.files.metrics_log()
        self.class_names = list(getattr(val_set, "class_names", []) or [])
        self.excluded_classes = class_exclusions(train_set, self.class_names, settings)
        self.eval_batch_size = settings.eval_batch_size or settings.batch_size
        self.val_loader = make_loader(
            val_set, self.eval_batch_size, settings.num_workers, pin_memory=device.type == "cuda"
        )
        self.amp = settings.amp and device.type == "cuda"
        self.frozen: FrozenFeatures | None = None  # the current head stage's cached features, if any

    # --- paths ---
    def stage_best_path(self, i: int) -> Path:
        return self.files.stage_best_checkpoint(i)

    @property
    def last_path(self) -> Path:
        return self.files.last_checkpoint

    @property
    def best_path(self) -> Path:
        return self.files.best_checkpoint

    # --- checkpoints of this run ---
    @property
    def _owner(self) -> dict:
        """What stamps a checkpoint as this run's: its config hash (``checkpoint_meta["config_sha256"]``)."""
        sha = self.meta.get("config_sha256")
        return {} if sha is None else {"config_sha256": sha}

    def _load_own(self, path: Path) -> dict:
        """Load one of this run's checkpoints; a checkpoint stamped with another run's config hash is refused
        (copied from another run, it would silently continue that run's training here)."""
        ckpt = load_checkpoint(path)
        mine, theirs = self.meta.get("config_sha256"), ckpt.get("config_sha256")
        if mine is not None and theirs is not None and theirs != mine:
            raise ConfigError(
                f"cannot resume {self.run_dir}: {path} belongs to another run (config hash {str(theirs)[:12]}, this "
                f"run's is {str(mine)[:12]}): it was copied from another run directory; restore this run's own "
                f"checkpoint, or start over with --overwrite"
            )
        return ckpt

    def _check_metric_rows(self, state: FitState) -> None:
        """Refuse to resume when ``metrics.csv`` lacks rows of epochs that ``last.pt`` counts as done (the file
        was edited or replaced): truncating it to the checkpoint would then lose or misplace rows."""
        rows = self.metrics.rows()
        n = state.n_metric_rows
        last = rows[n - 1] if 0 < n <= len(rows) else None
        if n == 0 or (
            last is not None
            and (last.get("stage"), last.get("epoch")) == (str(state.stage), str(state.epoch))
        ):
            return
        raise ConfigError(
            f"cannot resume {self.run_dir}: {self.last_path} was written after {n} epoch(s) (the last: stage "
            f"{state.stage}, epoch {state.epoch}), but {self.metrics.path} holds {len(rows)} row(s) that do not end "
            "there; the run's files do not belong together (was metrics.csv edited or copied?); restore them, or "
            "start over with --overwrite"
        )

    # --- the stages ---
    def steps_per_epoch(self) -> int:
        """Optimiser steps per epoch (see :func:`batches_per_epoch`)."""
        return batches_per_epoch(
            len(self.train_set), self.settings.batch_size, self.settings.max_train_batches
        )[0]

    @property
    def plans(self) -> list[StagePlan]:
        """The optimiser-step budget of every stage (:func:`plan_budget`)."""
        return plan_budget(self.recipe.stages, self.steps_per_epoch(), self.settings.min_steps)

    def budget(self, state: FitState | None = None) -> dict:
        """The run's budget (planned maximum and floor per stage) and, given ``state``, the steps it used."""
        plans = self.plans
        out = {
            "steps_per_epoch": self.steps_per_epoch(),
            "min_steps": int(self.settings.min_steps),
            "max_total_steps": sum(p.max_steps for p in plans),
            "stages": [
                {
                    "name": p.name,
                    "max_steps": p.max_steps,
                    "min_steps": p.min_steps,
                    "warmup_steps": p.warmup_steps,
                    "max_epochs": p.epochs,
                }
                for p in plans
            ],
        }
        if state is not None:
            for i, entry in enumerate(out["stages"]):
                entry["steps_run"] = state.stage_steps[i] if i < len(state.stage_steps) else 0
                entry["epochs_run"] = state.stage_epochs[i] if i < len(state.stage_epochs) else 0
                entry["stopped_early"] = (
                    bool(state.stopped_early[i]) if i < len(state.stopped_early) else False
                )
            out["total_steps_run"] = sum(e["steps_run"] for e in out["stages"])
        return out

    def describe_budget(self) -> str:
        """One line for the run header: each stage's maximum (and floor) in optimiser steps."""
        plans = self.plans
        parts = [
            f"{p.name} <= {p.max_steps}" + (f" (>= {p.min_steps})" if p.min_steps else "") for p in plans
        ]
        return (
            f"budget: {' + '.join(parts)} = <= {sum(p.max_steps for p in plans)} optimiser steps "
            f"({self.steps_per_epoch()} per epoch of {len(self.train_set)} records)"
        )

    def configure_stage(self, stage: Stage) -> None:
        """Trainable parameters and drop rates of ``stage``."""
        set_trainable(self.model, stage.trainable)
        reference = self.drop_reference(stage) if self.drop_reference is not None else None
        set_drop_rates(self.model, stage.drop_rate, stage.drop_path_rate, reference=reference)

    def build_optimizer(self, stage: Stage, plan: StagePlan):
        """AdamW (no decay on norms/biases/embeddings) and its per-step warmup-cosine schedule over the plan."""
        optimizer = create_optimizer(
            self.model,
            lr=stage.lr,
            weight_decay=stage.weight_decay,
            layer_decay=stage.layer_decay,
            head_lr_scale=stage.head_lr_scale,
        )
        scheduler = cosine_schedule_with_warmup(
            optimizer, plan.warmup_steps, plan.max_steps, min_lr_ratio=stage.min_lr_ratio
        )
        return optimizer, scheduler

    def frozen_features(self, stage: Stage) -> FrozenFeatures | None:
        """The frozen backbone's features of every training and validation item, when ``stage`` trains the head
        alone on items that draw no random number (else None, and the stage runs the backbone every batch).

        The backbone of a head stage is frozen and in eval mode, so its features are the same every epoch;
        with a random crop shorter than the record, random segments or augmentation they are not, which shows
        as a draw from torch's, numpy's or ``random``'s RNG while they are computed (the RNGs are restored).
        """
        if stage.trainable != "head" or not self.settings.cache_frozen_features:
            return None
        if type(self.model).forward is not ECGModel.forward:
            tqdm.write(
                f"  {stage.name}: {type(self.model).__name__}.forward is its own, so the backbone runs every batch"
            )
            return None
        t0 = time.perf_counter()
        set_train_mode(self.model, stage.trainable)
        rng, before = get_rng_state(), cpu_rng_digest()
        try:
            train = [
                (pooled_features(self.model, x, self.device, self.amp)[0], y)
                for x, y in batch_items(self.train_set, self.eval_batch_size)
            ]
            random_items = cpu_rng_digest() != before
            val = [
                (*pooled_features(self.model, x, self.device, False), y)
                for x, y in ([] if random_items else batch_items(self.val_set, self.eval_batch_size))
            ]
            random_items = random_items or cpu_rng_digest() != before
        finally:
            set_rng_state(rng)
        if random_items:
            tqdm.write(
                f"  {stage.name}: the items draw random numbers (a random crop shorter than the record, random "
                "segments or augmentation), so the frozen backbone runs every batch"
            )
            return None
        features = FrozenFeatures(
            train=torch.cat([f for f, _ in train]),
            train_labels=torch.cat([y for _, y in train]).to(self.device),
            val=[(f, y, w) for f, w, y in val],
            seconds=time.perf_counter() - t0,
        )
        tqdm.write(
            f"  {stage.name}: frozen backbone features of {len(features.train)} training and "
            f"{len(getattr(self.val_set, 'record_ids', self.val_set))} validation records computed once "
            f"({features.seconds:.1f}s); the head trains on them"
        )
        return features

    def run(self, resume: bool = False) -> FitResult:
        """Run every stage (continuing from ``last.pt`` when ``resume``) and return the best checkpoints."""
        state, ckpt = FitState(), None
        if resume and self.last_path.is_file():
            ckpt = self._load_own(self.last_path)
            state = FitState(**ckpt["state"])
            self._check_metric_rows(state)
            self.metrics.truncate(state.n_metric_rows)
        elif self.metrics.path.is_file():
            self.metrics.truncate(0)
        for i, stage in enumerate(self.recipe.stages):
            if i < state.stage or (i == state.stage and state.stage_done):
                continue
            mid_stage = ckpt is not None and i == state.stage and state.epoch >= 0
            if mid_stage:
                self.model.load_state_dict(ckpt["model"])
            elif i > 0:
                self.model.load_state_dict(self._load_own(self.stage_best_path(i - 1))["model"])
            if not mid_stage:
                state = FitState(
                    stage=i,
                    n_metric_rows=state.n_metric_rows,
                    train_time_s=state.train_time_s,
                    stage_times_s=state.stage_times_s,
                    stage_steps=state.stage_steps,
                    stage_epochs=state.stage_epochs,
                    stopped_early=state.stopped_early,
                )
            state = self._run_stage(i, stage, self.plans[i], state, ckpt if mid_stage else None)
            ckpt = None
        last = len(self.recipe.stages) - 1
        best = self._load_own(self.stage_best_path(last))
        self.model.load_state_dict(best["model"])
        save_checkpoint(self.best_path, {**best, **self.meta, "kind": "best"})
        return FitResult(
            best_path=self.best_path,
            stage_best_paths=[self.stage_best_path(i) for i in range(last + 1)],
            best={
                "stage": best["stage"],
                "stage_name": best["stage_name"],
                "epoch": best["epoch"],
                "val": best["val"],
            },
            train_time_s=state.train_time_s,
            stage_times_s=list(state.stage_times_s),
            budget=self.budget(state),
        )

    def _run_stage(
        self, i: int, stage: Stage, plan: StagePlan, state: FitState, ckpt: dict | None
    ) -> FitState:
        self.configure_stage(stage)
        self.frozen = self.frozen_features(stage)
        setup_s = self.frozen.seconds if self.frozen is not None else 0.0  # counted in the first epoch's time
        optimizer, scheduler = self.build_optimizer(stage, plan)
        ema = ModelEMA(self.model, self.settings.ema) if self.settings.ema else None
        if ckpt is not None:
            optimizer.load_state_dict(ckpt["optimizer"])
            scheduler.load_state_dict(ckpt["scheduler"])
            if ema is not None and ckpt.get("ema") is not None:
                ema.load_state_dict(ckpt["ema"])
            set_rng_state(ckpt["rng"])
        for per_stage, empty in (
            (state.stage_times_s, 0.0),
            (state.stage_steps, 0),
            (state.stage_epochs, 0),
            (state.stopped_early, False),
        ):
            if len(per_stage) <= i:
                per_stage.append(empty)
        for epoch in range(state.epoch + 1, plan.epochs):
            t0 = time.perf_counter()
            seed_epoch(self.seed, i, epoch)
            train_loss, peak_lr = self._train_epoch(i, stage, plan, epoch, optimizer, scheduler, ema)
            eval_model = ema.module if ema is not None else self.model
            if self.frozen is not None:
                y_true, y_prob = predict_frozen(
                    eval_model, self.frozen, getattr(self.val_set, "ecg_ids", None)
                )
            else:
                y_true, y_prob = predict_loader(eval_model, self.val_loader, self.device)
            val = self.scorer(
                y_true, y_prob, self.class_names, self.settings.min_test_positives, self.excluded_classes
            )
            metric = self.settings.select_metric
            improved = _better(val[metric], state.best_score, metric)
            if _significant(val[metric], state.ref_score, metric, stage.min_delta):
                state.ref_score, state.bad_epochs = float(val[metric]), 0
            else:
                state.bad_epochs += 1
            if improved:
                state.best_score, state.best_epoch = float(val[metric]), epoch
                save_checkpoint(
                    self.stage_best_path(i),
                    {
                        "model": eval_model.state_dict(),
                        "stage": i,
                        "stage_name": stage.name,
                        "epoch": epoch,
                        "val": {k: val[k] for k in ("macro_auroc", "macro_auprc", "loss")},
                        **self._owner,
                    },
                )
            elapsed, setup_s = time.perf_counter() - t0 + setup_s, 0.0
            state.epoch = epoch
            state.train_time_s += elapsed
            state.stage_times_s[i] += elapsed
            state.stage_steps[i] = plan.steps_through(epoch)
            state.stage_epochs[i] = epoch + 1
            stop = (
                stage.patience is not None
                and state.bad_epochs >= stage.patience
                and plan.steps_through(epoch) >= plan.min_steps
            )
            last = epoch == plan.epochs - 1
            state.stopped_early[i] = stop and not last
            state.stage_done = stop or last
            row = {
                "stage": i,
                "stage_name": stage.name,
                "epoch": epoch,
                "train_loss": train_loss,
                "val_loss": val["loss"],
                "val_macro_auroc": val["macro_auroc"],
                "val_macro_auprc": val["macro_auprc"],
                "lr": peak_lr,  # the epoch's peak: its highest learning rate of any step and parameter group
                "time_s": elapsed,
                "best": int(improved),
                "optimizer_steps": sum(state.stage_steps),
            }
            self.metrics.append(row)
            state.n_metric_rows += 1
            save_checkpoint(
                self.last_path,
                {
                    "model": self.model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "ema": ema.state_dict() if ema is not None else None,
                    "rng": get_rng_state(),
                    "state": vars(state).copy(),
                    **self._owner,
                },
            )
            self._emit("epoch_end", row)
            tqdm.write(
                f"[{stage.name} {epoch + 1}/{plan.epochs}] loss {train_loss:.4f}  val AUROC "
                f"{val['macro_auroc']:.4f}  AUPRC {val['macro_auprc']:.4f}  peak lr {row['lr']:.2e}  "
                f"{elapsed:.1f}s{'  *best' if improved else ''}"
                + (f"  (early stop after {state.stage_steps[i]} steps)" if state.stopped_early[i] else "")
            )
            if state.stage_done:
                break
        self.frozen = None
        return state

    def _train_epoch(
        self, i: int, stage: Stage, plan: StagePlan, epoch: int, optimizer, scheduler, ema: ModelEMA | None
    ) -> tuple[float, float]:
        """One epoch (``plan.steps_in_epoch(epoch)`` steps); returns (mean loss, peak learning rate): the highest
        rate any step of the epoch used in any parameter group, so a decaying schedule shows where it started."""
        s = self.settings
        _, drop_last = batches_per_epoch(len(self.train_set), s.batch_size)
        frozen = self.frozen
        loader = make_loader(  # with cached features, the same shuffled batches of item indices
            SeededItems(self.train_set, item_seed_base(self.seed, i, epoch))
            if frozen is None
            else range(len(frozen.train)),
            s.batch_size,
            s.num_workers if frozen is None else 0,
            shuffle=True,
            generator=epoch_generator(self.seed, i, epoch),
            drop_last=drop_last,
            pin_memory=self.device.type == "cuda" and frozen is None,
        )
        steps = plan.steps_in_epoch(epoch)
        set_train_mode(self.model, stage.trainable)
        params = [p for p in self.model.parameters() if p.requires_grad]
        head_only = stage.trainable == "head"
        total, count, peak_lr = 0.0, 0, 0.0
        bar = tqdm(
            total=steps, desc=f"{stage.name} {epoch + 1}/{plan.epochs}", leave=False, disable=not s.progress
        )
        for b, batch in enumerate(loader):
            if b >= steps:
                break
            x, y = batch if frozen is None else (frozen.train[batch], frozen.train_labels[batch])
            x = x.to(self.device, non_blocking=True)
            y = y.to(self.device, non_blocking=True)
            with autocast(self.device, self.amp):
                if frozen is not None:
                    logits = self.model.forward_head(x)
                elif head_only:
                    with torch.no_grad():
                        features = self.model.forward_features(x)
                    logits = self.model.forward_head(features)
                else:
                    logits = self.model(x)
            loss = self.loss_fn(logits.float(), y)
            if not torch.isfinite(loss):
                raise ConfigError(
                    f"training loss became {loss.item()} at stage {stage.name!r}, epoch {epoch + 1}, batch {b + 1}; "
                    "lower the learning rate or enable gradient clipping (training.grad_clip)"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if s.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, s.grad_clip)
            peak_lr = max(peak_lr, *(g["lr"] for g in optimizer.param_groups))
            optimizer.step()
            scheduler.step()
            if ema is not None:
                ema.update(self.model)
            total += loss.item()
            count += 1
            bar.update(1)
            bar.set_postfix(loss=f"{total / count:.4f}")
            self._emit("batch_end", {"stage": i, "epoch": epoch, "batch": b, "loss": loss.item()})
        bar.close()
        return total / max(count, 1), peak_lr

    def _emit(self, event: str, info: dict) -> None:
        for cb in self.callbacks:
            cb(event, info)


def fit(
    model: ECGModel,
    recipe: Recipe,
    train_set: Dataset,
    val_set: Dataset,
    *,
    run_dir: Path,
    settings: TrainingConfig,
    seed: int,
    device: torch.device,
    scorer: Scorer,
    resume: bool = False,
    drop_reference: Callable[[Stage], nn.Module | None] | None = None,
    pos_weight: torch.Tensor | None = None,
    checkpoint_meta: dict | None = None,
    callbacks: Sequence[Callback] = (),
) -> FitResult:
    """Train ``model`` through ``recipe``'s stages on ``train_set``, selecting on ``val_set``; see the module doc."""
    trainer = Trainer(
        model,
        recipe,
        train_set,
        val_set,
        run_dir=run_dir,
        settings=settings,
        seed=seed,
        device=device,
        scorer=scorer,
        drop_reference=drop_reference,
        pos_weight=pos_weight,
        checkpoint_meta=checkpoint_meta,
        callbacks=callbacks,
    )
    return trainer.run(resume=resume)
