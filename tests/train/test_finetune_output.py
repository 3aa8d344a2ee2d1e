"""What ``finetune`` tells and records: the epoch's peak learning rate, the step floor's raise, the class counts
per split, and intervals beside its macro figures."""

from __future__ import annotations

import pandas as pd
import pytest

from ecgadapt.train.finetune import run_finetune


def test_the_epoch_line_and_metrics_csv_give_the_epochs_peak_learning_rate(make_cfg, capsys) -> None:
    run = run_finetune(make_cfg("linear_probe", "probe"))  # lr 1e-3, cosine over 2 epochs of 2 steps
    rows = pd.read_csv(run / "metrics.csv")
    assert rows["lr"].tolist() == pytest.approx([1e-3, 5e-4])  # each epoch's first step, not its last
    out = capsys.readouterr().out
    assert "[probe 1/2]" in out and "peak lr 1.00e-03" in out and "peak lr 5.00e-04" in out
