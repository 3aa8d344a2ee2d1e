"""Optimiser parameter groups (no decay on norms/biases, layer-wise LR decay), AdamW and a warmup-cosine schedule.

Convention: the layer-wise scale is applied once, here: each group's ``"lr"`` is ``lr * lr_scale`` and the group
keeps ``"lr_scale"`` for reference. The schedule multiplies each group's initial lr (which already includes
its ``lr_scale``) by the warmup-cosine factor, so an optimiser is correct with or without a schedule.
"""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR

from ecgadapt.errors import ConfigError
from ecgadapt.models.base import ECGModel


def _in_no_decay_list(name: str, names: set[str]) -> bool:
    """True if ``name`` equals an entry of ``names`` or lies under a module named by one."""
    return any(name == n or name.startswith(n + ".") for n in names)


def param_groups(
    model: ECGModel,
    weight_decay: float,
    lr: float,
    layer_decay: float | None = None,
    trainable_only: bool = True,
    head_lr_scale: float = 1.0,
) -> list[dict]:
    """AdamW parameter groups: no decay for ndim <= 1 and ``model.no_weight_decay()``, optional layer decay.

    With ``layer_decay`` the scale of a parameter is ``layer_decay ** (num_layers - layer_id)`` (head = 1).
    The head's parameters (``model.get_classifier()``) are further scaled by ``head_lr_scale``.
    Each group holds ``name``, ``params``, ``param_names``, ``weight_decay``, ``lr`` (= lr * lr_scale), ``lr_scale``.
    """
    if layer_decay is not None and not 0.0 < layer_decay <= 1.0:
        raise ConfigError(f"layer_decay must lie in (0, 1], got {layer_decay}")
    if weight_decay < 0 or lr <= 0:
        raise ConfigError(f"need weight_decay >= 0 and lr > 0, got weight_decay={weight_decay}, lr={lr}")
    if not head_lr_scale > 0:
        raise ConfigError(f"head_lr_scale must be > 0, got {head_lr_scale}")
    skip = set(model.no_weight_decay())
    num_layers = model.num_layers() if layer_decay is not None else 0
    head_ids = {id(p) for p in model.get_classifier().parameters()} if head_lr_scale != 1.0 else set()
    groups: dict[str, dict] = {}
    for name, param in model.named_parameters():
        if trainable_only and not param.requires_grad:
            continue
        no_decay = param.ndim <= 1 or _in_no_decay_list(name, skip)
        kind = "no_decay" if no_decay else "decay"
        if layer_decay is None:
            key, scale = kind, 1.0
        else:
            lid = model.layer_id(name)
            key, scale = f"layer_{lid}_{kind}", layer_decay ** (num_layers - lid)
        if id(param) in head_ids:
            key, scale = f"head_{kind}", scale * head_lr_scale
        if key not in groups:
            groups[key] = {
                "name": key,
                "params": [],
                "param_names": [],
                "weight_decay": 0.0 if no_decay else weight_decay,
                "lr": lr * scale,
                "lr_scale": scale,
            }
        groups[key]["params"].append(param)
        groups[key]["param_names"].append(name)
    if not groups:
        raise ConfigError(f"{type(model).__name__} has no trainable parameters to optimise")
    return list(groups.values())


def create_optimizer(
    model: ECGModel,
    lr: float,
    weight_decay: float,
    layer_decay: float | None = None,
    betas: tuple[float, float] = (0.9, 0.999),
    fused: bool | None = None,
    head_lr_scale: float = 1.0,
) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups`; fused kernels only when every parameter is on CUDA (None = auto)."""
    groups = param_groups(
        model, weight_decay=weight_decay, lr=lr, layer_decay=layer_decay, head_lr_scale=head_lr_scale
    )
    on_cuda = torch.cuda.is_available() and all(p.is_cuda for g in groups for p in g["params"])
    use_fused = on_cuda and (fused is None or fused)
    return torch.optim.AdamW(groups, lr=lr, betas=betas, weight_decay=weight_decay, fused=use_fused or None)


def warmup_cosine_factor(step: int, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.0) -> float:
    """LR multiplier: linear warm-up ``1/w, 2/w, ..., 1`` over the ``w = warmup_steps`` first steps (it starts
    above 0, so no step is wasted), then cosine 1 -> ``min_lr_ratio`` at ``total_steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def cosine_schedule_with_warmup(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.0
) -> LambdaLR:
    """Per-step LambdaLR: group lr = initial group lr (already ``lr * lr_scale``) x warmup-cosine factor."""
    if total_steps <= 0 or not 0 <= warmup_steps <= total_steps:
        raise ConfigError(
            f"need 0 <= warmup_steps <= total_steps and total_steps > 0, got {warmup_steps} and {total_steps}"
        )
    if not 0.0 <= min_lr_ratio <= 1.0:
        raise ConfigError(f"min_lr_ratio must lie in [0, 1], got {min_lr_ratio}")

    def factor(step: int) -> float:
        return warmup_cosine_factor(step, warmup_steps, total_steps, min_lr_ratio)

    return LambdaLR(optimizer, factor)
