"""``ecgadapt demo`` end to end, test-sized: table, reuse on rerun, and the pretraining fallback."""

from pathlib import Path

import pytest

import ecgadapt.train.finetune as finetune
from ecgadapt.cli import main
from ecgadapt.demo import DEMO_MODEL, pretrained_encoder, run_demo
from ecgadapt.errors import ConfigError


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_demo_compares_literal_and_tuned_baselines_with_post_training_and_writes_the_report(
    tmp_path: Path, capsys
) -> None:
    text = run_demo(tmp_path / "demo", seeds=[0], n_records=120, budget_epochs=2, n_resamples=20)
    out = capsys.readouterr().out
    assert "task" in out and "superdiagnostic" in out and "bundled checkpoint" in out
    table = text.split("chosen on fold 9")[0]
    assert all(recipe in table for recipe in ("baseline_ft", "baseline_ft_tuned", "post_training"))
    assert "post_training - baseline_ft, paired by seed" in text
    assert "post_training - baseline_ft_tuned, paired by seed" in text
    assert (
        "chosen on fold 9, baseline_ft_tuned: lr=" in text and "chosen on fold 9, post_training: lr=" in text
    )
    report = tmp_path / "demo" / "results" / "report" / "report.html"
    assert f"report: {report}" in text and report.is_file()
    runs = sorted(p.name for p in (tmp_path / "demo" / "results" / "runs").iterdir())
    assert runs == [
        f"superdiagnostic__{DEMO_MODEL}__{r}__frac1__seed0"
        for r in ("baseline_ft", "baseline_ft_tuned", "post_training")
    ]
    again = run_demo(tmp_path / "demo", seeds=[0], n_records=120, budget_epochs=2, n_resamples=20)
    assert "0 runs trained" in capsys.readouterr().out
    assert again.split("report:")[0] == text.split("report:")[0]  # same table from the reused runs
    # the default demo (800 records) refuses to write over this folder's 120-record dataset
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 2
    assert "already holds a different synthetic dataset" in capsys.readouterr().err


def test_without_a_bundled_checkpoint_the_demo_pretrains_its_own(tmp_path: Path, monkeypatch) -> None:
    def no_bundled(name: str) -> Path:
        raise ConfigError(f"no bundled weights for model {name!r}")

    monkeypatch.setattr(finetune, "bundled_weights", no_bundled)
    weights, origin = pretrained_encoder(tmp_path, tmp_path / "cache", n_corpus=40, epochs=1)
    assert weights == tmp_path / "pretrain" / "encoder.safetensors" and weights.is_file()
    assert "short masked-ECG pretraining" in origin
    again, origin = pretrained_encoder(tmp_path, tmp_path / "cache", n_corpus=40, epochs=1)
    assert again == weights and "earlier demo run" in origin
