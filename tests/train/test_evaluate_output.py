"""What ``ecgadapt evaluate`` prints: progress, intervals beside its macro figures, ECE before and after
temperature scaling, and a warning on classes too rare to average."""

from __future__ import annotations

from ecgadapt.cli import main


def test_evaluate_shows_its_progress(trained_run, capsys) -> None:
    assert main(["evaluate", str(trained_run), "--device", "cpu"]) == 0
    assert "scoring test" in capsys.readouterr().err
    assert main(["evaluate", str(trained_run), "--device", "cpu", "--no-progress"]) == 0
    assert "scoring test" not in capsys.readouterr().err
