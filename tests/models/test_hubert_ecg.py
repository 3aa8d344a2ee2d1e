"""HuBERT-ECG: both release formats, weight-norm spellings, reference features/logits, key layouts, DropPath."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from compat_helpers import assert_reference, meta_state_dict, read_tiny_config

from ecgadapt.errors import CheckpointError, ECGAdaptError
from ecgadapt.models import create_model
from ecgadapt.models.checkpoint import load_pretrained, read_checkpoint
from ecgadapt.models.keymap import keymap_for, plan_load

NAME = "hubert_ecg_small"
PRETRAINING_KEYS = {
    "masked_spec_embed",
    "final_proj.0.weight",
    "final_proj.0.bias",
    "label_embedding.0.weight",
}

try:
    import transformers  # noqa: F401

    HAVE_TRANSFORMERS = True
except ImportError:
    HAVE_TRANSFORMERS = False
needs_transformers = pytest.mark.skipif(
    not HAVE_TRANSFORMERS, reason='transformers not installed (pip install "ecgadapt[hubert]")'
)


def tiny_overrides(folder: Path) -> dict:
    cfg = read_tiny_config(folder)
    cfg.pop("head")
    return cfg


@pytest.fixture(scope="module")
def folder(compat: Path) -> Path:
    return compat / "hubert_ecg"


@pytest.fixture(scope="module")
def tiny_sd(folder: Path) -> dict[str, torch.Tensor]:
    return torch.load(folder / "tiny_state_dict.pt", weights_only=True)


@pytest.fixture(scope="module")
def tiny_head(folder: Path) -> dict[str, torch.Tensor]:
    return torch.load(folder / "tiny_head_state_dict.pt", weights_only=True)


@pytest.fixture(scope="module")
def x(folder: Path) -> torch.Tensor:
    return torch.from_numpy(np.load(folder / "input.npy"))


def _save_safetensors(sd: dict, path: Path) -> Path:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    return path


def _features(model, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model.eval().forward_features(x).numpy()


@needs_transformers
def test_flat_safetensors_reproduces_features(
    folder: Path, tiny_sd: dict, x: torch.Tensor, tmp_path: Path
) -> None:
    path = _save_safetensors(tiny_sd, tmp_path / "model.safetensors")
    model = create_model(NAME, num_classes=5, pretrained=path, **tiny_overrides(folder)).eval()
    with torch.no_grad():
        frames = model.forward_frames(x)
        feats = model.forward_features(x)
    assert_reference(frames, folder, "last_hidden_state.npy")
    assert_reference(feats, folder, "features.npy")


@needs_transformers
def test_fine_tuned_format_loads_head_and_reproduces_logits(
    folder: Path, tiny_sd: dict, tiny_head: dict, x: torch.Tensor, tmp_path: Path
) -> None:
    sd = {f"hubert_ecg.{k}": v for k, v in tiny_sd.items()} | tiny_head
    path = _save_safetensors(sd, tmp_path / "finetuned.safetensors")
    model = create_model(NAME, num_classes=5, **tiny_overrides(folder))
    plan = load_pretrained(model, NAME, path)
    assert plan.head == "loaded"
    assert set(plan.ignored) == {
        "hubert_ecg.final_proj.0.weight",
        "hubert_ecg.final_proj.0.bias",
        "hubert_ecg.label_embedding.0.weight",
    }
    with torch.no_grad():
        logits = model.eval()(x)
    assert_reference(logits, folder, "logits.npy")


@needs_transformers
def test_old_weight_norm_spelling_is_accepted(
    folder: Path, tiny_sd: dict, x: torch.Tensor, tmp_path: Path
) -> None:
    renamed = {
        k.replace("parametrizations.weight.original0", "weight_g").replace(
            "parametrizations.weight.original1", "weight_v"
        ): v
        for k, v in tiny_sd.items()
    }
    assert "encoder.pos_conv_embed.conv.weight_g" in renamed
    path = tmp_path / "old.pt"
    torch.save(renamed, path)
    model = create_model(NAME, num_classes=5, pretrained=path, **tiny_overrides(folder))
    assert_reference(_features(model, x), folder, "features.npy")


@needs_transformers
def test_pt_release_with_pickled_config_object_loads(
    folder: Path, tiny_sd: dict, x: torch.Tensor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The .pt release pickles its config object; it is read as an inert placeholder, never imported."""
    module = types.ModuleType("fake_hubert_ecg_code")

    class HuBERTECGConfig:
        def __init__(self) -> None:
            self.hidden_size = 32
            self.vocab_sizes = [10]

    HuBERTECGConfig.__module__ = module.__name__
    HuBERTECGConfig.__qualname__ = "HuBERTECGConfig"
    module.HuBERTECGConfig = HuBERTECGConfig
    monkeypatch.setitem(sys.modules, module.__name__, module)
    path = tmp_path / "hubert_ecg_small.pt"
    torch.save({"model_state_dict": tiny_sd, "model_config": HuBERTECGConfig(), "global_step": 7}, path)
    monkeypatch.delitem(sys.modules, module.__name__)

    raw = read_checkpoint(path)
    assert raw.wrapper == "model_state_dict" and raw.placeholders == ("fake_hubert_ecg_code.HuBERTECGConfig",)
    assert set(raw.other_entries) == {"model_config", "global_step"}
    model = create_model(NAME, num_classes=5, pretrained=path, **tiny_overrides(folder))
    assert_reference(_features(model, x), folder, "features.npy")


