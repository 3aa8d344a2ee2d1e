"""PTB-XL folds of pretraining corpora: the fold filter, the evaluation-fold guard and the seen ecg_ids."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from safetensors import safe_open

from ecgadapt.cli import main
from ecgadapt.data.cache import load_or_prepare
from ecgadapt.data.synthetic import MARKER_NAME, write_synthetic_ptbxl
from ecgadapt.errors import ConfigError, DataError
from ecgadapt.pretrain.config import PretrainConfig, build_pretrain_config
from ecgadapt.pretrain.corpus import Corpus, open_corpus, read_ecg_ids
from ecgadapt.pretrain.folds import format_folds, parse_folds, select_rows, with_folds_from
from ecgadapt.pretrain.pretrain import run_pretrain
from ecgadapt.runs.hashing import file_sha256
from ecgadapt.train.config import DataConfig
from ecgadapt.train.finetune import pretraining_overlap

TINY_CNN = {"widths": [8, 8, 8, 8], "stem_widths": [8, 8, 8]}


@pytest.fixture(scope="module")
def ptbxl_like(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 40-record PTB-XL-layout folder at 100 Hz that counts as real PTB-XL (no synthetic marker)."""
    root = write_synthetic_ptbxl(
        tmp_path_factory.mktemp("real") / "ptbxl", n_records=40, seed=3, rates=(100,)
    )
    (root / MARKER_NAME).unlink()
    return root


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("corpora")


def _folds_of(root: Path) -> pd.Series:
    """strat_fold by ecg_id of a PTB-XL folder."""
    db = pd.read_csv(root / "ptbxl_database.csv")
    return pd.Series(db["strat_fold"].to_numpy(), index=db["ecg_id"].to_numpy())


def test_fold_lists_parse_and_print_as_ranges() -> None:
    assert parse_folds("1-8") == [1, 2, 3, 4, 5, 6, 7, 8]
    assert parse_folds("1,3, 5-7,3") == [1, 3, 5, 6, 7]
    assert format_folds([1, 2, 3, 5, 7, 8]) == "1-3,5,7-8"
    for bad, why in (
        ("1-11", "within PTB-XL's folds 1-10"),
        ("8-1", "within"),
        ("a", "not a fold"),
        ("", "not"),
    ):
        with pytest.raises(ConfigError, match=why):
            parse_folds(bad)


def test_a_ptbxl_corpus_is_filtered_and_guarded(ptbxl_like: Path, cache_dir: Path) -> None:
    corpus = open_corpus(ptbxl_like, rate=100, cache_dir=cache_dir, progress=False)
    folds = _folds_of(ptbxl_like)
    assert corpus.origin == "real" and list(corpus.ecg_ids) == sorted(folds.index)
    n_eval = {f: int((folds == f).sum()) for f in (9, 10)}
    with pytest.raises(ConfigError) as err:
        select_rows(corpus, None)
    message = str(err.value)
    assert f"{sum(n_eval.values())} records of the evaluation folds 9-10" in message
    assert f"fold 9: {n_eval[9]}, fold 10: {n_eval[10]}" in message
    assert "--corpus-folds 1-8" in message and "--allow-eval-folds" in message

    use = select_rows(corpus, parse_folds("1-8"))
    assert use.folds == list(range(1, 9)) and set(folds[use.ptbxl_ids]) <= set(range(1, 9))
    assert len(use.rows) == int((folds <= 8).sum()) and "folds 1-8 (filter 1-8)" in use.summary
    assert np.array_equal(corpus.ecg_ids[use.rows], use.ptbxl_ids)

    everything = select_rows(corpus, None, allow_eval_folds=True)
    assert len(everything.rows) == len(corpus) and "includes evaluation folds 9-10" in everything.summary
    only_fold_1 = dataclasses.replace(corpus, folds=np.ones(len(corpus), dtype=np.int64), _signals=None)
    with pytest.raises(DataError, match="holds no record of folds 9-10; its folds are 1"):
        select_rows(only_fold_1, [9, 10], allow_eval_folds=True)


