"""An exponential moving average of a model's weights, evaluated in place of the model when asked."""

from __future__ import annotations

import copy

import torch
from torch import nn


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
