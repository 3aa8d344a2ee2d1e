"""Masked ECG modelling: masking, what the encoder sees, the loss, learning and reconstruction."""

import math

import pytest
import torch

from ecgadapt.errors import ConfigError
from ecgadapt.models import create_model
from ecgadapt.pretrain.mae import MaskedECGModel, masked_patch_loss

TINY = dict(seq_len=200, patch_size=25, width=32, depth=2, heads=2)  # 12 leads x 8 patches = 96 tokens


def _mae(mask_ratio: float = 0.75, seed: int = 0) -> MaskedECGModel:
    torch.manual_seed(seed)
    encoder = create_model("ecg_vit_tiny", num_classes=0, **TINY)
    return MaskedECGModel(encoder, decoder_width=32, decoder_depth=1, decoder_heads=2, mask_ratio=mask_ratio)


def _ecg_like(batch: int, seed: int = 0, length: int = 200) -> torch.Tensor:
    """Per-lead sums of two sines with random amplitude, frequency and phase (a smooth learnable signal)."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(length) / 100.0
    amp = torch.rand(batch, 12, 2, 1, generator=g) + 0.5
    freq = torch.rand(batch, 1, 2, 1, generator=g) * 2 + 0.5
    phase = torch.rand(batch, 12, 2, 1, generator=g) * 2 * math.pi
    return (amp * torch.sin(2 * math.pi * freq * t + phase)).sum(dim=2)


@pytest.mark.parametrize("ratio", [0.75, 0.5, 0.9])
def test_mask_ratio_is_exact_for_every_sample(ratio: float) -> None:
    model = _mae(ratio)
    keep, mask = model.random_masking(16, 96, torch.device("cpu"))
    assert mask.shape == (16, 96) and mask.dtype == torch.bool
    assert (mask.sum(dim=1) == round(96 * ratio)).all()
    assert keep.shape == (16, 96 - round(96 * ratio))
    assert not mask.gather(1, keep).any()  # kept tokens are exactly the unmasked ones
    assert (keep.diff(dim=1) > 0).all()  # in ascending (lead-major) order
    assert len({tuple(m.tolist()) for m in mask}) == 16  # random per sample


def test_bad_mask_ratio_or_encoder_is_a_config_error() -> None:
    encoder = create_model("ecg_vit_tiny", num_classes=0, **TINY)
    for ratio in (0.0, 1.0, 1.2):
        with pytest.raises(ConfigError, match="mask_ratio"):
            MaskedECGModel(encoder, mask_ratio=ratio)
    with pytest.raises(ConfigError, match="ecg_vit encoder"):
        MaskedECGModel(torch.nn.Linear(2, 2))  # type: ignore[arg-type]


def test_encoder_sees_only_visible_tokens() -> None:
    model = _mae(0.75)
    seen: list[tuple[int, ...]] = []
    model.encoder.blocks[0].register_forward_hook(lambda mod, inp, out: seen.append(tuple(inp[0].shape)))
    loss, pred, mask = model(_ecg_like(4))
    assert seen == [(4, 24, 32)]  # 96 tokens, 72 masked, 24 visible
    assert pred.shape == (4, 96, 25) and mask.shape == (4, 96)
    assert loss.ndim == 0 and torch.isfinite(loss)


def test_loss_counts_masked_patches_only() -> None:
    torch.manual_seed(0)
    pred, target = torch.randn(3, 10, 8), torch.randn(3, 10, 8)
    mask = torch.rand(3, 10) < 0.5
    loss = masked_patch_loss(pred, target, mask)
    visible_changed = torch.where(mask[..., None], target, torch.randn_like(target) * 10)
    torch.testing.assert_close(masked_patch_loss(pred, visible_changed, mask), loss)
    masked_changed = torch.where(mask[..., None], torch.randn_like(target), target)
    assert not torch.allclose(masked_patch_loss(pred, masked_changed, mask), loss)


def test_targets_are_normalised_per_patch() -> None:
    torch.manual_seed(0)
    pred, target = torch.randn(2, 6, 10), torch.randn(2, 6, 10)
    mask = torch.ones(2, 6, dtype=torch.bool)
    scaled = target * torch.rand(2, 6, 1) * 5 + torch.randn(2, 6, 1) * 3  # per-patch gain and offset
    torch.testing.assert_close(masked_patch_loss(pred, scaled, mask), masked_patch_loss(pred, target, mask))
    assert not torch.allclose(
        masked_patch_loss(pred, scaled, mask, norm_target=False),
        masked_patch_loss(pred, target, mask, norm_target=False),
    )


def test_loss_decreases_when_training_on_a_tiny_corpus() -> None:
    model = _mae(0.5)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    corpus = _ecg_like(64, seed=1)
    losses = []
    for step in range(30):
        x = corpus[(step * 16) % 64 : (step * 16) % 64 + 16]
        loss, _, _ = model(x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.7 * first, f"loss went from {first:.3f} to {last:.3f}"  # learning starts (see below)


def test_masked_patches_are_predicted_from_context_beyond_the_trivial_solution() -> None:
    """Predicting each patch's mean (all zeros on normalised targets) scores 1.0; context must do better."""
    model = _mae(0.5)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, betas=(0.9, 0.95))
    x = _ecg_like(16, seed=1)
    for _ in range(250):
        loss, _, _ = model(x, generator=torch.Generator().manual_seed(0))  # one fixed batch and mask
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.9


def test_shorter_inputs_use_the_first_positions() -> None:
    model = _mae()
    loss, pred, mask = model(_ecg_like(2, length=100))
    assert pred.shape == (2, 48, 25) and (mask.sum(dim=1) == 36).all()


def test_reconstruct_keeps_visible_patches_and_is_seeded() -> None:
    model = _mae()
    x = _ecg_like(2)
    out = model.reconstruct(x, seed=3)
    assert out["reconstruction"].shape == x.shape and out["mask"].shape == (2, 12, 8)
    visible = ~out["mask"].repeat_interleave(25, dim=-1)
    torch.testing.assert_close(out["reconstruction"][visible], x[visible])
    assert not torch.allclose(out["reconstruction"], x)
    again = model.reconstruct(x, seed=3)
    assert torch.equal(again["mask"], out["mask"]) and torch.equal(
        again["reconstruction"], out["reconstruction"]
    )
    assert not torch.equal(model.reconstruct(x, seed=4)["mask"], out["mask"])
    assert model.training  # restored


def test_no_weight_decay_names_exist() -> None:
    model = _mae()
    names = {n for n, _ in model.named_parameters()}
    assert {"encoder.lead_embed", "mask_token", "decoder_lead_embed"} <= model.no_weight_decay()
    assert model.no_weight_decay() - {"encoder.pos_embed"} <= names