def _array_with_ids(folder: Path, ids: list[int]) -> Path:
    """A lead-normalised (len(ids), 12, 1000) array with ecg_ids.csv beside it, as ptbxl-unlabelled-1785."""
    folder.mkdir(parents=True, exist_ok=True)
    x = np.random.default_rng(0).normal(size=(len(ids), 12, 1000))
    np.save(folder / "signals_100hz.npy", ((x - x.mean(-1, keepdims=True)) / x.std(-1, keepdims=True)))
    pd.DataFrame({"ecg_id": ids}).to_csv(folder / "ecg_ids.csv", index=False)
    return folder / "signals_100hz.npy"


def test_an_array_with_ecg_ids_takes_its_folds_from_a_database(
    ptbxl_like: Path, cache_dir: Path, tmp_path: Path
) -> None:
    folds = _folds_of(ptbxl_like)
    ids = [*folds.index[:20].tolist(), 99999]  # 99999: an ecg_id the database does not list
    file = _array_with_ids(tmp_path / "unlabelled", ids)
    corpus = open_corpus(f"npy:{file}", cache_dir=cache_dir, progress=False)
    assert list(corpus.ecg_ids) == ids and corpus.folds is None

    whole = select_rows(corpus, None)  # folds unknown: used whole, its ids still recorded
    assert len(whole.rows) == 21 and list(whole.ptbxl_ids) == ids and "folds unknown" in whole.summary
    with pytest.raises(ConfigError, match="--corpus-folds-from DIR"):
        select_rows(corpus, [1, 2, 3])

    placed = with_folds_from(corpus, ptbxl_like)
    assert placed.folds[-1] == 0 and list(placed.folds[:-1]) == folds[ids[:-1]].tolist()
    kept = select_rows(placed, parse_folds("1-8"))
    assert set(kept.ptbxl_ids) == {i for i in ids[:-1] if folds[i] <= 8}  # 99999's fold is unknown: left out
    assert {folds[i] for i in ids[:-1]} >= {9, 10}  # the fixture's first 20 records reach both folds
    with pytest.raises(ConfigError, match="evaluation folds 9-10"):
        select_rows(placed, None)
    assert "1 not listed in its fold database" in select_rows(placed, None, allow_eval_folds=True).summary

    (file.parent / "ecg_ids.csv").write_text("ecg_id\n1\n2\n")
    with pytest.raises(DataError, match="lists 2 ecg_ids .* has 21 rows"):
        read_ecg_ids(file, 21)


