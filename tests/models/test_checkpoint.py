"""Checkpoint reading, unwrapping, explicit key matching, head policy and error messages (family-agnostic)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ecgadapt.errors import CheckpointError
from ecgadapt.models import create_model, list_models
from ecgadapt.models.base import ECGModel, InputSpec
from ecgadapt.models.checkpoint import detect_checkpoint, load_pretrained, read_checkpoint
from ecgadapt.models.keymap import FAMILY_KEYMAPS, KeyMap, keymap_for, plan_load, register_keymap


class Toy(ECGModel):
    """Stem + two blocks + head: enough structure for key matching."""

    def __init__(self, num_classes: int = 3, width: int = 4) -> None:
        super().__init__()
        self.num_features = width
        self.input_spec = InputSpec(sampling_rate=100, length=10)
        self.stem = nn.Linear(10, width)
        self.blocks = nn.Sequential(nn.Linear(width, width), nn.LayerNorm(width))
        self.head_drop = nn.Identity()
        self.reset_classifier(num_classes)


def _sd(model: nn.Module, head: bool = True) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if head or not k.startswith("head.")}


IDENTITY = keymap_for("no_such_family")


# -- reading -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("wrapper", [None, "model", "state_dict", "model_state_dict"])
def test_torch_files_are_unwrapped(tmp_path, wrapper) -> None:
    sd = _sd(Toy())
    path = tmp_path / "w.pth"
    torch.save(sd if wrapper is None else {wrapper: sd, "epoch": 3}, path)
    raw = read_checkpoint(path)
    assert raw.format == "torch" and raw.wrapper == wrapper
    assert raw.state_dict.keys() == sd.keys() and all(torch.equal(raw.state_dict[k], sd[k]) for k in sd)
    assert raw.other_entries == (() if wrapper is None else ("epoch",))


def test_safetensors_and_module_prefix(tmp_path) -> None:
    from safetensors.torch import save_file

    sd = _sd(Toy())
    path = tmp_path / "w.safetensors"
    save_file({f"module.{k}": v for k, v in sd.items()}, str(path))
    raw = read_checkpoint(path)
    assert raw.format == "safetensors" and raw.wrapper is None and raw.stripped_prefix == "module."
    assert set(raw.state_dict) == set(sd)
    assert raw.n_numbers == sum(v.numel() for v in sd.values())


def test_format_is_sniffed_without_a_known_suffix(tmp_path) -> None:
    path = tmp_path / "weights.data"
    torch.save(_sd(Toy()), path)
    assert read_checkpoint(path).format == "torch"


def test_unknown_wrapper_lists_the_entries(tmp_path) -> None:
    path = tmp_path / "w.pt"
    torch.save({"weights": _sd(Toy()), "epoch": 1}, path)
    with pytest.raises(CheckpointError, match=r"no weights found; top-level entries are 'weights', 'epoch'"):
        read_checkpoint(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "checkpoint file not found"),
        (b"not a checkpoint at all", "unknown checkpoint format"),
        (torch.zeros(3), "holds a Tensor, not a dict of tensors"),
    ],
)
def test_unreadable_files_are_clear_errors(tmp_path, content, message) -> None:
    path = tmp_path / "bad.bin.x"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        torch.save(content, path)
    with pytest.raises(CheckpointError, match=message):
        read_checkpoint(path)


class _Custom:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickled_code_is_never_executed(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"model": _sd(Toy()), "payload": _Custom()}, path)
    raw = read_checkpoint(path)  # print is replaced by an inert placeholder
    assert "this must never run" not in capsys.readouterr().out
    assert raw.placeholders == ("builtins.print",) and raw.wrapper == "model"


def test_legacy_pickle_with_foreign_objects_says_how_to_convert(tmp_path) -> None:
    path = tmp_path / "legacy.pt"
    torch.save({"model": _sd(Toy()), "payload": _Custom()}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(
        CheckpointError, match=r"cannot read .* safely: .*isolated environment.*safetensors"
    ) as info:
        read_checkpoint(path)
    assert "weights_only=False" not in str(info.value)  # never the advice that would run the payload


def test_unreadable_checkpoint_messages_never_advise_an_unsafe_load(tmp_path) -> None:
    from ecgadapt.engine.checkpoints import load_checkpoint

    path = tmp_path / "evil.pt"
    torch.save({"model": _sd(Toy()), "payload": _Custom()}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert "weights_only" not in str(info.value) and str(path) in str(info.value)


@pytest.mark.parametrize("content", [b"", b"\x80\x02"])
def test_empty_or_truncated_pt_gives_a_real_reason(tmp_path, content: bytes) -> None:
    path = tmp_path / "w.pt"
    path.write_bytes(content)
    match = "the file is empty \\(0 bytes\\)" if not content else "ends early|truncated"
    with pytest.raises(CheckpointError, match=match) as info:
        read_checkpoint(path)
    assert not str(info.value).rstrip().endswith(":")


def test_non_finite_tensors_are_reported_at_load_naming_the_keys(tmp_path) -> None:
    sd = _sd(Toy())
    key = next(k for k, t in sd.items() if t.is_floating_point())
    sd[key] = sd[key].clone()
    sd[key].view(-1)[0] = float("nan")
    path = tmp_path / "nan.pt"
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match=f"NaN or infinite values in 1 tensor\\(s\\): {key}"):
        read_checkpoint(path)


# -- matching ----------------------------------------------------------------------------------------------


def test_identity_plan_loads_everything_with_the_head() -> None:
    src, dst = Toy(), Toy()
    plan = plan_load(dst, _sd(src), IDENTITY)
    assert plan.ok and plan.head == "loaded" and set(plan.tensors) == set(dst.state_dict())


def test_encoder_only_file_gives_a_new_head() -> None:
    plan = plan_load(Toy(), _sd(Toy(), head=False), IDENTITY)
    assert plan.ok and plan.head == "new" and "head.weight" not in plan.tensors


def test_head_of_other_shape_is_replaced_not_loaded() -> None:
    plan = plan_load(Toy(num_classes=5), _sd(Toy(num_classes=3)), IDENTITY)
    assert plan.ok and plan.head == "replaced"
    assert set(plan.ignored) == {"head.weight", "head.bias"} and "3x4" in plan.ignored["head.weight"]


def test_unexpected_missing_and_mismatched_keys_are_all_reported() -> None:
    sd = _sd(Toy())
    sd["extra.weight"] = torch.zeros(2)
    del sd["blocks.1.weight"]
    sd["stem.weight"] = torch.zeros(4, 11)
    plan = plan_load(Toy(), sd, IDENTITY)
    assert not plan.ok
    assert plan.unexpected == ["extra.weight"]
    assert plan.missing == ["blocks.1.weight"]
    assert plan.mismatched == [("stem.weight", "stem.weight", (4, 11), (4, 10))]


def test_ignore_patterns_only_cover_unmapped_keys() -> None:
    keymap = KeyMap(
        family="toy",
        remap=lambda keys, model_keys: {k: k.removeprefix("enc.") for k in keys if k.startswith("enc.")},
        ignore={"dec.*": "decoder"},
    )
    sd = {f"enc.{k}": v for k, v in _sd(Toy(), head=False).items()}
    sd["dec.w"] = torch.zeros(1)
    plan = plan_load(Toy(), sd, keymap)
    assert plan.ok and plan.ignored == {"dec.w": "decoder"}
    sd["other.w"] = torch.zeros(1)
    assert plan_load(Toy(), sd, keymap).unexpected == ["other.w"]


def test_two_file_keys_for_one_model_key_are_not_silently_merged() -> None:
    keymap = KeyMap(family="toy", remap=lambda keys, model_keys: {k: k.removeprefix("copy.") for k in keys})
    sd = _sd(Toy())
    sd["copy.stem.bias"] = sd["stem.bias"].clone()
    assert plan_load(Toy(), sd, keymap).unexpected == ["copy.stem.bias"]


def test_keymaps_register_once() -> None:
    keymap_for("st_mem")  # registers the built-in families
    assert {"st_mem", "ecgfounder", "hubert_ecg"} <= set(FAMILY_KEYMAPS)
    with pytest.raises(ValueError, match="registered twice"):
        register_keymap(KeyMap(family="st_mem"))


# -- generic path through the registry (families without a key map) ----------------------------------------


def _xresnet(**kw):
    if "xresnet1d50" not in list_models():
        pytest.skip("xresnet1d50 is not registered")
    return create_model("xresnet1d50", layers=(1, 1, 1, 1), widths=(8, 8, 8, 8), stem_widths=(8, 8, 8), **kw)


def test_own_encoder_checkpoint_roundtrip(tmp_path) -> None:
    src = _xresnet(num_classes=4)
    path = tmp_path / "encoder.pt"
    torch.save({"model": _sd(src, head=False)}, path)
    dst = _xresnet(num_classes=2)
    plan = load_pretrained(dst, "xresnet1d50", path)
    assert plan.head == "new"
    for k, v in src.state_dict().items():
        if not k.startswith("head."):
            assert torch.equal(dst.state_dict()[k], v), k


def test_head_loading_policy(tmp_path) -> None:
    src = _xresnet(num_classes=4, head_hidden=6)  # a head with BatchNorm buffers
    path = tmp_path / "full.pt"
    torch.save(src.state_dict(), path)
    dst = _xresnet(num_classes=4, head_hidden=6)
    assert load_pretrained(dst, "xresnet1d50", path).head == "loaded"
    assert all(torch.equal(dst.state_dict()[k], v) for k, v in src.state_dict().items())
    keep = _xresnet(num_classes=4)
    fresh = keep.head.weight.detach().clone()
    assert load_pretrained(keep, "xresnet1d50", path, load_head=False).head == "replaced"
    assert torch.equal(keep.head.weight, fresh)
    with pytest.raises(CheckpointError, match="no classifier head that fits"):
        load_pretrained(_xresnet(num_classes=3), "xresnet1d50", path, load_head=True)


def test_other_family_checkpoint_is_refused(tmp_path, compat) -> None:
    path = tmp_path / "ecgfounder.pth"
    sd = torch.load(compat / "ecgfounder" / "tiny_state_dict.pt", weights_only=True)
    torch.save({"state_dict": sd}, path)
    with pytest.raises(CheckpointError) as exc:
        load_pretrained(_xresnet(num_classes=2), "xresnet1d50", path)
    message = str(exc.value)
    assert (
        "does not fit model 'xresnet1d50'" in message
        and "unexpected keys (159): first_conv.conv.weight" in message
    )
    assert "missing keys" in message and "looks like a ecgfounder checkpoint" in message


def test_detect_checkpoint_finds_the_fitting_model(tmp_path) -> None:
    if "xresnet1d50" not in list_models():
        pytest.skip("xresnet1d50 is not registered")
    path = tmp_path / "x50.pt"
    torch.save({"state_dict": create_model("xresnet1d50", num_classes=5).state_dict()}, path)
    info = detect_checkpoint(path)
    assert info.format == "torch" and info.wrapper == "state_dict" and info.family is None
    assert info.model == "xresnet1d50" and info.fits == ["xresnet1d50"]
    assert info.plans["xresnet1d50"].head == "replaced"
