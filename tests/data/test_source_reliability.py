"""Issue 22 (data items) and issue 21 item 4: CinC and folder sources are fingerprinted, validated and prepared
as PTB-XL is: stale signal files rebuild the cache, a misread labels CSV is refused row by row, a full disk is
one message, a bad record is one message (its traceback only with --debug), and `data stats` / `prepare`
accept them."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.io import savemat
from wfdb_fixtures import digital, write_cinc, write_record

from ecgadapt.cli import main
from ecgadapt.data import cache as cache_mod
from ecgadapt.data.cache import load_or_prepare, prepare_cache
from ecgadapt.errors import DataError, WriteError

LABELS = ["NORM;SR", "IMI", "AFIB;CLBBB", "NDT", "NORM", "IMI;SR"]
SUPERDIAG = ["CD", "HYP", "MI", "NORM", "STTC"]


def make_folder(root: Path, labels: list[str] = LABELS) -> Path:
    """Records rec0.. (10 s at 100 Hz) and ``labels.csv`` with one row per label set."""
    for i in range(len(labels)):
        write_record(root, f"rec{i}", digital(40 + i, 1000), 100)
    write_labels(root, [(f"rec{i}", lab) for i, lab in enumerate(labels)])
    return root


def write_labels(root: Path, rows: list[tuple[str, str]]) -> Path:
    csv = root / "labels.csv"
    csv.write_text("record,labels\n" + "".join(f"{rec},{lab}\n" for rec, lab in rows))
    return csv


def make_cinc(root: Path, n: int = 4) -> Path:
    for i in range(n):
        write_cinc(root, f"A{i:04d}", digital(60 + i, 1000), 100, "426783006" if i % 2 else "164889003")
    return root


def load(root: Path, tmp_path: Path, source: str = "folder", **kwargs):
    return load_or_prepare(root, 100, cache_dir=tmp_path / "cache", progress=False, source=source, **kwargs)


def set_header_line(base: Path, first_line: str) -> None:
    """Replace the record line (the first line) of ``<base>.hea``."""
    hea = Path(f"{base}.hea")
    lines = hea.read_text().splitlines()
    hea.write_text("\n".join([first_line, *lines[1:]]) + "\n")


# --- item 3: every signal file is fingerprinted ---------------------------------------------------------------


def test_overwritten_dat_of_a_folder_source_rebuilds_its_cache(tmp_path):
    root = make_folder(tmp_path / "f")
    before = np.asarray(load(root, tmp_path).signals).copy()
    dat = root / "rec2.dat"
    size = dat.stat().st_size
    dat.write_bytes(digital(99, 1000).astype("<i2").tobytes())  # noise of the same size
    assert dat.stat().st_size == size
    after = load(root, tmp_path)
    assert not np.array_equal(after.signals[2], before[2])
    np.testing.assert_allclose(after.signals[2], digital(99, 1000).T / 1000.0, rtol=1e-6)
    np.testing.assert_array_equal(after.signals[3], before[3])


def test_replaced_mat_files_of_a_cinc_source_rebuild_its_cache(tmp_path):
    root = make_cinc(tmp_path / "c")
    before = np.asarray(load(root, tmp_path, source="cinc").signals).copy()
    for i in (0, 3):  # new signals, the headers untouched
        savemat(root / f"A{i:04d}.mat", {"val": digital(90 + i, 1000).T.astype(np.int16)})
    after = load(root, tmp_path, source="cinc")
    np.testing.assert_allclose(after.signals[0], digital(90, 1000).T / 1000.0, rtol=1e-6)
    np.testing.assert_array_equal(after.signals[1], before[1])


def test_verify_finds_a_same_size_same_time_signal_change_of_a_source(tmp_path):
    root = make_folder(tmp_path / "f")
    path = prepare_cache(root, 100, cache_dir=tmp_path / "cache", progress=False, source="folder")
    records = json.loads((path / "records.json").read_text())
    assert {"rec0.hea", "rec0.dat"} <= set(records["stat"]) and "rec0.dat" in records["sha256"]
    dat = root / "rec1.dat"
    st = dat.stat()
    dat.write_bytes(digital(98, 1000).astype("<i2").tobytes())
    os.utime(dat, ns=(st.st_atime_ns, st.st_mtime_ns))  # only the content tells
    kwargs = dict(cache_dir=tmp_path / "cache", progress=False, source="folder")
    assert prepare_cache(root, 100, **kwargs) == path
    assert not np.allclose(load(root, tmp_path).signals[1], digital(98, 1000).T / 1000.0)  # not verified
    prepare_cache(root, 100, verify=True, **kwargs)
    np.testing.assert_allclose(load(root, tmp_path).signals[1], digital(98, 1000).T / 1000.0, rtol=1e-6)


# --- item 5: the labels CSV cannot be misread ----------------------------------------------------------------


def test_one_class_name_among_statement_codes_changes_no_other_row(tmp_path):
    root = make_folder(tmp_path / "f", [*LABELS, "MI"])
    y, classes = load(root, tmp_path).labels("superdiagnostic")
    assert classes == SUPERDIAG
    rows = [dict(zip(classes, r)) for r in y.tolist()]
    assert [sorted(c for c, v in r.items() if v) for r in rows] == [
        ["NORM"],
        ["MI"],
        ["CD"],
        ["STTC"],
        ["NORM"],
        ["MI"],
        ["MI"],
    ]


@pytest.mark.parametrize("alias", ["./rec0", "sub/../rec0", "rec0.hea", " rec0"])
def test_aliased_record_paths_are_refused_naming_both_rows(tmp_path, alias):
    root = make_folder(tmp_path / "f")
    (root / "sub").mkdir()
    write_labels(root, [(f"rec{i}", lab) for i, lab in enumerate(LABELS)] + [(alias, "NORM")])
    with pytest.raises(DataError, match=r"rows? 2 and 8.*rec0"):
        load(root, tmp_path)


def test_a_record_path_leaving_the_data_folder_is_refused(tmp_path):
    root = make_folder(tmp_path / "f")
    write_record(tmp_path, "outside", digital(7, 1000), 100)
    write_labels(root, [("rec0", "NORM"), ("../outside", "IMI")])
    with pytest.raises(DataError, match=r"row 3.*\.\./outside.*outside"):
        load(root, tmp_path)


def test_an_absolute_record_path_is_one_message(tmp_path):
    root = make_folder(tmp_path / "f")
    write_labels(root, [("rec0", "NORM"), (str(root / "rec1"), "IMI")])
    with pytest.raises(DataError, match=r"row 3.*absolute"):
        load(root, tmp_path)


@pytest.mark.parametrize(
    ("line", "what"),
    [
        ("rec3 12 nan 1000", "sampling frequency"),
        ("rec3 12 0 1000", "sampling frequency"),  # item 12: a rate of 0 names the record
        ("rec3 12 100 0", "0 samples"),
    ],
)
def test_headers_without_a_rate_or_samples_are_refused_naming_the_record(tmp_path, line, what):
    root = make_folder(tmp_path / "f")
    set_header_line(root / "rec3", line)
    with pytest.raises(DataError, match=rf"record rec3: .*{what}"):
        load(root, tmp_path)


# --- item 11: one message, not a traceback --------------------------------------------------------------------


def test_a_header_only_labels_csv_is_one_message(tmp_path):
    root = make_folder(tmp_path / "f")
    write_labels(root, [])
    with pytest.raises(DataError, match="lists no records"):
        load(root, tmp_path)


def _finetune_with_two_readers(root: Path, tmp_path: Path, *flags: str) -> subprocess.CompletedProcess:
    """``ecgadapt [flags] finetune --source folder`` with the cache read by two worker processes."""
    script = (
        "import sys\n"
        "from ecgadapt.data import cache\n"
        "cache._default_workers = lambda: 2\n"
        "from ecgadapt.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    args = [*flags, "finetune", "--data", str(root), "--source", "folder", "--task", "superdiagnostic"]
    args += ["--rate", "100", "--epochs", "1", "--weights", "none", "--out", str(tmp_path / "run")]
    args += ["--cache-dir", str(tmp_path / "cache")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, env=env)


def test_a_bad_record_read_by_workers_is_one_message(tmp_path):
    root = make_folder(tmp_path / "f", LABELS * 2)
    (root / "rec5.dat").write_bytes(b"\0" * 10)  # truncated
    done = _finetune_with_two_readers(root, tmp_path)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert "error: record rec5: signal file" in done.stderr
    assert "re-download PTB-XL" not in done.stderr and "leave the record out of the source" in done.stderr


def test_debug_shows_the_traceback_of_the_failing_worker(tmp_path):
    root = make_folder(tmp_path / "f", LABELS * 2)
    (root / "rec5.dat").write_bytes(b"\0" * 10)
    done = _finetune_with_two_readers(root, tmp_path, "--debug")
    assert done.returncode == 2
    assert "Traceback" in done.stderr and "in _fill" in done.stderr  # the worker's own frames
    assert done.stderr.rstrip().splitlines()[-1].startswith("ecgadapt: error: record rec5: signal file")


# --- item 8: a full disk is one message -----------------------------------------------------------------------


def test_a_source_cache_checks_free_space_first(tmp_path, monkeypatch, capsys):
    root = make_folder(tmp_path / "f")
    monkeypatch.setattr(cache_mod, "free_bytes", lambda path: 1000)
    rc = main(["prepare", "folder", "--root", str(root), "--rate", "100", "--cache", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert rc == 2 and "not enough disk space" in err and str(tmp_path / "c") in err
    assert "Traceback" not in err
    assert [p for p in (tmp_path / "c").rglob("*") if p.name.startswith(".")] == []


def test_a_full_disk_while_reserving_a_source_cache_is_one_message(tmp_path, monkeypatch):
    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    root = make_cinc(tmp_path / "c")
    monkeypatch.setattr(cache_mod.os, "posix_fallocate", no_space)
    with pytest.raises(WriteError, match="not enough disk space.*needs .* in "):
        load(root, tmp_path, source="cinc")
    assert [p for p in (tmp_path / "cache").rglob("*") if p.name.startswith(".")] == []


@pytest.fixture()
def small_disk(tmp_path):
    """A 512 kB tmpfs (skips where this process cannot mount one)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mnt)], capture_output=True
        )
    except OSError as err:
        pytest.skip(f"cannot run mount ({err})")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_real_small_disk_gives_one_message_through_the_api_and_the_cli(tmp_path, small_disk, capsys):
    root = make_folder(tmp_path / "f", LABELS * 4)  # 24 records: 1.2 MB of signals
    with pytest.raises(WriteError, match="not enough disk space"):
        load_or_prepare(root, 100, cache_dir=small_disk, progress=False, source="folder", workers=2)
    rc = main(["prepare", "folder", "--root", str(root), "--rate", "100", "--cache", str(small_disk)])
    err = capsys.readouterr().err
    assert rc == 2 and "not enough disk space" in err and "Traceback" not in err
    assert [p for p in small_disk.rglob("*") if p.is_file()] == []


