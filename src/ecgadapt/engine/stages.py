"""Stages and recipes as data (a :class:`Recipe` is a list of :class:`Stage` s run in order), plus the helpers
that apply a stage to a model (what trains, which mode, which drop rates).

A stage says what trains (``"head"`` or ``"all"``), for how long, with which learning rate and which
regularisation is on. The preset recipes live in :mod:`ecgadapt.train.recipes`.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from ecgadapt.errors import ConfigError
from ecgadapt.models import create_model
from ecgadapt.models.base import ECGModel
from ecgadapt.models.layers import DropPath, drop_path_schedule

TRAINABLE = ("head", "all")


@dataclass
class Stage:
    """One training stage: what trains, for how long, with which optimiser settings and regularisation."""

    name: str
    trainable: str = "all"  # "head": frozen backbone kept in eval mode; "all": full fine-tuning
    epochs: int = 30  # maximum epochs (early stopping may end the stage sooner); see max_steps
    max_steps: int | None = None  # maximum optimiser steps; when set it replaces ``epochs`` as the length
    lr: float = 1e-4  # peak learning rate (after warmup), cosine-decayed to lr * min_lr_ratio
    head_lr_scale: float = 1.0  # the head's learning rate is lr * head_lr_scale (beside layer_decay)
    weight_decay: float = 0.05  # AdamW decoupled weight decay (never on norms, biases, embeddings)
    warmup_epochs: float = 0.0  # linear warmup, in (possibly fractional) epochs; starts above 0
    drop_rate: float = 0.0  # dropout of the model (what create_model(drop_rate=...) sets)
    drop_path_rate: float = 0.0  # stochastic depth of the last block; linear from 0 over the blocks
    patience: int | None = None  # stop after this many epochs without validation improvement; None: never
    min_delta: float = 0.0  # an epoch improves (for early stopping) only if it beats the reference by more
    layer_decay: float | None = None  # layer-wise LR decay factor (None: off)
    min_lr_ratio: float = 0.0  # cosine floor as a fraction of ``lr``

    def validate(self) -> None:
        """Raise :class:`ConfigError` on an impossible value, naming the stage and field."""
        where = f"stage {self.name!r}"
        for name, value in asdict(self).items():
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{where}: {name} must be a finite number, got {value!r}")
        if self.trainable not in TRAINABLE:
            raise ConfigError(f"{where}: trainable must be 'head' or 'all', got {self.trainable!r}")
        if int(self.epochs) != self.epochs or self.epochs < 1:
            raise ConfigError(f"{where}: epochs must be a positive integer, got {self.epochs!r}")
        if self.max_steps is not None and (int(self.max_steps) != self.max_steps or self.max_steps < 1):
            raise ConfigError(
                f"{where}: max_steps must be a positive integer or null, got {self.max_steps!r}"
            )
        if not self.lr > 0:
            raise ConfigError(f"{where}: lr must be > 0, got {self.lr!r}")
        if not self.head_lr_scale > 0:
            raise ConfigError(f"{where}: head_lr_scale must be > 0, got {self.head_lr_scale!r}")
        if not self.min_delta >= 0:
            raise ConfigError(f"{where}: min_delta must be >= 0, got {self.min_delta!r}")
        if self.weight_decay < 0:
            raise ConfigError(f"{where}: weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.warmup_epochs < 0:
            raise ConfigError(f"{where}: warmup_epochs must be >= 0, got {self.warmup_epochs!r}")
        for key in ("drop_rate", "drop_path_rate"):
            value = getattr(self, key)
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"{where}: {key} must lie in [0, 1), got {value!r}")
        if self.patience is not None and (int(self.patience) != self.patience or self.patience < 1):
            raise ConfigError(f"{where}: patience must be a positive integer or null, got {self.patience!r}")
        if self.layer_decay is not None and not 0.0 < self.layer_decay <= 1.0:
            raise ConfigError(f"{where}: layer_decay must lie in (0, 1] or be null, got {self.layer_decay!r}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError(f"{where}: min_lr_ratio must lie in [0, 1], got {self.min_lr_ratio!r}")


@dataclass
class Recipe:
    """A named list of stages; ``pretrained=False`` builds the model from random init even if weights are given."""

    name: str
    stages: list[Stage] = field(default_factory=list)
    pretrained: bool = True

    def validate(self) -> None:
        """Check every stage; a recipe needs at least one."""
        if not self.stages:
            raise ConfigError(f"recipe {self.name!r} has no stages")
        for stage in self.stages:
            stage.validate()

    def to_dict(self) -> dict:
        """Plain-data form."""
        return asdict(self)


# --- applying a stage to a model -------------------------------------------------------------------------


def head_parameters(model: ECGModel) -> list[nn.Parameter]:
    """Parameters of the classification head."""
    return list(model.get_classifier().parameters())


def frozen_by_design(model: nn.Module) -> frozenset[str]:
    """Names of the parameters ``model`` keeps frozen by design (e.g. ST-MEM's fixed position table).

    Read once, on the first call, while the model still has the ``requires_grad`` flags its factory gave it,
    and remembered on the model, so that stages that freeze and unfreeze never turn these on.
    """
    names = getattr(model, "_ecgadapt_frozen_by_design", None)
    if names is None:
        names = frozenset(n for n, p in model.named_parameters() if not p.requires_grad)
        model._ecgadapt_frozen_by_design = names
    return names


def set_trainable(model: ECGModel, trainable: str) -> list[nn.Parameter]:
    """Set ``requires_grad`` for stage kind ``trainable`` ("head" or "all"); return the trainable parameters.

    Parameters frozen by design (:func:`frozen_by_design`) stay frozen in every stage.
    """
    if trainable not in TRAINABLE:
        raise ConfigError(f"trainable must be 'head' or 'all', got {trainable!r}")
    fixed = frozen_by_design(model)
    head_ids = {id(p) for p in head_parameters(model)}
    params = []
    for name, p in model.named_parameters():
        on = (trainable == "all" or id(p) in head_ids) and name not in fixed
        p.requires_grad_(on)
        if on:
            params.append(p)
    return params


def set_train_mode(model: ECGModel, trainable: str) -> None:
    """Training mode for a stage: everything for "all"; for "head" only the head (backbone stays in eval)."""
    if trainable == "all":
        model.train()
    else:
        model.eval()  # no dropout, no DropPath, no BatchNorm statistics updates in the frozen backbone
        model.get_classifier().train()


def _block_key(name: str) -> str:
    """The block a module belongs to: its name up to the last numeric component (``blocks.3.drop_path1``
    -> ``blocks.3``; ``stages.2.5.drop_path`` -> ``stages.2.5``), else its parent's name."""
    parts = name.split(".")
    numeric = [i for i, part in enumerate(parts[:-1]) if part.isdigit()]
    return ".".join(parts[: numeric[-1] + 1]) if numeric else ".".join(parts[:-1])


def drop_path_blocks(model: nn.Module) -> list[list[DropPath]]:
    """DropPath modules grouped by block, blocks in module (forward) order."""
    groups: dict[str, list[DropPath]] = {}
    for name, module in model.named_modules():
        if isinstance(module, DropPath):
            groups.setdefault(_block_key(name), []).append(module)
    return list(groups.values())


def _is_dropout(module: nn.Module) -> bool:
    return isinstance(module, nn.modules.dropout._DropoutNd)


_DROP_ATTR = re.compile(r"(^|_)drop(out)?(_|$)")  # attn_drop, drop_rate, drop_prob, dropout (HF attention)


def _drop_attributes(module: nn.Module) -> dict[str, float]:
    """Plain float attributes of ``module`` that hold a drop probability (``attn_drop``, ``drop_rate``, ``dropout``)."""
    return {
        k: v
        for k, v in vars(module).items()
        if isinstance(v, float) and not isinstance(v, bool) and _DROP_ATTR.search(k) and k != "p"
    }


def set_drop_rates(
    model: ECGModel, drop_rate: float, drop_path_rate: float, reference: nn.Module | None = None
) -> None:
    """Set every dropout and stochastic-depth rate of an existing ``model`` in place.

    With ``reference`` (the same architecture built by ``create_model(..., drop_rate, drop_path_rate)``,
    e.g. on the meta device, see :func:`reference_model`), every rate is copied from it by module name, so
    the model ends exactly as its factory would have built it. Without, every DropPath of block ``i`` gets
    rate ``i/(n-1) * drop_path_rate`` (a fresh linear schedule over the ``n`` blocks; a block may hold several
    DropPaths) and every dropout module gets ``p = drop_rate``.
    """
    if drop_path_rate > 0 and not any(isinstance(m, DropPath) for m in model.modules()):
        raise ConfigError(
            f"{type(model).__name__} has no DropPath modules, so drop_path_rate={drop_path_rate} cannot be "
            "applied; set the stage's drop_path_rate to 0"
        )
    if reference is not None:
        _copy_drop_rates(model, reference)
        return
    blocks = drop_path_blocks(model)
    for rate, group in zip(drop_path_schedule(drop_path_rate, len(blocks)), blocks):
        for module in group:
            module.drop_prob = float(rate)
    for module in model.modules():
        if _is_dropout(module):
            module.p = float(drop_rate)


def _copy_drop_rates(model: nn.Module, reference: nn.Module) -> None:
    """Copy DropPath rates, dropout ``p`` and float drop attributes from ``reference`` by module name."""
    live = dict(model.named_modules())
    for name, ref in reference.named_modules():
        target = live.get(name)
        if target is None or type(target) is not type(ref):
            if isinstance(ref, DropPath) or _is_dropout(ref):
                raise ConfigError(
                    f"cannot change the drop rates of {type(model).__name__} in place: module {name!r} is "
                    f"{type(ref).__name__} in the reference but {type(target).__name__} in the model"
                )
            continue
        if isinstance(ref, DropPath):
            target.drop_prob = float(ref.drop_prob)
        if _is_dropout(ref):
            target.p = float(ref.p)
        for key, value in _drop_attributes(ref).items():
            if key in vars(target):
                setattr(target, key, float(value))


def reference_model(
    name: str, num_classes: int, drop_rate: float, drop_path_rate: float, overrides: dict | None = None
) -> ECGModel | None:
    """Model ``name`` built on the meta device (no memory) with the given rates; None if that fails."""
    try:
        with torch.device("meta"):
            return create_model(
                name,
                num_classes=num_classes,
                drop_rate=drop_rate,
                drop_path_rate=drop_path_rate,
                **(overrides or {}),
            )
    except Exception:  # noqa: BLE001 - a factory that cannot run on meta falls back to the generic rule
        return None


def drop_rates(model: nn.Module) -> dict[str, float]:
    """Every drop probability of ``model`` by module name (DropPath, dropout, float drop attributes)."""
    out: dict[str, float] = {}
    for name, module in model.named_modules():
        if isinstance(module, DropPath):
            out[name] = module.drop_prob
        elif _is_dropout(module):
            out[name] = module.p
        for key, value in _drop_attributes(module).items():
            out[f"{name}.{key}" if name else key] = value
    return out
