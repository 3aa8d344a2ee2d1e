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
from ecgadapt.pretrain.corpus import generate_deepfake_corpus, open_corpus
from ecgadapt.pretrain.deepfake import twelve_from_eight


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


# -- preprocessed arrays (npy:PATH) ---------------------------------------------------------------------------


def _zscored(n: int = 6, leads: int = 12, t: int = 1000, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, leads, t))
    x = (x - x.mean(-1, keepdims=True)) / x.std(-1, keepdims=True)
    return x.astype(np.float16)


def test_npy_array_becomes_a_real_lead_normalised_corpus(tmp_path: Path) -> None:
    file = tmp_path / "arrays" / "signals_100hz.npy"
    file.parent.mkdir()
    np.save(file, _zscored())
    for source in (f"npy:{file}", str(file), f"npy:{file}@100"):
        corpus = open_corpus(source, rate=100, cache_dir=tmp_path / "cache", progress=False)
        assert (corpus.kind, corpus.origin, corpus.rate, corpus.normalisation) == ("npy", "real", 100, "lead")
        assert corpus.signals.dtype == np.float32 and corpus.signals.shape == (6, 12, 1000)
        np.testing.assert_array_equal(corpus.signals[2], np.load(file)[2].astype(np.float32))
    assert len(list((tmp_path / "cache" / "corpora").iterdir())) == 1  # converted once, then reused
    mv = tmp_path / "mv_500hz.npy"
    np.save(mv, (_zscored(t=500).astype(np.float32) * 0.3 + 0.5))
    assert open_corpus(mv, cache_dir=tmp_path / "cache", progress=False).normalisation == "none"


def test_npy_rate_comes_from_the_name_or_the_source(tmp_path: Path) -> None:
    file = tmp_path / "signals.npy"
    np.save(file, _zscored(n=2))
    with pytest.raises(ConfigError, match=r"npy:.*signals\.npy@RATE"):
        open_corpus(f"npy:{file}", cache_dir=tmp_path / "cache", progress=False)
    assert open_corpus(f"npy:{file}@250", cache_dir=tmp_path / "cache", progress=False).rate == 250


@pytest.mark.parametrize(
    ("array", "match"),
    [
        (np.zeros((4, 1000), np.float32), r"shape \[4, 1000\].*\(records, 12 leads, samples\)"),
        (np.zeros((4, 1000, 12), np.float32), r"has 1000 leads.*np\.transpose\(a, \(0, 2, 1\)\)"),
        (np.zeros((4, 8, 1000), np.float32), r"has 8 leads.*I, II, III.*derive the missing leads"),
    ],
    ids=["2-d", "transposed", "eight-leads"],
)
def test_npy_with_a_wrong_shape_or_lead_count_is_one_clear_error(
    tmp_path: Path, array: np.ndarray, match: str
) -> None:
    file = tmp_path / "bad_100hz.npy"
    np.save(file, array)
    with pytest.raises(DataError, match=match) as err:
        open_corpus(f"npy:{file}", cache_dir=tmp_path / "cache", progress=False)
    assert str(file) in str(err.value)
    assert not (tmp_path / "cache").exists()  # nothing written


def test_npy_with_nans_names_the_rows_and_writes_nothing(tmp_path: Path) -> None:
    x = _zscored(n=5)
    x[1, 3, 10] = np.nan
    x[4, 0, 0] = np.inf
    file = tmp_path / "nan_100hz.npy"
    np.save(file, x)
    with pytest.raises(
        DataError, match=r"NaN or infinite values in 2 record\(s\) \(rows \[1, 4\]\).*drop or repair"
    ) as err:
        open_corpus(file, cache_dir=tmp_path / "cache", progress=False)
    assert str(file) in str(err.value)
    assert not list((tmp_path / "cache" / "corpora").glob("*"))


def test_npy_that_is_missing_or_not_an_array_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        open_corpus(f"npy:{tmp_path / 'nope_100hz.npy'}", progress=False)
    junk = tmp_path / "junk_100hz.npy"
    junk.write_text("not an array")
    with pytest.raises(DataError, match=r"junk_100hz\.npy is not a readable \.npy array"):
        open_corpus(junk, cache_dir=tmp_path, progress=False)


def test_lead_normalised_corpus_refuses_a_model_that_needs_millivolts(tmp_path: Path) -> None:
    from ecgadapt.models import model_info
    from ecgadapt.pretrain.corpus import check_corpus_input

    file = tmp_path / "signals_100hz.npy"
    np.save(file, _zscored(n=2))
    corpus = open_corpus(file, cache_dir=tmp_path / "cache", progress=False)
    check_corpus_input(
        corpus, model_info("ecg_vit_tiny").input_spec, "ecg_vit_tiny"
    )  # per-lead z-score: fine
    with pytest.raises(ConfigError, match=r"already z-scored per lead.*'global'.*normalises per lead"):
        check_corpus_input(corpus, model_info("xresnet1d50").input_spec, "xresnet1d50")


def test_corpus_origin_tells_synthetic_from_real(synthetic_root: Path, tmp_path: Path) -> None:
    assert open_corpus(synthetic_root, rate=100, cache_dir=tmp_path, progress=False).origin == "synthetic"
    assert (
        open_corpus(synthetic_root / "records100", cache_dir=tmp_path, progress=False).origin == "synthetic"
    )


def test_the_shared_unlabelled_ptbxl_array_opens_as_real_lead_normalised(
    shared: Path, tmp_path: Path
) -> None:
    file = shared / "data" / "ptbxl-unlabelled-1785" / "signals_100hz.npy"
    if not file.is_file():
        pytest.skip(f"{file} not found")
    corpus = open_corpus(f"npy:{file}", rate=100, cache_dir=tmp_path, progress=False)
    assert (corpus.origin, corpus.rate, corpus.normalisation, corpus.signals.shape) == (
        "real",
        100,
        "lead",
        (1785, 12, 1000),
    )
