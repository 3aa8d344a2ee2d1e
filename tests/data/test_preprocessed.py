"""Fixed preprocessing stored in the cache: bit-identical items, one variant per input spec, reuse and fallbacks."""

from __future__ import annotations

import json
import pickle
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from ecgadapt.constants import LEADS
from ecgadapt.data import preprocessed
from ecgadapt.data.cache import load_or_prepare
from ecgadapt.data.dataset import ECGDataset
from ecgadapt.data.preprocessed import (
    MANIFEST_FILE,
    PREPROCESSED_DIR,
    describe_steps,
    open_preprocessed,
    preprocessed_problem,
    variant_key,
    write_preprocessed,
)
from ecgadapt.data.synthetic import write_synthetic_ptbxl
from ecgadapt.data.transforms import Compose, RandomCrop, build_transforms
from ecgadapt.errors import WriteError
from ecgadapt.models.base import InputSpec

SPECS = {
    "resample_bandpass_lead": InputSpec(sampling_rate=250, length=2250),  # ST-MEM's: 500 Hz -> 250 Hz
    "native_global_leads": InputSpec(
        sampling_rate=500, length=1000, leads=("I", "II", "V1", "V5"), normalisation="global"
    ),
    "minmax_no_bandpass_flat": InputSpec(
        sampling_rate=100, length=250, normalisation="minmax", band_pass=None, flatten_leads=True
    ),
}


@pytest.fixture(scope="module")
def cache500(tmp_path_factory: pytest.TempPathFactory):
    """A 40-record synthetic PTB-XL prepared at 500 Hz, in its own cache folder."""
    root = write_synthetic_ptbxl(tmp_path_factory.mktemp("syn500"), n_records=40, seed=3, rates=(500,))
    return load_or_prepare(root, 500, cache_dir=tmp_path_factory.mktemp("cache"), workers=1, progress=False)


def _items(ds: ECGDataset, seed: int) -> list[np.ndarray]:
    """Every item of ``ds`` under a fixed torch seed (the random crops repeat)."""
    torch.manual_seed(seed)
    return [ds[i][0].numpy() for i in range(len(ds))]


@pytest.mark.parametrize("name", sorted(SPECS))
@pytest.mark.parametrize("train", [True, False])
def test_items_are_bit_identical_to_computing_the_steps(cache500, name: str, train: bool) -> None:
    windows = 1 if train else 3
    transform = build_transforms(SPECS[name], 500, train=train, n_eval_windows=windows)
    split = "train" if train else "test"
    plain = ECGDataset(cache500, "all", split, transform=transform, memo_mb=0)
    stored = ECGDataset(cache500, "all", split, transform=transform, cache_preprocessing=True)
    assert stored.preprocessing_stored and not plain.preprocessing_stored
    for seed in (0, 1, 7):  # several seeds: several crops of every record
        for a, b in zip(_items(plain, seed), _items(stored, seed), strict=True):
            assert a.dtype == b.dtype and a.shape == b.shape
            assert a.tobytes() == b.tobytes()
    assert not stored._memo, "a stored variant needs no memo"


def test_a_random_crop_reads_only_the_stored_rows(cache500) -> None:
    transform = build_transforms(SPECS["resample_bandpass_lead"], 500, train=True)
    ds = ECGDataset(cache500, "all", "train", transform=transform, cache_preprocessing=True)
    _, stored, rest = ds._stored
    assert stored.signals.shape == (len(cache500), 12, 2500) and str(stored.signals.dtype) == "float32"
    assert [type(t).__name__ for t in rest.transforms] == ["RandomCrop", "ToFloat32"]
    x = ds[0][0]
    x.zero_()
    assert np.asarray(stored.signals[ds.rows[0]]).any(), (
        "an item must never share memory with the stored rows"
    )


def test_each_input_spec_gets_its_own_variant_and_a_second_dataset_reuses_it(cache500) -> None:
    folders = set()
    for spec in SPECS.values():
        prefix, _ = build_transforms(spec, 500, train=True).split_deterministic()
        folders.add(write_preprocessed(cache500, prefix, workers=1, progress=False).path)
    assert len(folders) == len(SPECS)
    assert folders <= set((cache500.path / PREPROCESSED_DIR).iterdir())
    prefix, _ = build_transforms(SPECS["native_global_leads"], 500, train=False).split_deterministic()
    found = open_preprocessed(cache500, prefix)  # the eval transform has the same fixed steps as training's
    assert found is not None and found.path in folders
    manifest_before = (found.path / MANIFEST_FILE).read_text()
    again = write_preprocessed(cache500, prefix, workers=1, progress=False)
    assert again.path == found.path and (found.path / MANIFEST_FILE).read_text() == manifest_before


