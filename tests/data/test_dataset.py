"""ECGDataset: items, dropped unlabelled records, splits, fractions, transforms and DataLoader use."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from wfdb_fixtures import make_root

from ecgadapt.data.cache import load_or_prepare
from ecgadapt.data.dataset import ECGDataset
from ecgadapt.data.splits import rotate_folds
from ecgadapt.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def real(ptbxl500: Path, tmp_path_factory: pytest.TempPathFactory):
    return load_or_prepare(ptbxl500, 100, cache_dir=tmp_path_factory.mktemp("cache"), progress=False)


def test_items_are_float_tensors_matching_cache_and_labels(real) -> None:
    ds = ECGDataset(real, "superdiagnostic", "test")
    assert len(ds) == 64 and ds.class_names == ["CD", "HYP", "MI", "NORM", "STTC"]
    assert ds.labels.shape == (64, 5) and ds.ecg_ids.shape == (64,) and ds.rows.shape == (64,)
    x, y = ds[3]
    assert x.dtype == torch.float32 and x.shape == (12, 1000)
    assert y.dtype == torch.float32 and y.shape == (5,)
    np.testing.assert_array_equal(x.numpy(), real.signals[ds.rows[3]])
    np.testing.assert_array_equal(y.numpy(), ds.labels[3])
    assert ds.ecg_ids[3] == real.index["ecg_id"].iloc[ds.rows[3]]


def test_record_9_normal_ecg_is_in_test_and_labelled_norm(real) -> None:
    ds = ECGDataset(real, "superdiagnostic", "test")
    i = int(np.flatnonzero(ds.ecg_ids == 9)[0])  # {'NORM': 100.0, 'SR': 0.0}, strat_fold 10
    assert ds[i][1].tolist() == [0.0, 0.0, 0.0, 1.0, 0.0]


def test_records_without_a_task_label_are_dropped(real) -> None:
    ds = ECGDataset(real, "form", "test")
    assert len(ds) == 16 and ds.labels.any(axis=1).all()
    assert 9 not in ds.ecg_ids  # record 9 has no form statement


def test_splits_partition_the_labelled_records(real) -> None:
    y, _ = real.labels("rhythm")
    labelled = set(real.index["ecg_id"][y.any(axis=1)].tolist())
    for k in (10, 3):
        test_fold, val_fold = rotate_folds(k)
        parts = [
            set(ECGDataset(real, "rhythm", s, test_fold=test_fold, val_fold=val_fold).ecg_ids)
            for s in ("train", "val", "test")
        ]
        assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
        assert parts[0] | parts[1] | parts[2] == labelled
    folds = real.index.set_index("ecg_id")["strat_fold"]
    assert set(folds[list(ECGDataset(real, "rhythm", "val", test_fold=3, val_fold=4).ecg_ids)]) == {4}


def test_fractions_are_nested_and_seeded(real) -> None:
    full = ECGDataset(real, "diagnostic", "train")
    ids = {
        f: set(ECGDataset(real, "diagnostic", "train", fraction=f, seed=2).ecg_ids) for f in (0.1, 0.25, 0.5)
    }
    assert len(ids[0.1]) == 35 and len(ids[0.5]) == 176
    assert ids[0.1] < ids[0.25] < ids[0.5] < set(full.ecg_ids)
    again = ECGDataset(real, "diagnostic", "train", fraction=0.25, seed=2)
    assert set(again.ecg_ids) == ids[0.25]
    assert set(ECGDataset(real, "diagnostic", "train", fraction=0.25, seed=3).ecg_ids) != ids[0.25]


def test_fraction_only_applies_to_train(real) -> None:
    with pytest.raises(ConfigError, match="training split only"):
        ECGDataset(real, "diagnostic", "val", fraction=0.5)


def test_transform_output_passes_through(real) -> None:
    crop = ECGDataset(real, "rhythm", "val", transform=lambda x: x[:, 100:350])
    assert crop[0][0].shape == (12, 250)
    windows = ECGDataset(
        real, "rhythm", "val", transform=lambda x: np.stack([x[:, :500], x[:, 500:]]).astype(np.float64)
    )
    x, _ = windows[0]
    assert x.shape == (2, 12, 500) and x.dtype == torch.float32


def test_dataloader_batches_in_worker_processes(real) -> None:
    ds = ECGDataset(real, "superdiagnostic", "val")
    assert len(pickle.dumps(ds)) < 200_000  # the memmap's contents are not shipped to workers
    x, y = next(iter(DataLoader(ds, batch_size=8, num_workers=1)))
    assert x.shape == (8, 12, 1000) and y.shape == (8, 5)
    np.testing.assert_array_equal(x[1].numpy(), real.signals[ds.rows[1]])


def test_accepts_a_cache_path(real) -> None:
    assert len(ECGDataset(real.path, "all", "val")) == 81


def test_empty_split_is_a_data_error(tmp_path: Path) -> None:
    root = make_root(tmp_path, n_records=3, folds=[1, 2, 3])
    c = load_or_prepare(root, 100, cache_dir=tmp_path / "c", workers=1, progress=False)
    assert len(ECGDataset(c, "all", "train")) == 3
    with pytest.raises(DataError, match=r"split 'val' \(strat_fold \[9\]\)"):
        ECGDataset(c, "all", "val")


def test_unknown_task_and_split(real) -> None:
    with pytest.raises(ConfigError, match="valid tasks"):
        ECGDataset(real, "superdiag", "train")
    with pytest.raises(ConfigError, match="valid splits"):
        ECGDataset(real, "all", "validation")


def test_fraction_that_leaves_a_class_without_positives_warns_naming_it(tmp_path: Path) -> None:
    cache = load_or_prepare(
        make_root(tmp_path, n_records=40), 100, cache_dir=tmp_path / "c", workers=1, progress=False
    )
    y_full = ECGDataset(cache, "superdiagnostic", "train").labels
    assert (y_full.sum(axis=0) > 0).all()  # every class has training positives in the whole split
    with pytest.warns(
        UserWarning, match=r"fraction=0.01 keeps 1 training records .* no positive of \d class\(es\)"
    ) as rec:
        ds = ECGDataset(cache, "superdiagnostic", "train", fraction=0.01)
    lost = [c for c, has in zip(ds.class_names, ds.labels.any(axis=0)) if not has]
    assert lost and all(c in str(rec[0].message) for c in lost)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ECGDataset(cache, "superdiagnostic", "train", fraction=1.0)


def test_remembered_deterministic_steps_give_bit_identical_items_and_respect_the_budget(real) -> None:
    from ecgadapt.data.transforms import BandPass, Compose, RandomCrop, Standardize, ToFloat32

    transform = Compose([BandPass(100), Standardize("lead"), RandomCrop(250), ToFloat32()])
    plain = ECGDataset(real, "superdiagnostic", "train", transform=transform, memo_mb=0)
    memo = ECGDataset(real, "superdiagnostic", "train", transform=transform)
    for epoch in range(2):  # the second epoch reads the memo
        torch.manual_seed(epoch)
        a = [plain[i][0] for i in range(8)]
        torch.manual_seed(epoch)
        b = [memo[i][0] for i in range(8)]
        assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert len(memo._memo) == 8 and memo._memo[memo.rows[0]].shape == (12, 1000)  # before the crop
    memo[0][0].zero_()
    assert memo._memo[memo.rows[0]].any(), "an item must never share memory with the memo"
    assert not pickle.loads(pickle.dumps(memo))._memo, "workers start with an empty memo"
    small = ECGDataset(
        real, "superdiagnostic", "train", transform=transform, memo_mb=0.1
    )  # 2 records of 48 kB
    [small[i] for i in range(5)]
    assert len(small._memo) == 2
    small.transform = Compose([Standardize("global"), ToFloat32()])
    assert torch.equal(
        small[0][0], torch.from_numpy(small.transform(np.asarray(real.signals[small.rows[0]])))
    )
    assert len(small._memo) == 1, "a new transform starts a new memo"
