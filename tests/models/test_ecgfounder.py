"""ECGFounder Net1D: released-format loading, reference features/logits, full key layout, DropPath, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from compat_helpers import assert_reference_outputs, meta_state_dict, read_tiny_config

from ecgadapt.errors import CheckpointError, DataError
from ecgadapt.models import create_model
from ecgadapt.models.checkpoint import load_pretrained
from ecgadapt.models.ecgfounder import same_pad
from ecgadapt.models.keymap import describe_problems, keymap_for, plan_load

ARCH = (
    "in_channels",
    "base_filters",
    "ratio",
    "filter_list",
    "m_blocks_list",
    "kernel_size",
    "stride",
    "groups_width",
)
NAME = "ecgfounder_net1d"


def tiny_overrides(folder: Path) -> dict:
    cfg = read_tiny_config(folder)
    assert cfg["use_bn"] is False and cfg["use_do"] is False
    return {k: cfg[k] for k in ARCH}


@pytest.fixture(scope="module")
def folder(compat: Path) -> Path:
    return compat / "ecgfounder"


@pytest.fixture(scope="module")
def tiny_sd(folder: Path) -> dict[str, torch.Tensor]:
    return torch.load(folder / "tiny_state_dict.pt", weights_only=True)


@pytest.fixture(scope="module")
def released_file(tiny_sd: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny weights in the released wrapper (``state_dict``), keys with a DataParallel ``module.`` prefix."""
    path = tmp_path_factory.mktemp("ecgfounder") / "12_lead_tiny.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in tiny_sd.items()}, "epoch": 3, "step": 10}, path)
    return path


def test_tiny_released_format_reproduces_features_and_logits(folder: Path, released_file: Path) -> None:
    model = create_model(NAME, num_classes=4, pretrained=released_file, **tiny_overrides(folder)).eval()
    assert_reference_outputs(model, folder)


def test_other_class_count_keeps_new_head_and_ignores_batchnorm(
    folder: Path, released_file: Path, tiny_sd
) -> None:
    model = create_model(NAME, num_classes=7, **tiny_overrides(folder))
    fresh_head = model.head.weight.detach().clone()
    plan = load_pretrained(model, NAME, released_file)
    assert plan.head == "replaced" and torch.equal(model.head.weight, fresh_head)
    bn = {k for k in tiny_sd if ".bn" in k or k.startswith("first_bn.")}
    assert set(plan.ignored) == bn | {"dense.weight", "dense.bias"}
    assert torch.equal(
        model.stage_list[1].block_list[0].se_fc1.weight, tiny_sd["stage_list.1.block_list.0.se_fc1.weight"]
    )


def test_full_layout_matches_release(folder: Path) -> None:
    released = meta_state_dict(folder / "keys_full.json")
    with torch.device("meta"):
        model = create_model(NAME, num_classes=150)
    plan = plan_load(model, released, keymap_for("ecgfounder"))
    assert plan.ok and plan.head == "loaded"
    assert len(plan.ignored) == 305 and all(".bn" in k or k.startswith("first_bn") for k in plan.ignored)
    assert set(plan.tensors) == set(model.state_dict())  # every model key, head included
    with torch.device("meta"):
        model = create_model(NAME, num_classes=5)
    plan = plan_load(model, released, keymap_for("ecgfounder"))
    assert plan.ok and plan.head == "replaced" and len(plan.ignored) == 307


def test_one_lead_release_loads_into_one_channel_model(folder: Path) -> None:
    released = meta_state_dict(folder / "keys_full.json")
    released["first_conv.conv.weight"] = torch.empty(64, 1, 16, device="meta")
    with torch.device("meta"):
        twelve = create_model(NAME, num_classes=2)
        one = create_model(NAME, num_classes=2, in_channels=1)
    assert plan_load(one, released, keymap_for("ecgfounder")).ok
    assert one.input_spec.leads == ("I",)
    plan = plan_load(twelve, released, keymap_for("ecgfounder"))
    assert [m[0] for m in plan.mismatched] == ["first_conv.conv.weight"]
    (problem,) = describe_problems(plan, keymap_for("ecgfounder"))
    assert problem.endswith(
        "file [64, 1, 16] vs model [64, 12, 16] (the file takes 1 input lead(s): build the "
        "model with in_channels=1)"
    )


