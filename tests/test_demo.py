"""``ecgadapt demo`` end to end, test-sized: table, reuse on rerun, and the pretraining fallback."""

from pathlib import Path

import pytest

import ecgadapt.train.finetune as finetune
from ecgadapt.cli import main
from ecgadapt.demo import pretrained_encoder, run_demo
from ecgadapt.errors import ConfigError


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_demo_prints_the_paired_table_and_reuses_finished_runs(tmp_path: Path, capsys) -> None:
    text = run_demo(tmp_path / "demo", seeds=[0], n_records=120, finetune_epochs=1)
    out = capsys.readouterr().out
    assert "task" in out and "superdiagnostic" in out and "bundled checkpoint" in out
    assert "baseline_ft" in text and "post_training" in text and "paired by seed" in text
    runs = sorted(p.name for p in (tmp_path / "demo" / "runs").iterdir())
    assert runs == ["baseline_ft__seed0", "post_training__seed0"]
    again = run_demo(tmp_path / "demo", seeds=[0], n_records=120, finetune_epochs=1)
    assert capsys.readouterr().out.count("finished earlier, reused") == 2
    assert again.split("runs:")[0] == text.split("runs:")[0]  # same table from the reused runs
    # the default demo (1000 records) refuses to write over this folder's 120-record dataset
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
