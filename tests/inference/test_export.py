"""ecgadapt export: ONNX (run in onnxruntime) and TorchScript files equal PyTorch on real preprocessed records, and
FILE.json holds what reproduces predict."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

import ecgadapt
from ecgadapt.cli import main
from ecgadapt.data.ptbxl import read_record
from ecgadapt.data.transforms import build_transforms
from ecgadapt.errors import ConfigError
from ecgadapt.inference.export import run_exported, sidecar_path, write_onnx, write_torchscript

FORMATS = ["onnx", "torchscript"]


def _needs(fmt: str) -> None:
    """Skip an ONNX test where the optional ecgadapt[export] packages are absent."""
    if fmt == "onnx":
        for module in ("onnx", "onnxscript", "onnxruntime"):
            pytest.importorskip(module, reason='ONNX export needs pip install "ecgadapt[export]"')


def _records(root, n: int = 8) -> list[np.ndarray]:
    """The first ``n`` records (12, T) at 100 Hz of a PTB-XL-layout folder."""
    db = pd.read_csv(root / "ptbxl_database.csv", index_col="ecg_id")
    return [read_record(root / name) for name in db["filename_lr"].iloc[:n]]


@pytest.fixture(params=["synthetic", "ptbxl500"])
def real_records(request, synthetic_root) -> list[np.ndarray]:
    """Records of the synthetic demo data, and the real PTB-XL records of ptbxl-500 (skipped when absent)."""
    root = synthetic_root if request.param == "synthetic" else request.getfixturevalue("ptbxl500")
    return _records(root)


@pytest.fixture(scope="module", params=FORMATS)
def exported(request, trained_run, tmp_path_factory):
    """``(format, file, FILE.json)`` of the trained run, exported with the CLI."""
    _needs(request.param)
    out = tmp_path_factory.mktemp("export") / f"model.{request.param}"
    assert main(["export", str(trained_run), "--format", request.param, "--out", str(out)]) == 0
    return request.param, out, json.loads(sidecar_path(out).read_text())


def _windows(records: list[np.ndarray], spec) -> torch.Tensor:
    transform = build_transforms(spec, 100, train=False)
    return torch.from_numpy(np.stack([transform(x) for x in records]))


def test_the_exported_network_equals_pytorch_on_real_preprocessed_records(
    exported, trained_run, real_records
):
    fmt, out, _ = exported
    run = ecgadapt.load_run(trained_run)
    windows = _windows(real_records, run.model.input_spec)
    with torch.no_grad():
        expected = run.model(windows).numpy()
    got = run_exported(fmt, out, windows)
    assert got.shape == expected.shape == (len(real_records), len(run.classes))
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    np.testing.assert_allclose(run_exported(fmt, out, windows[:1]), expected[:1], atol=1e-4, rtol=0)


def test_the_sidecar_reproduces_predict(exported, trained_run, synthetic_root):
    fmt, out, side = exported
    run = ecgadapt.load_run(trained_run)
    assert side["format"] == fmt and side["file"] == out.name and side["class_names"] == run.classes
    assert side["input"] == {
        "name": "signal",
        "shape": ["N", 12, 1000],
        "dtype": "float32",
        "what": "preprocessed windows",
    }
    assert side["output"]["name"] == "logits" and side["output"]["shape"] == ["N", len(run.classes)]
    pre = side["preprocessing"]
    assert pre["sampling_rate"] == 100 and pre["normalisation"]["mode"] == "lead"
    assert pre["band_pass"]["low_hz"] == 0.67 and "sosfiltfilt" in pre["band_pass"]["filter"]
    assert side["windows"]["length"] == 1000 and side["windows"]["min_windows"] == 1
    assert side["calibration"]["temperatures"] == dict.fromkeys(run.classes, run.temperature)
    assert side["check"]["max_abs_diff_logits_vs_pytorch"] <= 1e-4
    # A deployment following FILE.json: 20 s records give 2 windows, their sigmoids averaged, then scaled.
    records = [np.concatenate([x, x[:, ::-1]], axis=1) for x in _records(synthetic_root, 3)]
    temps = np.array([side["calibration"]["temperatures"][c] for c in side["class_names"]])
    ours = []
    for x in records:
        windows = build_transforms(run.model.input_spec, 100, train=False, n_eval_windows=2)(x)
        p = (1 / (1 + np.exp(-run_exported(fmt, out, torch.from_numpy(windows)).astype(np.float64)))).mean(0)
        ours.append(1 / (1 + np.exp(-(np.log(p) - np.log1p(-p)) / temps)))
    expected = run.predict(records, rate=100)
    assert expected["windows"].tolist() == [2, 2, 2]
    np.testing.assert_allclose(np.array(ours), expected[run.classes].to_numpy(), atol=1e-4, rtol=0)


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_bundled_cnn_exports_with_batch_norm_in_eval_mode(fmt, tmp_path, synthetic_root):
    _needs(fmt)
    model = ecgadapt.create_model("xresnet1d_tiny", pretrained=True, num_classes=4).eval()
    windows = _windows(_records(synthetic_root, 6), model.input_spec)
    (write_onnx if fmt == "onnx" else write_torchscript)(model, windows[:2], tmp_path / "m")
    with torch.no_grad():
        expected = model(windows).numpy()
    np.testing.assert_allclose(run_exported(fmt, tmp_path / "m", windows), expected, atol=1e-4, rtol=0)


def test_unknown_format_and_missing_folder_are_refused(trained_run, tmp_path):
    from ecgadapt.inference.export import export_run

    with pytest.raises(ConfigError, match="unknown export format 'tflite'"):
        export_run(trained_run, "tflite", tmp_path / "m")
    with pytest.raises(ConfigError, match="does not exist; create it first"):
        export_run(trained_run, "torchscript", tmp_path / "missing" / "m.pt")
