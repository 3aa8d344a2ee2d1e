"""ecgadapt.load_run: a finished run for notebooks, predicting arrays and files exactly as the CLI does."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import ecgadapt
from ecgadapt.cli import main
from ecgadapt.data.ptbxl import read_record
from ecgadapt.errors import DataError
from ecgadapt.eval.temperature import load_calibration


@pytest.fixture(scope="module")
def run(trained_run):
    return ecgadapt.load_run(trained_run)


@pytest.fixture(scope="module")
def record_base(trained_run, synthetic_root):
    """WFDB base path of the first test-fold record of the trained run."""
    db = pd.read_csv(synthetic_root / "ptbxl_database.csv", index_col="ecg_id")
    return synthetic_root / db[db["strat_fold"] == 10]["filename_lr"].iloc[0]


def test_load_run_holds_the_model_classes_config_and_temperature(run, trained_run):
    final = run.final
    assert run.classes == final["class_names"] and run.model.class_names == run.classes
    assert run.config.data.task == final["task"] and run.config.recipe.name == "lp_ft"
    assert not run.model.training and run.model.num_classes == len(run.classes)
    calibration = load_calibration(trained_run)
    assert run.calibration == calibration and run.temperature == calibration["temperatures"][0]


def test_run_predict_equals_the_cli_predict_output(run, trained_run, record_base, tmp_path, capsys):
    x = read_record(record_base)
    np.save(tmp_path / "rec.npy", np.stack([x, x[:, ::-1].copy()]))
    inputs = [str(record_base), str(tmp_path / "rec.npy")]
    assert main(["predict", "--run", str(trained_run), *inputs, "--rate", "100", "--device", "cpu"]) == 0
    cli_csv = capsys.readouterr().out
    df = run.predict(inputs, rate=100)
    assert df.to_csv(index=False) == cli_csv  # the same numbers, to the last digit
    assert df["record"].tolist() == [record_base.name, "rec[0]", "rec[1]"]


def test_arrays_are_predicted_like_the_same_npy_file(run, record_base, tmp_path):
    x = read_record(record_base)
    np.save(tmp_path / "one.npy", x)
    from_file = run.predict(tmp_path / "one.npy", rate=100)
    one = run.predict(x, rate=100)
    assert one["record"].tolist() == ["array"] and one["input"].tolist() == ["array"]
    np.testing.assert_array_equal(one[run.classes].to_numpy(), from_file[run.classes].to_numpy())
    batch = run.predict(np.stack([x, x]), rate=100)
    assert batch["record"].tolist() == ["array[0]", "array[1]"]
    np.testing.assert_array_equal(batch[run.classes].to_numpy()[1], one[run.classes].to_numpy()[0])
    listed = run.predict([x, x[:, :1000]], rate=100)
    assert listed["record"].tolist() == ["array0", "array1"]
    probs = listed[run.classes].to_numpy()
    assert probs.shape == (2, len(run.classes)) and ((probs > 0) & (probs < 1)).all()
    raw = run.predict(x, rate=100, uncalibrated=True)
    assert raw.attrs["calibration"] is None and one.attrs["calibration"] == "global"
    assert not np.allclose(raw[run.classes].to_numpy(), one[run.classes].to_numpy())


def test_an_array_without_a_rate_is_refused(run, record_base):
    with pytest.raises(DataError, match="sampling rate of array is unknown: pass rate=HZ"):
        run.predict(read_record(record_base))
    with pytest.raises(DataError, match=r"expected \(12, samples\)"):
        run.predict(np.zeros((2, 2, 12, 1000), np.float32), rate=100)


def test_run_save_pretrained_keeps_the_head_and_the_classes(run, tmp_path):
    folder = run.save_pretrained(tmp_path / "model")
    loaded = ecgadapt.create_model(pretrained=folder).eval()
    assert loaded.class_names == run.classes
    x = torch.randn(2, 12, 1000, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded(x), run.model(x))
    card = (folder / "README.md").read_text()
    assert "- task: superdiagnostic" in card and "- recipe: lp_ft" in card and "temperature scaling" in card