# --- issue 21 item 4: data stats and prepare read CinC and folder sources --------------------------------------


def test_data_stats_reads_a_folder_source(tmp_path, capsys):
    root = make_folder(tmp_path / "f")
    csv = write_labels(root, [(f"rec{i}", lab) for i, lab in enumerate(LABELS)])
    args = ["data", "stats", "--root", str(root), "--source", "folder", "--labels", str(csv)]
    rc = main([*args, "--task", "superdiagnostic", "--json"])
    stats = json.loads(capsys.readouterr().out)
    assert rc == 0 and stats["source"] == "folder" and stats["classes"] == SUPERDIAG
    total = {c: sum(s["positives"][c] for s in stats["splits"].values()) for c in SUPERDIAG}
    assert total == {"CD": 1, "HYP": 0, "MI": 2, "NORM": 2, "STTC": 1}
    assert sum(s["records"] for s in stats["splits"].values()) == len(LABELS)


def test_data_stats_reads_a_cinc_source(tmp_path, capsys):
    root = make_cinc(tmp_path / "c")
    rc = main(["data", "stats", "--root", str(root), "--source", "cinc", "--task", "rhythm"])
    out = capsys.readouterr().out
    assert rc == 0 and "AFIB" in out and "re-download" not in out


@pytest.mark.parametrize("source", ["folder", "cinc"])
def test_prepare_reads_cinc_and_folder_sources(tmp_path, capsys, source):
    root = make_folder(tmp_path / "f") if source == "folder" else make_cinc(tmp_path / "c")
    rc = main(["prepare", source, "--root", str(root), "--rate", "100", "--cache", str(tmp_path / "k")])
    path = Path(capsys.readouterr().out.strip())
    assert rc == 0 and path.is_dir()
    assert load_or_prepare(root, 100, cache_dir=tmp_path / "k", progress=False, source=source).path == path
