"""The compact ECG ViTs: registry entries, shapes, timm-style API, token hook and checkpoints."""

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from ecgadapt.errors import ConfigError, DataError
from ecgadapt.models import create_model, list_models, model_info
from ecgadapt.models.ecg_vit import ECGViT, sincos_position_table


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny models run faster single-threaded, and the CPU is shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


TINY = dict(seq_len=200, patch_size=50, width=32, depth=2, heads=2)  # 12 leads x 4 patches = 48 tokens


def _tiny(num_classes: int = 3, **kw) -> ECGViT:
    torch.manual_seed(0)
    model = create_model("ecg_vit_tiny", num_classes=num_classes, **{**TINY, **kw})
    assert isinstance(model, ECGViT)
    return model


@pytest.mark.parametrize("name", ["ecg_vit_tiny", "ecg_vit_small"])
def test_registered_with_native_input_spec(name: str) -> None:
    assert name in list_models()
    info = model_info(name)
    assert info.family == "ecg_vit"
    spec = info.input_spec
    assert (spec.sampling_rate, spec.length, spec.num_leads) == (100, 1000, 12)
    assert spec.normalisation == "lead" and spec.band_pass == (0.67, 40.0)


@pytest.mark.parametrize("name", ["ecg_vit_tiny", "ecg_vit_small"])
def test_default_models_map_12x1000_to_logits(name: str) -> None:
    model = create_model(name, num_classes=5).eval()
    assert model.input_spec == model_info(name).input_spec
    with torch.no_grad():
        feats = model.forward_features(torch.randn(2, 12, 1000))
        logits = model.forward_head(feats)
    assert feats.shape == (2, model.num_features)
    assert logits.shape == (2, 5)


def test_small_is_larger_than_tiny() -> None:
    n = {
        name: sum(p.numel() for p in create_model(name, num_classes=0).parameters())
        for name in ("ecg_vit_tiny", "ecg_vit_small")
    }
    assert n["ecg_vit_small"] > 5 * n["ecg_vit_tiny"]


def test_overrides_change_the_architecture_and_input_spec() -> None:
    model = _tiny()
    assert (model.num_features, len(model.blocks), model.num_patches) == (32, 2, 4)
    assert model.input_spec.length == 200 and model.input_spec.sampling_rate == 100
    with pytest.raises(ConfigError, match="unknown ecg_vit option"):
        create_model("ecg_vit_tiny", num_classes=2, widht=64)
    with pytest.raises(ConfigError, match="multiple of patch_size"):
        create_model("ecg_vit_tiny", num_classes=2, seq_len=210, patch_size=50)


def test_features_are_the_normed_mean_of_tokens() -> None:
    model = _tiny().eval()
    x = torch.randn(3, 12, 200)
    with torch.no_grad():
        tokens = model.forward_tokens(x)
        feats = model.forward_features(x)
    assert tokens.shape == (3, 48, 32)
    torch.testing.assert_close(feats, model.norm(tokens.mean(dim=1)))


def test_tokens_are_lead_major_with_position_and_lead_embeddings() -> None:
    model = _tiny(pos_embed="learned")
    x = torch.randn(2, 12, 200)
    with torch.no_grad():
        tokens = model.embed(x)
        lead, patch = 5, 2
        expected = (
            model.patch_embed(x[:, lead, patch * 50 : (patch + 1) * 50])
            + model.pos_embed[0, patch]
            + model.lead_embed[0, lead]
        )
    torch.testing.assert_close(tokens[:, lead * 4 + patch], expected)


def test_shorter_input_uses_the_first_position_rows() -> None:
    model = _tiny(pos_embed="learned").eval()
    x = torch.randn(2, 12, 200)
    with torch.no_grad():
        full = model.embed(x).reshape(2, 12, 4, 32)
        short = model.embed(x[..., :100]).reshape(2, 12, 2, 32)
        assert model(x[..., :100]).shape == (2, 3)
    torch.testing.assert_close(short, full[:, :, :2])


@pytest.mark.parametrize(
    ("shape", "match"),
    [
        ((2, 12, 120), "multiple of patch_size"),
        ((2, 12, 250), "at most 200"),
        ((2, 8, 200), "12, samples"),
        ((12, 200), "12, samples"),
    ],
)
def test_bad_input_shapes_raise_one_clear_error(shape: tuple[int, ...], match: str) -> None:
    with pytest.raises(DataError, match=match):
        _tiny()(torch.randn(*shape))


def test_forward_tokens_keeps_only_the_requested_tokens() -> None:
    model = _tiny().eval()
    x = torch.randn(2, 12, 200)
    perm = torch.stack([torch.randperm(48), torch.randperm(48)])
    with torch.no_grad():
        full = model.forward_tokens(x)
        permuted = model.forward_tokens(x, keep=perm)
        subset = model.forward_tokens(x, keep=perm[:, :12])
    # a permutation of all tokens permutes the outputs: each kept token carries its own embeddings
    torch.testing.assert_close(permuted, torch.gather(full, 1, perm[..., None].expand(-1, -1, 32)))
    assert subset.shape == (2, 12, 32)


