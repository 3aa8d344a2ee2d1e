"""Masked-segment reconstruction: the pretraining objective of the 1-D CNN encoders (``xresnet1d`` family).

Each lead is cut into segments of ``segment_size`` samples (0.25 s at 100 Hz by default); a random
``mask_ratio`` of the (lead, segment) tokens is zeroed (the per-lead mean after z-scoring). The CNN sees the
whole masked record, so it must infer a hidden segment from its neighbours in time and from the other leads.
A light convolutional decoder maps the last feature map, interpolated to one position per segment, to every
lead's samples of that segment. The loss is the masked-patch MSE of :mod:`ecgadapt.pretrain.mae` on
per-segment-normalised targets, so predicting each segment's mean scores 1.0, as for the ViT.

The encoder is the fine-tuning model itself: its state dict (minus the head) is what
``create_model(name, pretrained=...)`` loads afterwards.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ecgadapt.errors import ConfigError, DataError
from ecgadapt.models.xresnet1d import XResNet1d
from ecgadapt.pretrain.mae import masked_patch_loss, random_token_mask, reconstruction


class MaskedSegmentModel(nn.Module):
    """Masked-segment reconstruction around an :class:`XResNet1d` encoder with a small conv decoder."""

    def __init__(
        self,
        encoder: XResNet1d,
        segment_size: int = 25,
        mask_ratio: float = 0.5,
        decoder_width: int = 128,
        norm_target: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(encoder, XResNet1d):
            raise ConfigError(
                f"masked-segment pretraining needs an xresnet1d encoder, got {type(encoder).__name__}; "
                "use --model xresnet1d_tiny"
            )
        if not 0.0 < mask_ratio < 1.0:
            raise ConfigError(f"mask_ratio must lie strictly between 0 and 1, got {mask_ratio}")
        if segment_size < 2:
            raise ConfigError(f"segment_size must be >= 2 samples, got {segment_size}")
        self.encoder = encoder
        self.segment_size, self.mask_ratio, self.norm_target = (
            int(segment_size),
            float(mask_ratio),
            norm_target,
        )
        self.num_leads = encoder.input_spec.num_leads
        channels = encoder.num_features // 2  # ConcatPool1d doubles the last stage's channels
        self.decoder = nn.Sequential(
            nn.Conv1d(channels, decoder_width, 3, padding=1),
            nn.GELU(),
            nn.Conv1d(decoder_width, decoder_width, 3, padding=1),
            nn.GELU(),
            nn.Conv1d(decoder_width, self.num_leads * self.segment_size, 1),
        )

    def no_weight_decay(self) -> set[str]:
        """Nothing beyond norms and biases."""
        return set()

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """(B, leads, T) -> (B, leads * T/S, S) segments, lead after lead; checks leads and length."""
        if x.ndim != 3 or x.shape[1] != self.num_leads or x.shape[-1] % self.segment_size:
            raise DataError(
                f"masked-segment pretraining expects (batch, {self.num_leads}, T) with T a multiple of "
                f"segment_size {self.segment_size}, got {tuple(x.shape)}; choose a segment_size dividing the length"
            )
        return x.reshape(x.shape[0], -1, self.segment_size)

    def num_masked(self, num_tokens: int) -> int:
        """Segments hidden per sample: ``round(num_tokens * mask_ratio)``, leaving at least one of each kind."""
        return min(num_tokens - 1, max(1, round(num_tokens * self.mask_ratio)))

    def decode(self, fmap: torch.Tensor, num_segments: int) -> torch.Tensor:
        """Predicted segments (B, leads * n, S) from the encoder's feature map (B, C, T')."""
        b = fmap.shape[0]
        fmap = F.interpolate(fmap, size=num_segments, mode="linear", align_corners=False)
        pred = self.decoder(fmap).reshape(b, self.num_leads, self.segment_size, num_segments)
        return pred.transpose(2, 3).reshape(b, self.num_leads * num_segments, self.segment_size)

    def forward(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(loss, pred, mask)``: masked-segment loss, predicted segments (B, N, S) and hidden mask (B, N)."""
        target = self.patchify(x)
        b, n_tokens, _ = target.shape
        _, mask = random_token_mask(b, n_tokens, self.num_masked(n_tokens), x.device, generator)
        visible = target.masked_fill(mask[..., None], 0.0).reshape(x.shape)
        pred = self.decode(self.encoder.forward_map(visible), n_tokens // self.num_leads)
        return masked_patch_loss(pred, target, mask, self.norm_target), pred, mask

    def reconstruct(self, x: torch.Tensor, seed: int = 0) -> dict[str, torch.Tensor]:
        """For figures: input, reconstruction in input units and mask (B, leads, n); see :func:`reconstruction`."""
        return reconstruction(self, x, self.patchify(x), self.num_leads, seed)
