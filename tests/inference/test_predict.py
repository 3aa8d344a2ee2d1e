"""predict: WFDB records and .npy arrays (any rate and length) through a finished run's model."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.signal import resample_poly

from ecgadapt.cli import main
from ecgadapt.data.ptbxl import read_record
from ecgadapt.errors import DataError
from ecgadapt.eval.temperature import apply_temperature, calibrate_probs, load_calibration
from ecgadapt.inference.predict import predict
from ecgadapt.runs.rundir import load_predictions


@pytest.fixture(scope="module")
def test_record(trained_run, synthetic_root):
    """(ecg_id, WFDB base path, the run's stored test probabilities with its calibration applied) of the first
    test-fold record."""
    pred = load_predictions(trained_run / "predictions_test.npz")
    db = pd.read_csv(synthetic_root / "ptbxl_database.csv", index_col="ecg_id")
    ecg_id = int(pred["ecg_ids"][0])
    classes = list(pred["class_names"])
    expected, _ = calibrate_probs(trained_run, pred["y_score"][:1], classes)
    return ecg_id, synthetic_root / db.loc[ecg_id, "filename_lr"], expected[0], classes


def test_wfdb_record_matches_the_runs_test_predictions(trained_run, test_record):
    _, base, expected, classes = test_record
    df = predict(trained_run, [f"{base}.hea", base], device="cpu")
    assert list(df.columns) == ["record", "input", "windows", *classes]
    assert df["record"].tolist() == [base.name, base.name] and df["windows"].tolist() == [1, 1]
    np.testing.assert_allclose(df[classes].to_numpy(), np.stack([expected, expected]), atol=1e-6)


def test_npy_at_another_rate_and_length_is_resampled_and_windowed(trained_run, test_record, tmp_path):
    _, base, expected, classes = test_record
    x100 = read_record(base)
    x250 = resample_poly(x100.astype(np.float64), 5, 2, axis=-1).astype(np.float32)  # (12, 2500) at 250 Hz
    np.save(tmp_path / "rec250.npy", x250)
    df = predict(trained_run, [tmp_path / "rec250.npy"], rate=250, device="cpu")
    assert df["windows"].tolist() == [1]
    np.testing.assert_allclose(df[classes].to_numpy()[0], expected, atol=0.02)
    longer = np.concatenate([x100, x100], axis=1)  # 20 s at 100 Hz: two 10 s windows, averaged
    np.save(tmp_path / "long.npy", np.stack([longer, longer, longer]))
    df = predict(trained_run, [tmp_path / "long.npy"], rate=100, device="cpu")
    assert df["record"].tolist() == ["long[0]", "long[1]", "long[2]"] and set(df["windows"]) == {2}
    np.testing.assert_allclose(df[classes].to_numpy()[0], expected, atol=0.01)  # each window is the record


@pytest.mark.parametrize(
    "array, rate, match",
    [
        (np.zeros((6, 1000), np.float32), 100, "12 standard leads"),
        (np.full((12, 1000), np.nan, np.float32), 100, "NaN"),
        (np.zeros((12, 400), np.float32), 100, "shorter than the model's window"),
        (np.zeros((12, 3000), np.float32), 500, "need at least 5000 samples at 500 Hz"),
        (np.zeros((2, 2, 12, 1000), np.float32), 100, "expected \\(12, samples\\)"),
    ],
)
def test_bad_inputs_are_refused_with_a_clear_error(trained_run, tmp_path, array, rate, match):
    np.save(tmp_path / "bad.npy", array)
    with pytest.raises(DataError, match=match):
        predict(trained_run, [tmp_path / "bad.npy"], rate=rate, device="cpu")


def test_unknown_input_and_wfdb_rate_conflict(trained_run, test_record, tmp_path):
    _, base, _, _ = test_record
    with pytest.raises(DataError, match="neither a .npy array nor a WFDB record"):
        predict(trained_run, [tmp_path / "nothing"], device="cpu")
    with pytest.raises(DataError, match="contradicts the record's header"):
        predict(trained_run, [base], rate=500, device="cpu")


def test_cli_predict_json_to_file(trained_run, test_record, tmp_path, capsys):
    _, base, expected, classes = test_record
    out = tmp_path / "p.json"
    assert (
        main(
            [
                "predict",
                "--run",
                str(trained_run),
                str(base),
                "--format",
                "json",
                "--out",
                str(out),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    text = out.read_text()
    assert "\\/" not in text and f'"input": "{base}"' in text  # paths as written, "/" not escaped
    rows = json.loads(text)
    assert rows[0]["record"] == base.name
    assert [rows[0][c] for c in classes] == pytest.approx(expected.tolist(), abs=1e-6)
    assert main(["predict", "--run", str(trained_run), str(base), "--device", "cpu"]) == 0  # the old spelling
    assert capsys.readouterr().out.startswith("record,input,windows,")
    assert main(["predict", str(trained_run), str(base), str(base), "--device", "cpu"]) == 0  # RUN_DIR first
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("record,input,windows,") and len(lines) == 3


def test_predict_applies_the_runs_temperature_scaling_and_uncalibrated_gives_raw(
    trained_run, test_record, capsys
):
    _, base, _, classes = test_record
    calibration = load_calibration(trained_run)
    assert calibration["mode"] == "global" and calibration["temperatures"][0] != 1.0  # the default, fitted
    raw = load_predictions(trained_run / "predictions_test.npz")["y_score"][0]
    df = predict(trained_run, [base], device="cpu", uncalibrated=True)
    assert df.attrs["calibration"] is None
    np.testing.assert_allclose(df[classes].to_numpy()[0], raw, atol=1e-6)
    df = predict(trained_run, [base], device="cpu")
    assert df.attrs["calibration"] == "global"
    scaled = apply_temperature(raw, calibration["temperatures"])
    np.testing.assert_allclose(df[classes].to_numpy()[0], scaled, atol=1e-6)
    argv = [
        "predict",
        "--run",
        str(trained_run),
        str(base),
        "--device",
        "cpu",
        "--uncalibrated",
        "--format",
        "json",
    ]
    assert main(argv) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [rows[0][c] for c in classes] == pytest.approx(raw.tolist(), abs=1e-6)


def test_npy_without_rate_is_refused_not_guessed(trained_run, test_record, tmp_path, capsys):
    _, base, expected, classes = test_record
    np.save(tmp_path / "rec.npy", read_record(base))
    with pytest.raises(DataError, match="sampling rate of a .npy array is unknown; pass --rate"):
        predict(trained_run, [tmp_path / "rec.npy"], device="cpu")
    assert main(["predict", "--run", str(trained_run), str(tmp_path / "rec.npy"), "--device", "cpu"]) == 2
    assert "does not guess" in capsys.readouterr().err


def test_npy_rate_from_a_sidecar(trained_run, test_record, tmp_path):
    _, base, expected, classes = test_record
    np.save(tmp_path / "rec.npy", read_record(base))
    (tmp_path / "rec.json").write_text(json.dumps({"rate": 100}))
    df = predict(trained_run, [tmp_path / "rec.npy"], device="cpu")
    np.testing.assert_allclose(df[classes].to_numpy()[0], expected, atol=1e-6)
    with pytest.raises(DataError, match="contradicts its sidecar"):
        predict(trained_run, [tmp_path / "rec.npy"], rate=500, device="cpu")
    (tmp_path / "rec.json").write_text(json.dumps({"rate": -5}))
    with pytest.raises(DataError, match="not a usable sampling rate"):
        predict(trained_run, [tmp_path / "rec.npy"], device="cpu")


@pytest.mark.parametrize("rate", ["0", "-100", "nan", "inf", "1e-9"])
def test_unusable_rates_are_refused_with_one_message(trained_run, test_record, tmp_path, capsys, rate):
    _, base, _, _ = test_record
    np.save(tmp_path / "rec.npy", read_record(base))
    assert (
        main(
            [
                "predict",
                "--run",
                str(trained_run),
                str(tmp_path / "rec.npy"),
                "--rate",
                rate,
                "--device",
                "cpu",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert (
        f"--rate {float(rate)!r} is not a usable sampling rate" in err and len(err.strip().splitlines()) == 1
    )
