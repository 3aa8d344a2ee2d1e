"""What ``ecgadapt evaluate`` prints: progress, intervals beside its macro figures, ECE before and after
temperature scaling, and a warning on classes too rare to average."""

from __future__ import annotations

from ecgadapt.cli import main


def test_evaluate_shows_its_progress(trained_run, capsys) -> None:
    assert main(["evaluate", str(trained_run), "--device", "cpu"]) == 0
    assert "scoring test" in capsys.readouterr().err
    assert main(["evaluate", str(trained_run), "--device", "cpu", "--no-progress"]) == 0
    assert "scoring test" not in capsys.readouterr().err


def test_evaluate_prints_intervals_ece_before_and_after_scaling_and_rare_classes(trained_run, capsys) -> None:
    import json

    assert main(["evaluate", str(trained_run), "--device", "cpu", "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    ci = m["bootstrap"]["macro_auroc"]
    assert (
        ci["low"] <= m["macro_auroc"] <= ci["high"] and m["bootstrap"]["macro_auprc"]["n_resamples"] == 1000
    )
    assert m["calibration"] == "global" and m["ece_raw"] != m["ece"]
    assert main(["evaluate", str(trained_run), "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"macro AUROC {m['macro_auroc']:.4f} [{ci['low']:.4f}, {ci['high']:.4f}]" in lines[0]
    assert "[95% bootstrap intervals over records, 1000 resamples]" in lines[1]
    assert lines[2].strip() == (
        f"ECE {m['ece_raw']:.4f} before temperature scaling, {m['ece']:.4f} after (global, fitted on the run's "
        "validation fold)"
    )
    rare = sorted((c["n_pos"], c["class"]) for c in m["per_class"] if 0 < c["n_pos"] < 5)
    assert rare  # the synthetic test fold is small
    assert "with fewer than 5 test positives: " + ", ".join(f"{c} ({n})" for n, c in rare) in lines[3]