def test_corpora_without_ptbxl_records_are_used_whole_and_a_filter_needs_one_with(
    synthetic_root: Path, cache_dir: Path, tmp_path: Path
) -> None:
    synthetic = open_corpus(synthetic_root, rate=100, cache_dir=cache_dir, progress=False)
    use = select_rows(synthetic, [1, 2])
    assert len(use.rows) == len(synthetic) and len(use.ptbxl_ids) == 0 and "not PTB-XL's" in use.summary
    cfg = PretrainConfig(corpora=[str(synthetic_root)], corpus_folds=[1, 2], cache_dir=str(cache_dir))
    with pytest.raises(ConfigError, match="none of the corpora .* holds PTB-XL records"):
        run_pretrain(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_wfdb_folder_inside_a_ptbxl_folder_is_refused_unless_allowed(
    ptbxl_like: Path, cache_dir: Path
) -> None:
    corpus = open_corpus(ptbxl_like / "records100", cache_dir=cache_dir, progress=False)
    assert corpus.kind == "wfdb" and corpus.inside_ptbxl == ptbxl_like.resolve()
    with pytest.raises(ConfigError, match=f"pass --corpus {ptbxl_like.resolve()} with --corpus-folds 1-8"):
        select_rows(corpus, None)
    assert len(select_rows(corpus, None, allow_eval_folds=True).rows) == len(corpus)


def _records_seen(overlap: dict) -> dict:
    """The per-split counts of seen records in a ``pretraining_overlap`` (it also counts shared patients)."""
    return {split: overlap[split] for split in ("train", "val", "test")}


def test_an_encoder_pretrained_on_folds_1_to_8_saw_no_validation_or_test_record(
    ptbxl_like: Path, cache_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "pretrain",
        "--model",
        "xresnet1d_tiny",
        "--corpus",
        str(ptbxl_like),
        "--out",
        str(tmp_path / "run"),
    ]
    args += ["--epochs", "1", "--batch-size", "4", "--steps-per-epoch", "1", "--decoder-width", "16"]
    args += ["--cache-dir", str(cache_dir), "--no-progress"]
    args += [f"--model-arg={k}={v}" for k, v in TINY_CNN.items()]
    assert main(args) == 2  # no filter: folds 9 and 10 are refused, and nothing is written
    assert "--allow-eval-folds" in capsys.readouterr().err and not (tmp_path / "run").exists()

    assert main([*args, "--corpus-folds", "1-8"]) == 0
    assert "PTB-XL folds 1-8 (filter 1-8)" in capsys.readouterr().out
    run = tmp_path / "run"
    folds = _folds_of(ptbxl_like)
    train_ids = sorted(folds.index[folds <= 8].tolist())
    assert [int(i) for i in (run / "seen_ptbxl_ids.txt").read_text().split()] == train_ids
    with safe_open(run / "encoder.safetensors", "pt") as f:
        meta = f.metadata()
    assert json.loads(meta["seen_ptbxl_ids"]) == train_ids and json.loads(meta["corpus_folds"]) == list(
        range(1, 9)
    )
    final = json.loads((run / "final.json").read_text())
    assert final["corpora"][0]["ptbxl_folds"] == list(range(1, 9)) and final["corpora"][0]["n_used"] == len(
        train_ids
    )
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["corpus_folds"] == list(range(1, 9)) and saved["allow_eval_folds"] is False
    assert (saved["mask_ratio"], saved["segment_size"], saved["lr"]) == (0.5, 25, 3e-3)  # the CNN's preset

    encoder = run / "encoder.safetensors"
    cache = load_or_prepare(ptbxl_like, 100, cache_dir=cache_dir, progress=False)
    overlap = pretraining_overlap(cache, DataConfig(root=str(ptbxl_like)), file_sha256(encoder), encoder)
    assert _records_seen(overlap) == {"train": len(train_ids), "val": 0, "test": 0}

    assert (
        main([*args, "--force", "--allow-eval-folds"]) == 0
    )  # allowed: every record, and the overlap says so
    overlap = pretraining_overlap(cache, DataConfig(root=str(ptbxl_like)), file_sha256(encoder), encoder)
    assert _records_seen(overlap) == {
        "train": len(train_ids),
        "val": int((folds == 9).sum()),
        "test": int((folds == 10).sum()),
    }


def test_each_model_family_gets_its_preset_and_flags_override_it(tmp_path: Path) -> None:
    def resolved(**flags: object) -> tuple:
        cfg = build_pretrain_config(tmp_path / "out", **flags).with_preset()
        return cfg.mask_ratio, cfg.segment_size, cfg.lr

    assert resolved() == (0.75, 25, 5e-4)  # ecg_vit_tiny, the default model, as before
    assert resolved(model="ecg_vit_tiny_p50") == (0.75, 25, 5e-4)
    assert resolved(model="xresnet1d_tiny") == (0.5, 25, 3e-3)
    assert resolved(model="xresnet1d_tiny", mask_ratio=0.6, lr=1e-3, segment_size=50) == (0.6, 50, 1e-3)
    assert resolved(model="xresnet1d_tiny", lr=None) == (0.5, 25, 3e-3)  # an unset flag is None


def test_ptbxl_unlabelled_1785_placed_by_ptbxl_2285_keeps_folds_1_to_8(ptbxl2285: Path, shared: Path) -> None:
    file = shared / "data" / "ptbxl-unlabelled-1785" / "signals_100hz.npy"
    if not file.is_file():
        pytest.skip(f"{file} not found")
    signals = np.load(file, mmap_mode="r")
    corpus = Corpus(
        "ptbxl-unlabelled-1785", file.parent, 100, "npy", ecg_ids=read_ecg_ids(file, len(signals))
    )
    corpus._signals = signals  # the array itself: no copy into a corpus folder
    use = select_rows(with_folds_from(corpus, ptbxl2285), parse_folds("1-8"))
    folds = _folds_of(ptbxl2285)
    assert len(use.rows) == 1785 - 178 - 187 and use.folds == list(range(1, 9))
    assert not set(use.ptbxl_ids) & set(folds.index[folds >= 9])