def test_reset_classifier_and_pre_logits() -> None:
    model = _tiny(num_classes=3).eval()
    x = torch.randn(2, 12, 200)
    model.reset_classifier(7)
    assert model.num_classes == 7 and model(x).shape == (2, 7)
    assert model.get_classifier() is model.head
    model.reset_classifier(0)
    assert isinstance(model.head, nn.Identity)
    torch.testing.assert_close(model(x), model.forward_features(x))
    torch.testing.assert_close(model.forward_head(model.forward_features(x), pre_logits=True), model(x))


def test_dropout_modules_use_drop_rate() -> None:
    model = _tiny(drop_rate=0.2)
    rates = {m.p for m in model.modules() if isinstance(m, nn.Dropout)}
    assert rates == {0.2}
    n_dropouts = sum(isinstance(m, nn.Dropout) for m in model.modules())
    assert n_dropouts == 2 * len(model.blocks) + 1  # attention output, MLP output, head
    model.eval()
    x = torch.randn(2, 12, 200)
    assert torch.equal(model(x), model(x))


def test_no_weight_decay_names_the_embeddings() -> None:
    model = _tiny(pos_embed="learned")
    names = dict(model.named_parameters())
    assert model.no_weight_decay() == {"pos_embed", "lead_embed"}
    assert model.no_weight_decay() <= set(names)


def test_sincos_positions_are_a_fixed_saved_table() -> None:
    model = _tiny()
    assert "pos_embed" not in dict(model.named_parameters())
    torch.testing.assert_close(model.state_dict()["pos_embed"][0], sincos_position_table(4, 32))
    table = sincos_position_table(10, 8)
    assert table.shape == (10, 8)
    torch.testing.assert_close(table[0], torch.tensor([0.0] * 4 + [1.0] * 4))


def test_layer_ids_for_layerwise_lr_decay() -> None:
    model = _tiny(pos_embed="learned")
    assert model.num_layers() == 3
    assert model.layer_id("pos_embed") == 0
    assert model.layer_id("lead_embed") == 0
    assert model.layer_id("patch_embed.weight") == 0
    assert model.layer_id("blocks.0.attn.qkv.weight") == 1
    assert model.layer_id("blocks.1.mlp.fc2.bias") == 2
    assert model.layer_id("norm.weight") == 3
    assert model.layer_id("head.weight") == 3
    assert {model.layer_id(n) for n, _ in model.named_parameters()} == {0, 1, 2, 3}


def test_encoder_checkpoint_loads_through_create_model(tmp_path: Path) -> None:
    trained = _tiny(num_classes=4).eval()
    state = {k: v for k, v in trained.state_dict().items() if not k.startswith("head.")}
    path = tmp_path / "encoder.safetensors"
    save_file(state, str(path), metadata={"model": "ecg_vit_tiny"})
    torch.manual_seed(123)
    loaded = create_model("ecg_vit_tiny", num_classes=2, pretrained=path, **TINY).eval()
    x = torch.randn(2, 12, 200)
    with torch.no_grad():
        torch.testing.assert_close(loaded.forward_features(x), trained.forward_features(x), rtol=0, atol=0)
    assert loaded(x).shape == (2, 2)


def test_checkpoint_is_recognised_and_mismatches_are_explained(tmp_path: Path) -> None:
    from ecgadapt.errors import CheckpointError
    from ecgadapt.models.checkpoint import detect_checkpoint

    state = {k: v for k, v in _tiny().state_dict().items() if not k.startswith("head.")}
    path = tmp_path / "encoder.safetensors"
    save_file(state, str(path))
    assert "ecg_vit" in detect_checkpoint(path).families
    with pytest.raises(CheckpointError, match="pass the same model overrides"):
        create_model("ecg_vit_tiny", num_classes=2, pretrained=path, **{**TINY, "width": 64})


@pytest.mark.slow
def test_tiny_fine_tunes_fast_on_two_cpu_threads() -> None:
    """The CPU requirement: >= 250 samples/s fine-tuning ecg_vit_tiny (batch 32, 2 threads, dropout on)."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from bench_models import bench_one, parse_args

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        row = bench_one("ecg_vit_tiny", torch.device("cpu"), parse_args(["--repeats", "3"]))
    finally:
        torch.set_num_threads(threads)
    assert row["train_samples_s"] >= 250, row


def test_finer_token_variant_is_registered_with_half_second_patches(tmp_path: Path) -> None:
    info = model_info("ecg_vit_tiny_p50")
    assert info.family == "ecg_vit" and info.input_spec == model_info("ecg_vit_tiny").input_spec
    model = create_model("ecg_vit_tiny_p50", num_classes=5, drop_path_rate=0.1)
    assert model.patch_size == 50 and model.num_patches == 20  # 0.5 s at 100 Hz, 240 tokens
    assert model.blocks[-1].drop_path1.drop_prob == pytest.approx(0.1)
    from ecgadapt.pretrain.pretrain import save_encoder

    path = save_encoder(model, tmp_path / "p50.safetensors", "ecg_vit_tiny_p50")
    loaded = create_model("ecg_vit_tiny_p50", num_classes=2, pretrained=path)
    assert all(
        torch.equal(loaded.state_dict()[k], v)
        for k, v in model.state_dict().items()
        if not k.startswith("head.")
    )
