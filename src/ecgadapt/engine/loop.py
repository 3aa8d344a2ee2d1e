"""The fit loop: stages in order, one epoch at a time, validation, best checkpoints, early stopping, resume.

:func:`fit` sees the training and validation datasets only; the test split is scored afterwards by
:mod:`ecgadapt.train.finetune`. Each epoch reseeds every RNG from ``(seed, stage, epoch)`` and draws its
shuffling from a generator seeded the same way; every training item draws its random crop (or segment) under
its own seed ``(seed, stage, epoch, item)``, so the number of loader workers never changes a result. ``last.pt``
is written after every epoch, so a run killed at any point and resumed repeats the uninterrupted run exactly (on
CPU). Each stage starts from the previous stage's best checkpoint file (``best_stage{i}.pt``), in an
uninterrupted run and a resumed one alike.

Under ``torchrun`` the same loop runs in every process (:mod:`ecgadapt.engine.distributed`): each trains on its
share of every global batch through DistributedDataParallel, predicts its share of the validation items, and all
take the same decisions from the gathered predictions; rank 0 alone reads and writes the run directory.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler, Subset
from tqdm.auto import tqdm

from ecgadapt.data.dataset import record_mean
from ecgadapt.engine.budget import (
    StagePlan,
    _better,
    _significant,
    batches_per_epoch,
    budget_record,
    describe_budget,
    plan_budget,
)
from ecgadapt.engine.checkpoints import save_checkpoint
from ecgadapt.engine.device import autocast
from ecgadapt.engine.distributed import Distributed, ShardedBatches, epoch_order, global_batches
from ecgadapt.engine.ema import ModelEMA
from ecgadapt.engine.frozen import FrozenFeatures, HeadOnly, frozen_features, predict_frozen
from ecgadapt.engine.optim import cosine_schedule_with_warmup, create_optimizer
from ecgadapt.engine.runstate import FitState, RunCheckpoints
from ecgadapt.engine.seeding import (
    SeededItems,
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

Callback = Callable[[str, dict], None]
"""``callback(event, info)``; events: ``"batch_end"`` (stage, epoch, batch, loss) and ``"epoch_end"`` (row), and
from :func:`~ecgadapt.train.finetune.run_finetune` ``"run_end"`` (run_dir, final); see :mod:`ecgadapt.engine.loggers`."""

Scorer = Callable[[np.ndarray, np.ndarray, Sequence[str], int, Mapping[str, str]], dict]
"""``scorer(y_true, y_prob, class_names, min_positives, exclude)``: the validation metrics of an epoch, a dict
with ``loss``, ``macro_auroc`` and ``macro_auprc`` (e.g. :func:`ecgadapt.eval.metrics.score`)."""


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


def make_batch_loader(
    dataset: Dataset,
    batches: Sampler[list[int]],
    num_workers: int,
    *,
    generator: torch.Generator | None = None,
    pin_memory: bool = False,
) -> DataLoader:
    """A DataLoader of the given ``batches`` of item indices (e.g. :class:`ShardedBatches`), with seeded workers."""
    return DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=num_workers,
        generator=generator,
        worker_init_fn=seed_worker if num_workers > 0 else None,
        pin_memory=pin_memory,
    )


@torch.no_grad()
def predict_loader(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device,
    desc: str | None = None,
    *,
    records: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """``(y_true, y_prob)`` over ``loader``; items of shape (W, leads, L) are averaged over their W windows, and
    items of one record (the segments of a long external record, see ``ECGDataset``) over the record (per item
    when not ``records``).

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
    ids = getattr(loader.dataset, "ecg_ids", None) if records else None
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
        dist: Distributed | None = None,
    ) -> None:
        self.dist = dist if dist is not None else Distributed(device=device)
        if self.dist.enabled and device.type == "cuda":  # BatchNorm by the whole batch, as in one process
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model = model.to(device)
        self.recipe = recipe
        self.train_set, self.val_set = train_set, val_set
        self.run_dir = Path(run_dir)
        self.scorer = scorer
        self.settings = settings
        self.seed = int(seed)
        self.device = device
        self.drop_reference = drop_reference
        self.loss_fn = nn.BCEWithLogitsLoss(pos_weight=None if pos_weight is None else pos_weight.to(device))
        self.meta = dict(checkpoint_meta or {})
        self.callbacks = list(callbacks) if self.dist.is_main else []  # only rank 0 reports and logs
        self.checkpoints = RunCheckpoints(self.run_dir, self.meta)
        self.class_names = list(getattr(val_set, "class_names", []) or [])
        self.excluded_classes = class_exclusions(train_set, self.class_names, settings)
        self.eval_batch_size = settings.eval_batch_size or settings.batch_size
        n_val = len(val_set)  # type: ignore[arg-type]
        if self.dist.enabled and n_val < self.dist.world_size:
            raise ConfigError(
                f"{n_val} validation item(s) cannot be shared by {self.dist.world_size} processes"
            )
        self.val_shard = self.dist.shard(n_val)
        self.val_loader = make_loader(
            Subset(val_set, self.val_shard) if self.dist.enabled else val_set,
            self.eval_batch_size,
            settings.num_workers,
            pin_memory=device.type == "cuda",
        )
        self.amp = settings.amp and device.type == "cuda"
        self.frozen: FrozenFeatures | None = None  # the current head stage's cached features, if any
        # what a training step calls: the stage's forward (in DistributedDataParallel when distributed)
        self.step_model: nn.Module = self.model

    def _load_shared(self, path: Path) -> dict:
        """:meth:`RunCheckpoints.load_own` on rank 0, the checkpoint handed to every rank (the others never read
        the run directory)."""
        return self.dist.on_main(lambda: self.checkpoints.load_own(path))

    # --- the stages ---
    def budget(self, state: FitState | None = None) -> dict:
        """The run's budget (planned maximum and floor per stage) and, given ``state``, the steps it used."""
        progress = None if state is None else (state.stage_steps, state.stage_epochs, state.stopped_early)
        return budget_record(self.plans, self.steps_per_epoch(), self.settings.min_steps, progress)

    def describe_budget(self) -> str:
        """One line for the run header: each stage's maximum (and floor) in optimiser steps."""
        return describe_budget(self.plans, self.steps_per_epoch(), len(self.train_set))  # type: ignore[arg-type]

    def steps_per_epoch(self) -> int:
        """Optimiser steps per epoch (see :func:`batches_per_epoch`)."""
        return batches_per_epoch(
            len(self.train_set), self.settings.batch_size, self.settings.max_train_batches
        )[0]

    @property
    def plans(self) -> list[StagePlan]:
        """The optimiser-step budget of every stage (:func:`plan_budget`)."""
        return plan_budget(self.recipe.stages, self.steps_per_epoch(), self.settings.min_steps)

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

    def run(self, resume: bool = False) -> FitResult:
        """Run every stage (continuing from ``last.pt`` when ``resume``) and return the best checkpoints."""
        ckpt = self.dist.on_main(lambda: self.checkpoints.resume_point(resume))
        state = FitState(**ckpt["state"]) if ckpt is not None else FitState()
        for i, stage in enumerate(self.recipe.stages):
            if i < state.stage or (i == state.stage and state.stage_done):
                continue
            mid_stage = ckpt is not None and i == state.stage and state.epoch >= 0
            if mid_stage:
                self.model.load_state_dict(ckpt["model"])
            elif i > 0:
                self.model.load_state_dict(self._load_shared(self.checkpoints.stage_best(i - 1))["model"])
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
        best = self.dist.on_main(lambda: self._save_best(last))
        self.model.load_state_dict(best["model"])
        return FitResult(
            best_path=self.checkpoints.best,
            stage_best_paths=[self.checkpoints.stage_best(i) for i in range(last + 1)],
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

    def _save_best(self, last: int) -> dict:
        """``best.pt``: the last stage's best checkpoint with the run's metadata; returns that checkpoint."""
        best = self.checkpoints.load_own(self.checkpoints.stage_best(last))
        save_checkpoint(self.checkpoints.best, {**best, **self.meta, "kind": "best"})
        return best

    def _run_stage(
        self, i: int, stage: Stage, plan: StagePlan, state: FitState, ckpt: dict | None
    ) -> FitState:
        self.configure_stage(stage)
        self.frozen = None
        if stage.trainable == "head" and self.settings.cache_frozen_features:
            self.frozen = frozen_features(
                self.model,
                stage,
                self.train_set,
                self.val_set,
                batch_size=self.eval_batch_size,
                device=self.device,
                amp=self.amp,
                dist=self.dist,
            )
        forward = self.model if stage.trainable != "head" else HeadOnly(self.model, self.frozen is not None)
        self.step_model = self.dist.wrap(forward)
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
            seed_epoch(self.seed, i, epoch, self.dist.rank)
            train_loss, peak_lr = self._train_epoch(i, stage, plan, epoch, optimizer, scheduler, ema)
            eval_model = ema.module if ema is not None else self.model
            y_true, y_prob = self._validate(eval_model)
            val = self.scorer(
                y_true, y_prob, self.class_names, self.settings.min_test_positives, self.excluded_classes
            )
            metric = self.settings.select_metric
            improved = _better(val[metric], state.best_score, metric)
            if _significant(val[metric], state.ref_score, metric, stage.min_delta):
                state.ref_score, state.bad_epochs = float(val[metric]), 0
            else:
                state.bad_epochs += 1
            stage_best = None
            if improved:
                state.best_score, state.best_epoch = float(val[metric]), epoch
                stage_best = {
                    "model": eval_model.state_dict(),
                    "stage": i,
                    "stage_name": stage.name,
                    "epoch": epoch,
                    "val": {k: val[k] for k in ("macro_auroc", "macro_auprc", "loss")},
                    **self.checkpoints.owner,
                }
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
            state.n_metric_rows += 1
            last_state = {
                "model": self.model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "ema": ema.state_dict() if ema is not None else None,
                "rng": get_rng_state(),
                "state": vars(state).copy(),
                **self.checkpoints.owner,
            }
            self.dist.on_main(functools.partial(self._write_epoch, i, stage_best, row, last_state))
            tqdm.write(
                f"[{stage.name} {epoch + 1}/{plan.epochs}] loss {train_loss:.4f}  val AUROC "
                f"{val['macro_auroc']:.4f}  AUPRC {val['macro_auprc']:.4f}  peak lr {row['lr']:.2e}  "
                f"{elapsed:.1f}s{'  *best' if improved else ''}"
                + (f"  (early stop after {state.stage_steps[i]} steps)" if state.stopped_early[i] else "")
            )
            if state.stage_done:
                break
        self.frozen, self.step_model = None, self.model
        return state

    def _validate(self, model: nn.Module) -> tuple[np.ndarray, np.ndarray]:
        """``(y_true, y_prob)`` per validation record: this rank's items predicted (on cached features in a head
        stage that has them), every rank's gathered in item order, then averaged per record."""
        if self.frozen is not None:
            y, p = predict_frozen(model, self.frozen)
        else:
            y, p = predict_loader(model, self.val_loader, self.device, records=False)
        y, p = self.dist.gather_rows(self.val_shard, len(self.val_set), y, p)  # type: ignore[arg-type]
        ids = getattr(self.val_set, "ecg_ids", None)
        return (y, p) if ids is None else record_mean(ids, y, p)

    def _write_epoch(self, i: int, stage_best: dict | None, row: dict, last_state: dict) -> None:
        """An epoch's files (rank 0): the stage's best checkpoint if it improved, its metrics row, ``last.pt``."""
        if stage_best is not None:
            save_checkpoint(self.checkpoints.stage_best(i), stage_best)
        self.checkpoints.metrics.append(row)
        save_checkpoint(self.checkpoints.last, last_state)
        self._emit("epoch_end", row)

    def epoch_batches(self, i: int, epoch: int, steps: int) -> ShardedBatches:
        """This rank's share of the first ``steps`` global batches of stage ``i``'s ``epoch``: the batches a
        shuffling one-process loader seeded by ``(seed, stage, epoch)`` would give."""
        n = len(self.train_set)  # type: ignore[arg-type]
        _, drop_last = batches_per_epoch(n, self.settings.batch_size)
        order = epoch_order(n, epoch_generator(self.seed, i, epoch))
        batches = global_batches(order, self.settings.batch_size, drop_last)[:steps]
        return ShardedBatches(batches, self.dist.rank, self.dist.world_size)

    def _train_epoch(
        self, i: int, stage: Stage, plan: StagePlan, epoch: int, optimizer, scheduler, ema: ModelEMA | None
    ) -> tuple[float, float]:
        """One epoch (``plan.steps_in_epoch(epoch)`` steps); returns (mean loss, peak learning rate): the highest
        rate any step of the epoch used in any parameter group, so a decaying schedule shows where it started."""
        s = self.settings
        frozen = self.frozen
        steps = plan.steps_in_epoch(epoch)
        batches = self.epoch_batches(i, epoch, steps)
        loader = make_batch_loader(  # with cached features, the same shuffled batches of item indices
            SeededItems(self.train_set, item_seed_base(self.seed, i, epoch))
            if frozen is None
            else range(len(frozen.train)),
            batches,
            s.num_workers if frozen is None else 0,
            generator=epoch_generator(self.seed, i, epoch),  # the workers' seeds of a one-process loader
            pin_memory=self.device.type == "cuda" and frozen is None,
        )
        set_train_mode(self.model, stage.trainable)
        params = [p for p in self.model.parameters() if p.requires_grad]
        total, count, peak_lr = 0.0, 0, 0.0
        bar = tqdm(
            total=steps,
            desc=f"{stage.name} {epoch + 1}/{plan.epochs}",
            leave=False,
            disable=not s.progress or not self.dist.is_main,
        )
        for b, (batch, global_size) in enumerate(zip(loader, batches.global_sizes())):
            x, y = batch if frozen is None else (frozen.train[batch], frozen.train_labels[batch])
            x = x.to(self.device, non_blocking=True)
            y = y.to(self.device, non_blocking=True)
            with autocast(self.device, self.amp):
                logits = self.step_model(x)
            loss = self.loss_fn(logits.float(), y)
            loss_value = loss.item()
            if self.dist.enabled:  # the global batch's mean loss, the same on every rank
                (loss_value,) = self.dist.sum([loss_value * len(y) / global_size])
            if not math.isfinite(loss_value):
                raise ConfigError(
                    f"training loss became {loss_value} at stage {stage.name!r}, epoch {epoch + 1}, batch {b + 1}; "
                    "lower the learning rate or enable gradient clipping (training.grad_clip)"
                )
            optimizer.zero_grad(set_to_none=True)
            if self.dist.enabled:
                loss = loss * self.dist.loss_weight(len(y), global_size)
            loss.backward()
            if s.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, s.grad_clip)
            peak_lr = max(peak_lr, *(g["lr"] for g in optimizer.param_groups))
            optimizer.step()
            scheduler.step()
            if ema is not None:
                ema.update(self.model)
            total += loss_value
            count += 1
            bar.update(1)
            bar.set_postfix(loss=f"{total / count:.4f}")
            self._emit("batch_end", {"stage": i, "epoch": epoch, "batch": b, "loss": loss_value})
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
