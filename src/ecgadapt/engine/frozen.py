"""A frozen backbone's features, computed once for a stage that trains the head alone (``trainable="head"``).

The backbone of a head stage is frozen and in eval mode, so its features are the same every epoch; with a random
crop shorter than the record, random segments or augmentation they are not, which shows as a draw from torch's,
numpy's or ``random``'s RNG while they are computed (the RNGs are restored), and the stage then runs the backbone
every batch. In a distributed run each rank computes the features of its share of the items; the training
features are gathered on every rank (any rank's batch may hold any item), the validation features stay with the
rank that predicts those items.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ecgadapt.engine.device import autocast
from ecgadapt.engine.distributed import Distributed
from ecgadapt.engine.seeding import cpu_rng_digest, get_rng_state, set_rng_state
from ecgadapt.engine.stages import Stage, set_train_mode
from ecgadapt.models.base import ECGModel


@dataclass
class FrozenFeatures:
    """A frozen backbone's pooled features (the head's input), computed once for a ``trainable="head"`` stage."""

    train: torch.Tensor  # (N, num_features): training item i in row i
    train_labels: torch.Tensor  # (N, C)
    # per validation batch of this rank's items: the features of its B items' W windows (B x W rows, W = 0
    # without windows), labels
    val: list[tuple[torch.Tensor, torch.Tensor, int]]
    seconds: float = 0.0  # time taken to compute them


def batch_items(
    dataset: Dataset, batch_size: int, indices: Sequence[int] | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(x, y)`` batches of ``dataset`` (of its ``indices``, default all) in item order, stacked in this process as
    an unshuffled loader would (without a loader, whose start draws from torch's global RNG)."""
    order = range(len(dataset)) if indices is None else indices  # type: ignore[arg-type]
    for start in range(0, len(order), batch_size):
        items = [dataset[j] for j in order[start : start + batch_size]]
        yield torch.stack([x for x, _ in items]), torch.stack([y for _, y in items])


class HeadOnly(nn.Module):
    """A head stage's training forward: ``model``'s head on the frozen backbone's features, which are the input
    when ``features_given`` (cached), else computed without gradients. A module of its own so that
    DistributedDataParallel, which averages gradients only through a module's ``forward``, can wrap it."""

    def __init__(self, model: ECGModel, features_given: bool) -> None:
        super().__init__()
        self.model, self.features_given = model, features_given

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.features_given:
            return self.model.forward_head(x)
        with torch.no_grad():
            features = self.model.forward_features(x)
        return self.model.forward_head(features)


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
def predict_frozen(model: ECGModel, frozen: FrozenFeatures) -> tuple[np.ndarray, np.ndarray]:
    """``(y_true, y_prob)`` per validation item of this rank, from its cached features: ``model``'s head only
    (items of shape (W, leads, L) averaged over their W windows, as :func:`~ecgadapt.engine.loop.predict_loader`)."""
    model.eval()
    ys, probs = [], []
    for features, y, windows in frozen.val:
        p = torch.sigmoid(model.forward_head(features).float())
        if windows:
            p = p.view(-1, windows, p.shape[-1]).mean(dim=1)
        probs.append(p.cpu())
        ys.append(y)
    return torch.cat(ys).numpy(), torch.cat(probs).numpy()


def frozen_features(
    model: ECGModel,
    stage: Stage,
    train_set: Dataset,
    val_set: Dataset,
    *,
    batch_size: int,
    device: torch.device,
    amp: bool,
    dist: Distributed,
) -> FrozenFeatures | None:
    """The frozen backbone's features of every training item and of this rank's validation items, when ``stage``
    trains the head alone on items that draw no random number (else None: the backbone runs every batch)."""
    if type(model).forward is not ECGModel.forward:
        tqdm.write(
            f"  {stage.name}: {type(model).__name__}.forward is its own, so the backbone runs every batch"
        )
        return None
    t0 = time.perf_counter()
    set_train_mode(model, stage.trainable)
    train_shard = dist.shard(len(train_set))  # type: ignore[arg-type]
    val_shard = dist.shard(len(val_set))  # type: ignore[arg-type]
    rng, before = get_rng_state(), cpu_rng_digest()
    try:
        train = [
            (pooled_features(model, x, device, amp)[0], y)
            for x, y in batch_items(train_set, batch_size, train_shard if dist.enabled else None)
        ]
        random_items = any(dist.all_gather(cpu_rng_digest() != before))
        val = [
            (*pooled_features(model, x, device, False), y)
            for x, y in (
                [] if random_items else batch_items(val_set, batch_size, val_shard if dist.enabled else None)
            )
        ]
        random_items = random_items or any(dist.all_gather(cpu_rng_digest() != before))
    finally:
        set_rng_state(rng)
    if random_items:
        tqdm.write(
            f"  {stage.name}: the items draw random numbers (a random crop shorter than the record, random "
            "segments or augmentation), so the frozen backbone runs every batch"
        )
        return None
    features, labels = torch.cat([f for f, _ in train]), torch.cat([y for _, y in train])
    if dist.enabled:
        gathered = dist.gather_rows(train_shard, len(train_set), features.cpu().numpy(), labels.numpy())  # type: ignore[arg-type]
        features, labels = (torch.from_numpy(a).to(device) for a in gathered)
    frozen = FrozenFeatures(
        train=features,
        train_labels=labels.to(device),
        val=[(f, y, w) for f, w, y in val],
        seconds=time.perf_counter() - t0,
    )
    tqdm.write(
        f"  {stage.name}: frozen backbone features of {len(frozen.train)} training and "
        f"{len(_records(val_set))} validation records computed once ({frozen.seconds:.1f}s); the head trains on them"
    )
    return frozen


def _records(val_set: Any) -> Any:
    return getattr(val_set, "record_ids", val_set)
