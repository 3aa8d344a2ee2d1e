"""ST-MEM: released-format loading, reference features/logits, full key layout, input checks, DropPath."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from compat_helpers import assert_reference, assert_reference_outputs, meta_state_dict, read_tiny_config

from ecgadapt.errors import CheckpointError, ConfigError, DataError
from ecgadapt.models import create_model
from ecgadapt.models.checkpoint import load_pretrained
from ecgadapt.models.keymap import keymap_for, plan_load

ARCH = ("seq_len", "patch_size", "num_leads", "width", "depth", "mlp_dim", "heads", "dim_head", "qkv_bias")


def tiny_overrides(folder: Path) -> dict:
    cfg = read_tiny_config(folder)
    return {k: cfg[k] for k in ARCH}


@pytest.fixture(scope="module")
def folder(compat: Path) -> Path:
    return compat / "st_mem"


@pytest.fixture(scope="module")
def tiny_sd(folder: Path) -> dict[str, torch.Tensor]:
    return torch.load(folder / "tiny_state_dict.pt", weights_only=True)


@pytest.fixture(scope="module")
def released_file(folder: Path, tiny_sd: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny weights in the released wrapper: a dict with the weights under ``model``."""
    path = tmp_path_factory.mktemp("st_mem") / "st_mem_tiny.pth"
    torch.save({"epoch": 800, "model": tiny_sd, "optimizer": None, "scaler": None, "config": {"a": 1}}, path)
    return path


@pytest.fixture(scope="module")
def tiny_model(folder: Path, released_file: Path):
    return create_model(
        "st_mem_vit_b75", num_classes=3, pretrained=released_file, **tiny_overrides(folder)
    ).eval()


def test_tiny_released_format_reproduces_features_and_logits(tiny_model, folder: Path) -> None:
    assert_reference_outputs(tiny_model, folder)


def test_short_input_uses_last_position_row_for_right_sep(tiny_model, folder: Path) -> None:
    x = torch.from_numpy(np.load(folder / "input.npy"))[:, :, :1500]
    with torch.no_grad():
        feats = tiny_model.forward_features(x)
    assert_reference(feats, folder, "features_short1500.npy")


def test_pretraining_file_loads_encoder_and_ignores_decoder(
    folder: Path, tiny_sd: dict, tmp_path: Path
) -> None:
    width = tiny_sd["sep_embedding"].shape[0]
    encoder = {k: v for k, v in tiny_sd.items() if not k.startswith("head.")}
    full = {f"encoder.{k}": v for k, v in encoder.items()}
    full.update({k: v.clone() for k, v in encoder.items() if k.startswith("to_patch_embedding.")})
    full["mask_embedding"] = torch.zeros(1, 1, 16)
    full["decoder_blocks.0.attn.norm.weight"] = torch.ones(16)
    full["decoder_head.weight"] = torch.zeros(75, 16)
    full["to_decoder_embedding.weight"] = torch.zeros(16, width)
    path = tmp_path / "full.pth"
    torch.save({"model": full}, path)
    model = create_model("st_mem_vit_b75", num_classes=3, pretrained=path, **tiny_overrides(folder)).eval()
    with torch.no_grad():
        feats = model.forward_features(torch.from_numpy(np.load(folder / "input.npy")))
    assert_reference(feats, folder, "features.npy")


def test_full_encoder_layout_matches_release(folder: Path) -> None:
    with torch.device("meta"):
        model = create_model("st_mem_vit_b75", num_classes=5)
    released = meta_state_dict(folder / "keys_full.json")
    model_sd = model.state_dict()
    assert {k: tuple(v.shape) for k, v in model_sd.items() if not k.startswith("head.")} == {
        k: tuple(v.shape) for k, v in released.items()
    }
    plan = plan_load(model, released, keymap_for("st_mem"))
    assert plan.ok and not plan.ignored and plan.head == "new"
    assert len(plan.tensors) == 166 and plan.n_loaded == 85_150_614


def test_full_pretraining_layout_loads_encoder_part(folder: Path) -> None:
    with torch.device("meta"):
        model = create_model("st_mem_vit_b75", num_classes=5)
    pretrain = meta_state_dict(folder / "keys_full_pretrain.json")
    plan = plan_load(model, pretrain, keymap_for("st_mem"))
    assert plan.ok and len(plan.tensors) == 166
    assert set(plan.ignored) == {k for k in pretrain if not k.startswith("encoder.")}
    assert all(k.startswith(("decoder", "mask_embedding", "to_decoder", "to_patch")) for k in plan.ignored)


