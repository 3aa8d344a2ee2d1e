"""Shared layers and checks: stochastic depth, its per-block schedule, and the patch models' input check."""

from __future__ import annotations

import torch
from torch import nn

from ecgadapt.errors import DataError


def drop_path(x: torch.Tensor, drop_prob: float, training: bool) -> torch.Tensor:
    """Zero whole samples of a residual branch with probability ``drop_prob``, rescaling the kept ones."""
    if drop_prob == 0.0 or not training:
        return x
    keep_prob = 1.0 - drop_prob
    mask_shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    mask = x.new_empty(mask_shape).bernoulli_(keep_prob)
    return x * mask / keep_prob


class DropPath(nn.Module):
    """Per-sample stochastic depth on a residual branch; identity in eval mode."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"drop_prob must be in [0, 1), got {drop_prob}")
        self.drop_prob = float(drop_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.drop_prob, self.training)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob:.3f}"


def drop_path_schedule(drop_path_rate: float, num_blocks: int) -> list[float]:
    """Per-block DropPath rates rising linearly from 0 (first block) to ``drop_path_rate`` (last)."""
    if num_blocks <= 0:
        return []
    if num_blocks == 1:
        return [float(drop_path_rate)]
    return [float(drop_path_rate) * i / (num_blocks - 1) for i in range(num_blocks)]


def check_patch_input(
    x: torch.Tensor, family: str, num_leads: int, patch_size: int, seq_len: int, rate_note: str = ""
) -> None:
    """A DataError unless ``x`` is (B, ``num_leads``, T) with T a positive multiple of ``patch_size``, <= ``seq_len``."""
    if x.ndim != 3 or x.shape[1] != num_leads:
        raise DataError(
            f"{family} expects input of shape (batch, {num_leads}, samples), got {tuple(x.shape)}; "
            "select the leads of input_spec.leads, in that order"
        )
    t = x.shape[-1]
    if t % patch_size or not 0 < t <= seq_len:
        raise DataError(
            f"{family} input length {t} must be a positive multiple of patch_size, i.e. a multiple of {patch_size} "
            f"and at most {seq_len} samples{rate_note}; crop or resample to input_spec.length={seq_len}"
        )
