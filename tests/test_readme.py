"""The README's Python examples run as written (on a finished test run instead of the demo's)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.signal import resample_poly

import ecgadapt
from ecgadapt.data.ptbxl import read_record

README = Path(__file__).resolve().parents[1] / "README.md"


def python_block(heading: str) -> str:
    """The first ```python block after ``heading`` in the README."""
    text = README.read_text()
    after = text[text.index(f"\n{heading}\n") :]
    return re.search(r"```python\n(.*?)```", after, re.S).group(1)


def test_the_python_api_example_runs(trained_run, tmp_path, monkeypatch):
    code = python_block("### Python API")
    code, n = re.subn(r'RUN = ".*"', f"RUN = {str(trained_run)!r}", code)
    assert n == 1
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert scope["array"].shape == (2, len(scope["run"].classes))
    assert (tmp_path / "my-model" / "model.safetensors").is_file() and scope["same"].class_names == scope[
        "run"
    ].classes


def test_the_onnxruntime_example_reproduces_predict(trained_run, synthetic_root, tmp_path, monkeypatch):
    for module in ("onnx", "onnxscript", "onnxruntime"):
        pytest.importorskip(module, reason='ONNX export needs pip install "ecgadapt[export]"')
    monkeypatch.chdir(tmp_path)
    ecgadapt.export_run(trained_run, "onnx", "model.onnx")
    db = pd.read_csv(synthetic_root / "ptbxl_database.csv")
    record = resample_poly(read_record(synthetic_root / db["filename_lr"].iloc[0]), 5, 1, axis=-1)
    np.save("ecg.npy", record.astype(np.float32))
    scope: dict = {}
    exec(compile(python_block("### Export for deployment"), "README.md", "exec"), scope)
    run = ecgadapt.load_run(trained_run)
    expected = run.predict(np.load("ecg.npy"), rate=500)[run.classes].to_numpy()[0]
    np.testing.assert_allclose(scope["p_calibrated"], expected, atol=1e-4)