@needs_transformers
@pytest.mark.parametrize(
    ("name", "file"),
    [
        ("hubert_ecg_small", "keys_full.json"),
        ("hubert_ecg_base", "keys_full_base.json"),
        ("hubert_ecg_large", "keys_full_large.json"),
    ],
)
def test_full_layouts_match_release(folder: Path, name: str, file: str) -> None:
    released = meta_state_dict(folder / file)
    with torch.device("meta"):
        model = create_model(name, num_classes=3)
    plan = plan_load(model, released, keymap_for("hubert_ecg"))
    assert plan.ok and plan.head == "new"
    assert set(plan.ignored) == PRETRAINING_KEYS
    assert set(plan.tensors) == {k for k in model.state_dict() if not k.startswith("head.")}
    assert len(plan.tensors) == len(released) - len(PRETRAINING_KEYS)


@needs_transformers
def test_base_checkpoint_into_small_model_names_keys_and_fitting_model(tmp_path: Path) -> None:
    with torch.device("meta"):
        base = create_model("hubert_ecg_base", num_classes=0)
    sd = {k.removeprefix("hubert_ecg."): torch.zeros(v.shape) for k, v in base.state_dict().items()}
    path = _save_safetensors(sd, tmp_path / "base.safetensors")
    with torch.device("meta"):
        small = create_model(NAME, num_classes=2)
    with pytest.raises(CheckpointError) as exc:
        load_pretrained(small, NAME, path)
    message = str(exc.value)
    assert "unexpected keys (64): encoder.layers.10.attention.k_proj.bias" in message
    assert (
        "shape mismatch feature_projection.projection.weight -> hubert_ecg.feature_projection.projection.weight: "
        "file [768, 512] vs model [512, 512] (hidden size" in message
    )
    assert "(+130 more shape mismatches)" in message
    assert "fits: hubert_ecg_base" in message


@needs_transformers
def test_flattening_accepts_all_three_layouts(folder: Path, x: torch.Tensor) -> None:
    model = create_model(NAME, num_classes=2, **tiny_overrides(folder))
    ref = _features(model, x)
    flat = x.reshape(2, -1)
    np.testing.assert_array_equal(_features(model, flat), ref)
    np.testing.assert_array_equal(_features(model, flat[:, None, :]), ref)
    assert model.input_spec.flatten_leads and model.input_spec.normalisation == "minmax"
    assert (model.input_spec.sampling_rate, model.input_spec.length) == (100, 500)


def _small(**kw):
    return create_model(
        NAME,
        num_classes=2,
        conv_dim=[16] * 5,
        hidden_size=16,
        num_hidden_layers=3,
        num_attention_heads=2,
        intermediate_size=32,
        **kw,
    )


@needs_transformers
def test_drop_path_on_both_branches_with_linear_schedule() -> None:
    model = _small(drop_path_rate=0.2)
    assert model.drop_path_rates() == pytest.approx([0.0, 0.1, 0.2])
    assert model.hubert_ecg.config.layerdrop == 0.0
    calls: list[str] = []
    for i, layer in enumerate(model.hubert_ecg.encoder.layers):
        layer.dropout[1].register_forward_hook(lambda m, a, o, i=i: calls.append(f"attn{i}"))
        layer.feed_forward.output_dropout[1].register_forward_hook(
            lambda m, a, o, i=i: calls.append(f"ffn{i}")
        )
    model(torch.randn(2, 12, 100))
    assert calls == ["attn0", "ffn0", "attn1", "ffn1", "attn2", "ffn2"]


@needs_transformers
def test_zero_rates_bit_identical_and_eval_is_deterministic() -> None:
    x = torch.randn(2, 12, 100)
    plain = _small().train()
    twin = _small().train()
    twin.load_state_dict(plain.state_dict())
    assert torch.equal(plain(x), twin(x))  # train mode, every rate 0
    regular = _small(drop_path_rate=0.5, drop_rate=0.3, layerdrop=0.5)
    regular.load_state_dict(plain.state_dict())
    assert torch.equal(regular.eval()(x), plain.eval()(x))  # DropPath, dropout and layerdrop off in eval
    torch.manual_seed(0)
    assert not torch.equal(regular.train()(x), plain(x))


@needs_transformers
def test_layer_ids() -> None:
    model = _small()
    assert model.num_layers() == 4
    assert model.layer_id("hubert_ecg.feature_extractor.conv_layers.0.conv.weight") == 0
    assert model.layer_id("hubert_ecg.encoder.pos_conv_embed.conv.bias") == 0
    assert model.layer_id("hubert_ecg.encoder.layers.2.attention.q_proj.weight") == 3
    assert model.layer_id("head.weight") == 4
    assert {model.layer_id(n) for n, _ in model.named_parameters()} == set(range(5))


def test_without_transformers_the_error_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)  # makes `import transformers` fail
    with pytest.raises(ECGAdaptError, match=r'pip install "ecgadapt\[hubert\]"'):
        create_model(NAME, num_classes=2)