def test_lead_subset_model_uses_first_lead_embeddings(
    folder: Path, released_file: Path, tiny_sd: dict
) -> None:
    overrides = {**tiny_overrides(folder), "num_leads": 6}
    model = create_model("st_mem_vit_b75", num_classes=3, pretrained=released_file, **overrides)
    assert model.input_spec.leads == ("I", "II", "III", "aVR", "aVL", "aVF")
    assert torch.equal(model.lead_embeddings[5], tiny_sd["lead_embeddings.5"])
    assert model(torch.randn(1, 6, 750)).shape == (1, 3)


def test_shorter_position_table_is_a_clear_error(folder: Path, released_file: Path) -> None:
    overrides = {**tiny_overrides(folder), "seq_len": 1500}
    with pytest.raises(
        CheckpointError,
        match=r"pos_embedding: file \[1, 32, 64\] vs model \[1, 22, 64\] \(the file's table has 32 rows, i.e. seq_len = 30 \* patch_size",
    ):
        create_model("st_mem_vit_b75", num_classes=3, pretrained=released_file, **overrides)


def test_missing_block_names_the_offending_keys(folder: Path, tiny_sd: dict, tmp_path: Path) -> None:
    path = tmp_path / "no_block1.pth"
    torch.save({"model": {k: v for k, v in tiny_sd.items() if not k.startswith("block1.")}}, path)
    model = create_model("st_mem_vit_b75", num_classes=3, **tiny_overrides(folder))
    with pytest.raises(CheckpointError, match=r"missing keys \(12\): block1\.attn\.norm\.weight") as exc:
        load_pretrained(model, "st_mem_vit_b75", path)
    assert "looks like a st_mem checkpoint" in str(exc.value)


@pytest.mark.parametrize("length", [1450, 2325, 0])
def test_bad_input_length_is_a_clear_error(tiny_model, length: int) -> None:
    with pytest.raises(DataError, match="multiple of 75 and at most 2250"):
        tiny_model(torch.zeros(1, 12, length))


def test_wrong_lead_count_is_a_clear_error(tiny_model) -> None:
    with pytest.raises(DataError, match=r"\(batch, 12, samples\)"):
        tiny_model(torch.zeros(1, 1, 2250))


def test_unknown_override_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown option.*bogus"):
        create_model("st_mem_vit_b75", num_classes=2, bogus=1)


def _small(**kw):
    return create_model(
        "st_mem_vit_b75",
        num_classes=2,
        seq_len=300,
        width=32,
        depth=4,
        mlp_dim=64,
        heads=2,
        dim_head=16,
        **kw,
    )


def test_drop_path_schedule_is_linear_per_block() -> None:
    model = _small(drop_path_rate=0.3)
    assert model.drop_path_rates() == pytest.approx([0.0, 0.1, 0.2, 0.3])
    # every residual branch of every block goes through that block's DropPath
    calls: list[int] = []
    for i, blk in enumerate(model.blocks):
        blk.drop_path.register_forward_hook(lambda m, a, o, i=i: calls.append(i))
    model(torch.randn(2, 12, 300))
    assert calls == [0, 0, 1, 1, 2, 2, 3, 3]


def test_zero_rates_are_bit_identical_and_eval_disables_drop_path() -> None:
    torch.manual_seed(0)
    plain = _small().train()
    twin = _small().train()
    twin.load_state_dict(plain.state_dict())
    x = torch.randn(2, 12, 300)
    assert torch.equal(plain(x), twin(x))  # train mode, all rates 0: no randomness
    regular = _small(drop_path_rate=0.5)
    regular.load_state_dict(plain.state_dict())
    assert torch.equal(regular.eval()(x), plain.eval()(x))
    torch.manual_seed(1)
    assert not torch.equal(regular.train()(x), plain(x))


def test_layer_ids_and_no_weight_decay() -> None:
    model = _small()
    assert model.num_layers() == 5
    assert model.layer_id("pos_embedding") == 0
    assert model.layer_id("to_patch_embedding.2.weight") == 0
    assert model.layer_id("lead_embeddings.3") == 0
    assert model.layer_id("block0.attn.fn.to_qkv.weight") == 1
    assert model.layer_id("block3.ff.fn.net.3.bias") == 4
    assert model.layer_id("norm.weight") == 5
    assert model.layer_id("head.weight") == 5
    names = dict(model.named_parameters())
    assert all(any(n == k or n.startswith(k + ".") for n in names) for k in model.no_weight_decay())
    assert not model.pos_embedding.requires_grad  # frozen sin-cos table, as released


def test_reset_classifier() -> None:
    model = _small()
    model.reset_classifier(7)
    assert model(torch.randn(1, 12, 300)).shape == (1, 7)
    model.reset_classifier(0)
    assert model(torch.randn(1, 12, 300)).shape == (1, 32)