def test_the_key_names_the_steps_their_parameters_and_the_libraries(cache500) -> None:
    prefix, _ = build_transforms(SPECS["resample_bandpass_lead"], 500, train=True).split_deterministic()
    steps = describe_steps(prefix)
    assert steps == [
        {"step": "Resample", "src_rate": 500, "dst_rate": 250},
        {"step": "BandPass", "rate": 250, "low": 0.67, "high": 40.0, "order": 4},
        {"step": "Standardize", "mode": "lead", "eps": 1e-06},
    ]
    key = variant_key(steps)
    assert {"numpy", "scipy", "format_version"} <= set(key)
    stored = write_preprocessed(cache500, prefix, workers=1, progress=False)
    assert json.loads((stored.path / MANIFEST_FILE).read_text())["key"] == key
    other = dict(key, scipy="0.0.0")
    assert preprocessed_problem(stored.path, cache500, other) == "stored for other steps or library versions"


def test_parallel_and_serial_builds_store_the_same_bytes(cache500, tmp_path: Path) -> None:
    prefix, _ = build_transforms(SPECS["resample_bandpass_lead"], 500, train=True).split_deterministic()
    serial = write_preprocessed(cache500, prefix, workers=1, progress=False)
    reference = np.array(serial.signals)
    import shutil

    shutil.rmtree(serial.path)
    parallel = write_preprocessed(cache500, prefix, workers=2, progress=False)
    assert parallel.path == serial.path
    assert np.array(parallel.signals).tobytes() == reference.tobytes()


def test_a_second_writer_waits_for_the_first_and_reuses_its_variant(cache500, capsys) -> None:
    spec = InputSpec(sampling_rate=200, length=1000)  # a variant no other test stored
    prefix, _ = build_transforms(spec, 500, train=True).split_deterministic()
    target = preprocessed.preprocessed_path(cache500, variant_key(describe_steps(prefix)))
    target.parent.mkdir(exist_ok=True)
    found: list = []
    with preprocessed.building(target):  # another process is storing it
        waiter = threading.Thread(
            target=lambda: found.append(write_preprocessed(cache500, prefix, workers=1))
        )
        waiter.start()
        waiter.join(timeout=1.0)
        assert waiter.is_alive() and not found, "the second writer waits"
        stored = preprocessed._store(
            cache500, prefix, describe_steps(prefix), variant_key(describe_steps(prefix)), target, 1, False
        )
    waiter.join(timeout=30)
    assert found and found[0].path == stored.path
    assert capsys.readouterr().err.count("storing the fixed preprocessing") == 1, "stored once"


def test_a_rebuilt_cache_is_not_served_an_old_variant(cache500) -> None:
    prefix, _ = build_transforms(SPECS["resample_bandpass_lead"], 500, train=True).split_deterministic()
    stored = write_preprocessed(cache500, prefix, workers=1, progress=False)
    key = variant_key(describe_steps(prefix))
    manifest = json.loads((stored.path / MANIFEST_FILE).read_text())
    manifest["base"]["created"] = "1999-01-01T00:00:00"
    (stored.path / MANIFEST_FILE).write_text(json.dumps(manifest))
    assert preprocessed_problem(stored.path, cache500, key) == "stored from another build of the cache"
    assert open_preprocessed(cache500, prefix) is None
    rebuilt = write_preprocessed(cache500, prefix, workers=1, progress=False)
    assert preprocessed_problem(rebuilt.path, cache500, key) is None


def test_steps_that_cannot_be_keyed_are_never_stored(cache500) -> None:
    class Doubled:
        deterministic = True

        def __call__(self, x: np.ndarray) -> np.ndarray:
            return x * 2

    transform = Compose([Doubled(), RandomCrop(1000)])
    assert describe_steps(transform.split_deterministic()[0]) is None
    ds = ECGDataset(cache500, "all", "train", transform=transform, cache_preprocessing=True)
    assert not ds.preprocessing_stored
    torch.manual_seed(0)
    assert ds[0][0].shape == (len(LEADS), 1000)
    assert describe_steps(Compose([RandomCrop(10)]).split_deterministic()[0]) is None  # nothing fixed


def test_a_cache_that_cannot_take_the_variant_warns_and_falls_back_to_the_memo(cache500, monkeypatch) -> None:
    def full_disk(*args, **kwargs):
        raise WriteError("not enough disk space for the cache (simulated)")

    monkeypatch.setattr(preprocessed, "write_signals_folder", full_disk)
    transform = build_transforms(InputSpec(sampling_rate=125, length=1000), 500, train=True)
    with pytest.warns(UserWarning, match=r"cannot be stored in .* \(not enough disk space"):
        ds = ECGDataset(cache500, "all", "train", transform=transform, cache_preprocessing=True)
    assert not ds.preprocessing_stored
    plain = ECGDataset(cache500, "all", "train", transform=transform, memo_mb=0)
    for a, b in zip(_items(plain, 0), _items(ds, 0), strict=True):
        assert a.tobytes() == b.tobytes()
    assert ds._memo, "the fallback remembers the fixed steps as before"


def test_workers_reopen_the_stored_rows(cache500) -> None:
    transform = build_transforms(SPECS["resample_bandpass_lead"], 500, train=True)
    ds = ECGDataset(cache500, "all", "train", transform=transform, cache_preprocessing=True)
    ds[0]
    copy = pickle.loads(pickle.dumps(ds))
    assert copy._stored[1]._signals is None and copy.preprocessing_stored
    for a, b in zip(_items(ds, 5), _items(copy, 5), strict=True):
        assert a.tobytes() == b.tobytes()
