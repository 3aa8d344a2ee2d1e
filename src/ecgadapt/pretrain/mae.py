"""Masked ECG modelling: hide most (lead, patch) tokens, encode the rest, reconstruct the hidden patches.

The encoder is the fine-tuning model itself (an :class:`~ecgadapt.models.ecg_vit.ECGViT`): pretraining calls
its :meth:`~ecgadapt.models.ecg_vit.ECGViT.forward_tokens` on the visible tokens only, so its state dict
(minus the head) is exactly what ``create_model(name, pretrained=...)`` loads afterwards.
"""

from __future__ import annotations

import torch
from torch import nn

from ecgadapt.errors import ConfigError
from ecgadapt.models.ecg_vit import Block, ECGViT, sincos_position_table


def masked_patch_loss(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, norm_target: bool = True
) -> torch.Tensor:
    """Mean squared error over masked patches only; targets optionally normalised per patch (mean 0, var 1).

    ``pred`` and ``target`` are (B, N, P) patches, ``mask`` (B, N) is True where a token was hidden.
    """
    if norm_target:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True, unbiased=False)
        target = (target - mean) / (var + 1e-6).sqrt()
    per_patch = (pred.float() - target.float()).pow(2).mean(dim=-1)
    mask = mask.to(per_patch.dtype)
    return (per_patch * mask).sum() / mask.sum().clamp(min=1.0)


def random_token_mask(
    batch: int,
    num_tokens: int,
    num_masked: int,
    device: torch.device,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(keep, mask)``: ``num_masked`` random tokens hidden per sample; visible indices (B, K) ascending, mask (B, N)."""
    noise = torch.rand(
        batch, num_tokens, generator=generator, device=generator.device if generator else device
    )
    keep = noise.to(device).argsort(dim=1)[:, : num_tokens - num_masked].sort(dim=1).values
    mask = torch.ones(batch, num_tokens, dtype=torch.bool, device=device)
    mask.scatter_(1, keep, False)
    return keep, mask


def reconstruction(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor, num_leads: int, seed: int = 0
) -> dict[str, torch.Tensor]:
    """For figures: ``x``, its reconstruction by a masked model (visible patches kept) and the mask (B, leads, n).

    ``target`` is ``x`` cut into the model's patches; predicted (normalised) patches are mapped back with each
    true patch's mean and std."""
    was_training = model.training
    model.eval()
    try:
        generator = torch.Generator(device=x.device).manual_seed(seed)
        _, pred, mask = model(x, generator=generator)
    finally:
        model.train(was_training)
    pred = pred.float()
    if model.norm_target:
        mean = target.mean(dim=-1, keepdim=True)
        std = (target.var(dim=-1, keepdim=True, unbiased=False) + 1e-6).sqrt()
        pred = pred * std + mean
    recon = torch.where(mask[..., None], pred, target)
    return {
        "input": x,
        "reconstruction": recon.reshape(x.shape),
        "mask": mask.reshape(x.shape[0], num_leads, -1),
    }


class MaskedECGModel(nn.Module):
    """Masked-patch pretraining around an ECG ViT encoder with a light transformer decoder (ST-MEM / MAE style).

    Every sample hides exactly ``round(N * mask_ratio)`` of its N = leads x patches tokens, chosen at random.
    """

    def __init__(
        self,
        encoder: ECGViT,
        decoder_width: int = 128,
        decoder_depth: int = 2,
        decoder_heads: int = 4,
        mask_ratio: float = 0.75,
        norm_target: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(encoder, ECGViT):
            raise ConfigError(
                f"masked pretraining needs an ecg_vit encoder, got {type(encoder).__name__}; use --model ecg_vit_tiny"
            )
        if not 0.0 < mask_ratio < 1.0:
            raise ConfigError(f"mask_ratio must lie strictly between 0 and 1, got {mask_ratio}")
        if decoder_width % decoder_heads:
            raise ConfigError(
                f"decoder_width {decoder_width} is not divisible by decoder_heads {decoder_heads}"
            )
        self.encoder = encoder
        self.mask_ratio = float(mask_ratio)
        self.norm_target = norm_target
        leads, n = encoder.num_leads, encoder.num_patches
        self.decoder_embed = nn.Linear(encoder.width, decoder_width)
        self.mask_token = nn.Parameter(nn.init.trunc_normal_(torch.zeros(1, 1, decoder_width), std=0.02))
        self.register_buffer("decoder_pos_embed", sincos_position_table(n, decoder_width)[None])
        self.decoder_lead_embed = nn.Parameter(
            nn.init.trunc_normal_(torch.zeros(1, leads, decoder_width), std=0.02)
        )
        self.decoder_blocks = nn.ModuleList(Block(decoder_width, decoder_heads) for _ in range(decoder_depth))
        self.decoder_norm = nn.LayerNorm(decoder_width)
        self.decoder_pred = nn.Linear(decoder_width, encoder.patch_size)
        for m in [self.decoder_embed, self.decoder_pred, *self.decoder_blocks.modules()]:
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def no_weight_decay(self) -> set[str]:
        """Embeddings and the mask token are not weight-decayed."""
        return {f"encoder.{n}" for n in self.encoder.no_weight_decay()} | {"mask_token", "decoder_lead_embed"}

    def num_masked(self, num_tokens: int) -> int:
        """Tokens hidden per sample: ``round(num_tokens * mask_ratio)``, leaving at least one of each kind."""
        return min(num_tokens - 1, max(1, round(num_tokens * self.mask_ratio)))

    def random_masking(
        self, batch: int, num_tokens: int, device: torch.device, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(keep, mask)``: visible token indices (B, K) in ascending order and the (B, N) hidden-token mask."""
        return random_token_mask(batch, num_tokens, self.num_masked(num_tokens), device, generator)

    def decode(self, latent: torch.Tensor, keep: torch.Tensor, num_patches: int) -> torch.Tensor:
        """Predicted patches (B, N, P) from encoded visible tokens (B, K, width) at positions ``keep``."""
        b = latent.shape[0]
        leads = self.decoder_lead_embed.shape[1]
        y = self.decoder_embed(latent)
        d = y.shape[-1]
        tokens = self.mask_token.to(y.dtype).expand(b, leads * num_patches, d)
        tokens = tokens.scatter(1, keep[..., None].expand(-1, -1, d), y)
        pos = self.decoder_pos_embed[:, None, :num_patches] + self.decoder_lead_embed[:, :, None]
        tokens = tokens + pos.reshape(1, leads * num_patches, d)
        for block in self.decoder_blocks:
            tokens = block(tokens)
        return self.decoder_pred(self.decoder_norm(tokens))

    def forward(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(loss, pred, mask)``: masked-patch loss, predicted patches (B, N, P) and hidden-token mask (B, N)."""
        target = self.encoder.patchify(x)
        b, n_tokens, _ = target.shape
        keep, mask = self.random_masking(b, n_tokens, x.device, generator)
        latent = self.encoder.norm(self.encoder.forward_tokens(x, keep))
        pred = self.decode(latent, keep, n_tokens // self.encoder.num_leads)
        return masked_patch_loss(pred, target, mask, self.norm_target), pred, mask

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, seed: int = 0) -> dict[str, torch.Tensor]:
        """For figures: input, reconstruction in input units and mask (B, leads, n); see :func:`reconstruction`."""
        return reconstruction(self, x, self.encoder.patchify(x), self.encoder.num_leads, seed)