def test_missing_block_names_the_offending_keys(folder: Path, tiny_sd: dict, tmp_path: Path) -> None:
    path = tmp_path / "broken.pth"
    kept = {k: v for k, v in tiny_sd.items() if not k.startswith("stage_list.1.block_list.1.")}
    torch.save({"state_dict": kept}, path)
    model = create_model(NAME, num_classes=4, **tiny_overrides(folder))
    with pytest.raises(
        CheckpointError, match=r"missing keys \(10\): stage_list\.1\.block_list\.1\.conv1\.conv\.weight"
    ):
        load_pretrained(model, NAME, path)


def test_st_mem_checkpoint_is_refused_with_its_family(folder: Path, compat: Path, tmp_path: Path) -> None:
    path = tmp_path / "st_mem.pth"
    torch.save({"model": torch.load(compat / "st_mem" / "tiny_state_dict.pt", weights_only=True)}, path)
    model = create_model(NAME, num_classes=4, **tiny_overrides(folder))
    with pytest.raises(CheckpointError) as exc:
        load_pretrained(model, NAME, path)
    message = str(exc.value)
    assert "unexpected keys (46): pos_embedding, sep_embedding" in message and "(+38 more)" in message
    assert "looks like a st_mem checkpoint" in message


def test_same_padding_and_stage_lengths() -> None:
    assert same_pad(torch.zeros(1, 1, 625), 16, 2).shape[-1] == 625 + 15
    assert same_pad(torch.zeros(1, 1, 5000), 16, 2).shape[-1] == 5000 + 14
    model = create_model(
        NAME,
        num_classes=2,
        base_filters=16,
        filter_list=[16, 40, 64],
        m_blocks_list=[1, 1, 1],
        groups_width=8,
    )
    lengths = []
    for stage in model.stage_list:
        stage.register_forward_hook(lambda m, a, o: lengths.append(o.shape[-1]))
    model(torch.randn(1, 12, 5000))
    assert lengths == [1250, 625, 313]


def test_wrong_lead_count_is_a_clear_error() -> None:
    model = create_model(
        NAME, num_classes=2, base_filters=16, filter_list=[16], m_blocks_list=[1], groups_width=8
    )
    with pytest.raises(DataError, match=r"\(batch, 12, samples\)"):
        model(torch.zeros(1, 6, 500))


def _small(**kw):
    return create_model(
        NAME, num_classes=3, base_filters=16, filter_list=[16, 32], m_blocks_list=[2, 3], groups_width=8, **kw
    )


def test_drop_path_schedule_runs_over_all_blocks_of_all_stages() -> None:
    model = _small(drop_path_rate=0.4)
    assert model.drop_path_rates() == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])


def test_zero_rates_are_bit_identical_and_eval_disables_drop_path() -> None:
    plain = _small().train()
    twin = _small().train()
    twin.load_state_dict(plain.state_dict())
    x = torch.randn(2, 12, 256)
    assert torch.equal(plain(x), twin(x))
    regular = _small(drop_path_rate=0.5, drop_rate=0.5)
    regular.load_state_dict(plain.state_dict())
    assert torch.equal(regular.eval()(x), plain.eval()(x))
    torch.manual_seed(0)
    assert not torch.equal(regular.train().forward_features(x), plain.forward_features(x))


def test_layer_ids() -> None:
    model = _small()
    assert model.num_layers() == 6
    assert model.layer_id("first_conv.conv.weight") == 0
    assert model.layer_id("stage_list.0.block_list.1.conv2.conv.weight") == 2
    assert model.layer_id("stage_list.1.block_list.0.se_fc1.bias") == 3
    assert model.layer_id("stage_list.1.block_list.2.conv3.conv.bias") == 5
    assert model.layer_id("head.weight") == 6
    assert {model.layer_id(n) for n, _ in model.named_parameters()} == set(range(7))
