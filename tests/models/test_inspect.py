"""``models list`` / ``models inspect``: the reports and their CLI commands."""

from __future__ import annotations

import pytest
import torch

from ecgadapt.cli import main
from ecgadapt.models import create_model, list_models
from ecgadapt.models.inspect import describe_checkpoint, describe_models, format_input_spec, model_rows


def test_model_rows_cover_the_foundation_models() -> None:
    rows = {r.name: r for r in model_rows()}
    assert rows["st_mem_vit_b75"].family == "st_mem" and rows["st_mem_vit_b75"].num_params == 85_150_614
    assert rows["ecgfounder_net1d"].family == "ecgfounder"
    # released 30,819,014 parameters minus the 150-class head and the unused BatchNorm weights and biases
    assert rows["ecgfounder_net1d"].num_params == 30_598_896
    assert format_input_spec(rows["hubert_ecg_small"].input_spec) == "12x500 @100Hz minmax bp0.05-47 flat"
    assert format_input_spec(rows["st_mem_vit_b75"].input_spec) == "12x2250 @250Hz global bp0.67-40"


def test_models_list_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["name", "family", "input", "params"]
    for name in list_models():
        assert name in out
    assert "85,150,614" in out
    assert describe_models().splitlines()[0] == out.splitlines()[0]


@pytest.fixture()
def pretrain_style_file(tmp_path, compat):
    """A tiny ST-MEM pre-training file: encoder under ``encoder.`` plus decoder keys, wrapped in ``model``."""
    sd = torch.load(compat / "st_mem" / "tiny_state_dict.pt", weights_only=True)
    full = {f"encoder.{k}": v for k, v in sd.items() if not k.startswith("head.")}
    full["mask_embedding"] = torch.zeros(1, 1, 8)
    full["decoder_blocks.0.attn.norm.weight"] = torch.ones(8)
    full["decoder_blocks.1.attn.norm.weight"] = torch.ones(8)
    path = tmp_path / "st_mem_full.pth"
    torch.save({"epoch": 1, "model": full, "optimizer": None}, path)
    return path


def test_inspect_reports_family_wrapper_and_closest_model(pretrain_style_file) -> None:
    report = describe_checkpoint(pretrain_style_file)
    assert "format:    torch, weights under 'model'" in report
    assert "other:     epoch, optimizer" in report
    assert "tensors:   49" in report
    assert "family:    st_mem" in report
    assert "fits:      no registered model with default settings" in report  # tiny widths
    assert "closest model: st_mem_vit_b75" in report
    assert "pre-training decoder: transformer blocks: 2 key(s) (decoder_blocks.0.attn.norm.weight, " in report
    assert "problem:   shape mismatch encoder.pos_embedding -> pos_embedding: file [1, 32, 64]" in report


def test_inspect_command_on_a_fitting_file(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    if "xresnet1d50" not in list_models():
        pytest.skip("xresnet1d50 is not registered")
    path = tmp_path / "x50.safetensors"
    from safetensors.torch import save_file

    sd = {
        k: v
        for k, v in create_model("xresnet1d50", num_classes=5).state_dict().items()
        if not k.startswith("head")
    }
    save_file(sd, str(path))
    assert main(["models", "inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "format:    safetensors, flat dict of tensors" in out
    assert "fits:      xresnet1d50" in out and "loads into: xresnet1d50" in out
    assert "head:      none in the file; create_model adds a new head" in out
    assert "missing:   none" in out


def test_inspect_command_on_a_missing_file(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "inspect", str(tmp_path / "nope.pt")]) == 2
    assert "checkpoint file not found" in capsys.readouterr().err


def test_models_list_without_transformers_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "transformers", None)
    rows = {r.name: r for r in model_rows()}
    assert rows["hubert_ecg_small"].num_params is None
    assert 'pip install "ecgadapt[hubert]"' in rows["hubert_ecg_small"].note
    assert rows["st_mem_vit_b75"].num_params == 85_150_614
    assert "hubert_ecg_base: HuBERT-ECG models need" in describe_models()


def test_inspect_does_not_call_a_file_with_nan_weights_a_fit(
    tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    if "xresnet1d50" not in list_models():
        pytest.skip("xresnet1d50 is not registered")
    from safetensors.torch import save_file

    sd = {
        k: v.clone()
        for k, v in create_model("xresnet1d50", num_classes=5).state_dict().items()
        if not k.startswith("head")
    }
    key = next(k for k, t in sd.items() if t.is_floating_point())
    sd[key].view(-1)[:3] = float("nan")
    path = tmp_path / "nan.safetensors"
    save_file(sd, str(path))
    assert main(["models", "inspect", str(path)]) == 2
    captured = capsys.readouterr()
    assert "fits:" not in captured.out and key in captured.err and "NaN or infinite" in captured.err
