"""Pretraining corpora: PTB-XL folders and caches, WFDB folders, generated deepfake ECGs."""

import json
import pickle
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from ecgadapt.data.ptbxl import read_record
from ecgadapt.errors import ConfigError, DataError
from ecgadapt.pretrain.corpus import generate_deepfake_corpus, open_corpus, twelve_from_eight


def test_twelve_from_eight_derives_the_limb_leads() -> None:
    rng = np.random.default_rng(0)
    eight = rng.normal(size=(3, 8, 50)).astype(np.float32)
    twelve = twelve_from_eight(eight)
    lead = {name: twelve[:, i] for i, name in enumerate(("I", "II", "III", "aVR", "aVL", "aVF"))}
    np.testing.assert_allclose(lead["I"], eight[:, 0])
    np.testing.assert_allclose(lead["II"], eight[:, 1])
    np.testing.assert_allclose(lead["III"], lead["II"] - lead["I"], atol=1e-6)  # Einthoven
    np.testing.assert_allclose(lead["aVR"] + lead["aVL"] + lead["aVF"], 0, atol=1e-5)  # Goldberger
    np.testing.assert_allclose(lead["aVL"], eight[:, 0] - eight[:, 1] / 2, atol=1e-6)
    np.testing.assert_allclose(twelve[:, 6:], eight[:, 2:])  # V1-V6 unchanged
    assert twelve.shape == (3, 12, 50) and twelve.dtype == np.float32


def test_ptbxl_folder_is_prepared_at_the_model_rate(synthetic_root: Path, tmp_path: Path) -> None:
    corpus = open_corpus(synthetic_root, rate=100, cache_dir=tmp_path, progress=False)
    assert (corpus.kind, corpus.rate, corpus.signals.shape) == ("ptbxl", 100, (120, 12, 1000))
    high = open_corpus(synthetic_root, rate=250, cache_dir=tmp_path, progress=False)
    assert high.rate == 500 and high.signals.shape == (120, 12, 5000)
    again = open_corpus(corpus.path, progress=False)  # the prepared cache folder itself
    assert again.kind == "ptbxl" and np.array_equal(again.signals[3], corpus.signals[3])


def test_wfdb_folder_is_read_once_into_a_corpus(synthetic_root: Path, tmp_path: Path) -> None:
    folder = synthetic_root / "records100"
    corpus = open_corpus(folder, cache_dir=tmp_path, progress=False)
    assert (corpus.kind, corpus.rate, corpus.signals.shape) == ("wfdb", 100, (120, 12, 1000))
    first = sorted(folder.rglob("*.hea"))[0].with_suffix("")
    np.testing.assert_array_equal(corpus.signals[0], read_record(first))
    manifest = corpus.path / "manifest.json"
    stamp = manifest.stat().st_mtime_ns
    assert open_corpus(folder, cache_dir=tmp_path, progress=False).path == corpus.path
    assert manifest.stat().st_mtime_ns == stamp  # reused, not rebuilt
    assert json.loads(manifest.read_text())["units"] == "mV"
    assert open_corpus(corpus.path, progress=False).kind == "wfdb"  # the corpus folder opens directly


def test_wfdb_corpus_is_rebuilt_when_the_records_change(synthetic_root: Path, tmp_path: Path) -> None:
    folder = tmp_path / "few"
    for hea in sorted((synthetic_root / "records100").rglob("*.hea"))[:3]:
        for f in hea.parent.glob(hea.stem + ".*"):
            folder.mkdir(exist_ok=True)
            shutil.copy(f, folder / f.name)
    corpus = open_corpus(folder, cache_dir=tmp_path / "cache", progress=False)
    assert corpus.signals.shape[0] == 3
    hea = sorted(folder.glob("*.hea"))[0]
    for f in hea.parent.glob(hea.stem + ".*"):
        f.unlink()
    rebuilt = open_corpus(folder, cache_dir=tmp_path / "cache", progress=False)
    assert rebuilt.path == corpus.path and rebuilt.signals.shape[0] == 2


def test_wfdb_folder_with_mixed_rates_is_an_error(synthetic_root: Path, tmp_path: Path) -> None:
    mixed = tmp_path / "mixed"
    for sub in ("records100", "records500"):
        src = sorted((synthetic_root / sub).rglob("*.hea"))[0]
        for f in src.parent.glob(src.stem + ".*"):
            (mixed / sub).mkdir(parents=True, exist_ok=True)
            shutil.copy(f, mixed / sub / f.name)
    with pytest.raises(DataError, match="mix sampling rates"):
        open_corpus(mixed, cache_dir=tmp_path / "cache", progress=False)


def test_missing_or_empty_sources_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        open_corpus(tmp_path / "nope", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no WFDB records"):
        open_corpus(tmp_path / "empty", cache_dir=tmp_path, progress=False)


def test_corpus_pickles_without_its_signals(synthetic_root: Path, tmp_path: Path) -> None:
    corpus = open_corpus(synthetic_root / "records100", cache_dir=tmp_path, progress=False)
    _ = corpus.signals[0]
    blob = pickle.dumps(corpus)
    assert len(blob) < 10_000
    assert np.array_equal(pickle.loads(blob).signals[5], corpus.signals[5])


def test_deepfake_generation_without_the_package_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "deepfakeecg", None)
    with pytest.raises(ConfigError, match=r"pip install 'ecgadapt\[deepfake\]'"):
        generate_deepfake_corpus(tmp_path / "fake", 2, progress=False)
    assert not (tmp_path / "fake").exists()


def test_deepfake_corpus_is_generated_seeded_and_reused(tmp_path: Path) -> None:
    pytest.importorskip("deepfakeecg", reason="optional extra ecgadapt[deepfake] not installed")
    path = generate_deepfake_corpus(tmp_path / "fake", 3, seed=1, rate=100, chunk_size=2, progress=False)
    corpus = open_corpus(path, progress=False)
    x = np.asarray(corpus.signals)
    assert (corpus.kind, corpus.rate, x.shape) == ("deepfake", 100, (3, 12, 1000))
    np.testing.assert_allclose(x[:, 2], x[:, 1] - x[:, 0], atol=1e-4)  # III = II - I survives resampling
    assert 0.02 < np.median(x.std(axis=-1)) < 1.0  # millivolt-sized, not microvolts
    assert not np.array_equal(x[0], x[1])
    again = generate_deepfake_corpus(tmp_path / "fake", 3, seed=1, rate=100, progress=False)
    assert again == path
    with pytest.raises(ConfigError, match="already exists"):
        generate_deepfake_corpus(tmp_path / "fake", 4, seed=1, rate=100, progress=False)
    other = generate_deepfake_corpus(tmp_path / "fake2", 3, seed=1, rate=100, chunk_size=3, progress=False)
    np.testing.assert_allclose(open_corpus(other, progress=False).signals[:], x, atol=1e-4)  # same noise
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary folders left behind


def test_deepfake_source_string_generates_into_the_cache(tmp_path: Path) -> None:
    pytest.importorskip("deepfakeecg", reason="optional extra ecgadapt[deepfake] not installed")
    corpus = open_corpus("deepfake:2:5", rate=100, cache_dir=tmp_path, progress=False)
    assert corpus.kind == "deepfake" and corpus.signals.shape == (2, 12, 1000)
    assert corpus.path.parent == tmp_path / "corpora"
