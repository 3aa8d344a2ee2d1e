"""Masked-segment reconstruction (the xresnet1d objective): masking, shapes, learning, end-to-end run."""

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from ecgadapt.data.transforms import build_transforms
from ecgadapt.errors import ConfigError, DataError
from ecgadapt.models import create_model
from ecgadapt.pretrain.config import PretrainConfig
from ecgadapt.pretrain.corpus import open_corpus
from ecgadapt.pretrain.masked_segment import MaskedSegmentModel
from ecgadapt.pretrain.pretrain import run_pretrain

SMALL = dict(layers=(1, 1, 1, 1), widths=(8, 8, 16, 16), stem_widths=(8, 8, 16))


def _model(**kw) -> MaskedSegmentModel:
    torch.manual_seed(0)
    encoder = create_model("xresnet1d_tiny", num_classes=0, **SMALL)
    return MaskedSegmentModel(encoder, **{"segment_size": 25, "mask_ratio": 0.5, "decoder_width": 32, **kw})


def _real_like_batch(root: Path, cache_dir: Path, n: int = 16, offset: int = 0) -> torch.Tensor:
    """``n`` synthetic PTB-XL ECGs through the encoder's own input pipeline (band-pass, per-lead z-score)."""
    corpus = open_corpus(root, rate=100, cache_dir=cache_dir, progress=False)
    spec = create_model("xresnet1d_tiny", num_classes=0).input_spec
    transform = build_transforms(spec, corpus.rate, train=False)
    return torch.stack(
        [torch.from_numpy(transform(np.asarray(corpus.signals[i]))) for i in range(offset, offset + n)]
    )


def test_masking_hides_exactly_the_ratio_of_segments_and_zeroes_them() -> None:
    model = _model()
    x = torch.randn(3, 12, 1000)
    loss, pred, mask = model(x, generator=torch.Generator().manual_seed(1))
    assert pred.shape == (3, 12 * 40, 25) and mask.shape == (3, 480)
    assert (mask.sum(dim=1) == 240).all() and loss.ndim == 0
    _, _, again = model(x, generator=torch.Generator().manual_seed(1))
    assert torch.equal(mask, again)  # seeded masks repeat (fixed held-out masks)


def test_the_encoder_never_sees_a_masked_segment() -> None:
    from ecgadapt.pretrain.mae import random_token_mask

    model = _model().eval()
    seen: list[torch.Tensor] = []
    forward_map = model.encoder.forward_map
    model.encoder.forward_map = lambda v: (seen.append(v), forward_map(v))[1]
    x = torch.randn(2, 12, 1000) + 5.0
    model(x, generator=torch.Generator().manual_seed(0))
    _, mask = random_token_mask(2, 480, 240, x.device, torch.Generator().manual_seed(0))
    visible = seen[0].reshape(2, 480, 25)
    assert (visible[mask] == 0).all() and torch.equal(visible[~mask], x.reshape(2, 480, 25)[~mask])


def test_objective_beats_the_trivial_baseline_on_a_fixed_batch(synthetic_root: Path, tmp_path: Path) -> None:
    """Predicting each hidden segment's mean scores 1.0 (normalised targets); after 80 steps on a fixed batch the
    loss under masks never drawn in training must be clearly lower."""
    torch.set_num_threads(1)
    train = _real_like_batch(synthetic_root, tmp_path, n=16)
    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    for _ in range(80):
        loss, _, _ = model(train, generator=gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        fixed = float(model(train, generator=torch.Generator().manual_seed(123))[0])
        untrained = float(_model().eval()(train, generator=torch.Generator().manual_seed(123))[0])
    assert untrained > 0.9  # an untrained decoder is no better than the baseline
    assert fixed < 0.85, fixed


def test_bad_encoder_mask_ratio_and_length_are_clear_errors() -> None:
    with pytest.raises(ConfigError, match="needs an xresnet1d encoder"):
        MaskedSegmentModel(create_model("ecg_vit_tiny", num_classes=0))
    with pytest.raises(ConfigError, match="mask_ratio"):
        _model(mask_ratio=1.0)
    with pytest.raises(DataError, match="multiple of segment_size 25"):
        _model()(torch.randn(2, 12, 990))


def test_run_pretrain_writes_an_xresnet1d_encoder_that_create_model_loads(
    synthetic_root: Path, tmp_path: Path
) -> None:
    cfg = PretrainConfig(
        model="xresnet1d_tiny",
        model_kwargs=dict(SMALL),
        corpora=[str(synthetic_root)],
        cache_dir=str(tmp_path / "c"),
        decoder_width=16,
        epochs=1,
        steps_per_epoch=2,
        batch_size=8,
        mask_ratio=0.5,
        max_val_samples=8,
        progress=False,
    )
    run = run_pretrain(cfg, tmp_path / "run")
    state = load_file(run / "encoder.safetensors")
    assert not any(k.startswith(("head.", "decoder.")) for k in state)
    model = create_model(
        "xresnet1d_tiny", num_classes=4, pretrained=run / "encoder.safetensors", drop_path_rate=0.1, **SMALL
    )
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
    assert model(torch.randn(2, 12, 1000)).shape == (2, 4)


def test_reconstruct_keeps_visible_segments_in_place_and_is_seeded() -> None:
    model = _model()
    x = torch.randn(2, 12, 1000)
    out = model.reconstruct(x, seed=3)
    assert out["reconstruction"].shape == x.shape and out["mask"].shape == (2, 12, 40)
    visible = ~out["mask"].repeat_interleave(25, dim=-1)
    torch.testing.assert_close(out["reconstruction"][visible], x[visible])
    assert not torch.allclose(out["reconstruction"], x)
    _, _, mask = model(x, generator=torch.Generator().manual_seed(3))
    assert torch.equal(out["mask"], mask.reshape(2, 12, 40))  # lead after lead, as patchify cuts them
    assert model.training  # restored
