"""Pretraining corpora: unlabelled 12-lead ECGs as one memory-mapped (N, 12, T) float32 array in millivolts.

:func:`open_corpus` accepts

- a PTB-XL-layout folder (``ptbxl_database.csv``): prepared once through :func:`ecgadapt.data.cache.load_or_prepare`;
- a prepared PTB-XL cache or a corpus folder written here (``manifest.json`` + ``signals.npy``);
- any folder of WFDB records (``**/*.hea`` with the 12 standard leads; labels ignored): read once into a corpus
  folder under the cache directory by :func:`prepare_wfdb_corpus`;
- ``deepfake:N`` or ``deepfake:N:SEED``: N ECGs generated with the MIT-licensed ``deepfake-ecg`` package
  (optional extra ``ecgadapt[deepfake]``) by :func:`generate_deepfake_corpus`, cached the same way;
- ``npy:PATH[@RATE]`` or a path ending in ``.npy``: a preprocessed (records, 12, samples) array in LEADS order,
  checked and copied once into a corpus folder by :func:`prepare_npy_corpus`. The rate comes from ``@RATE`` or
  a ``<N>hz`` in the file name. Arrays that are already z-scored per lead (e.g. ``ptbxl-unlabelled-1785``) are
  recorded as ``normalisation: "lead"``; :func:`check_corpus_input` then refuses models that need millivolts.

Every corpus has an ``origin``: ``generated`` (deepfake-ecg), ``synthetic`` (ecgadapt's own generator) or
``real``; held-out losses are reported per origin.

Corpora of real PTB-XL records know each row's ``ecg_id``: PTB-XL folders and caches from their index, ``npy:``
arrays from an ``ecg_ids.csv`` beside the file (one ``ecg_id`` column, one row per array row, as in
``ptbxl-unlabelled-1785``). Their ``strat_fold``s come from their own database, or for arrays from a PTB-XL
folder named by :func:`ecgadapt.pretrain.folds.with_folds_from`. :func:`~ecgadapt.pretrain.folds.select_rows` then keeps the rows of some folds (``--corpus-folds
1-8``) and refuses a corpus that would include the evaluation folds 9 or 10 unless they are allowed.

Every corpus folder is built in a temporary folder beside its target and renamed into place when complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ecgadapt.constants import LEADS
from ecgadapt.data.cache import _swap_into_place  # the same atomic rename as the PTB-XL cache
from ecgadapt.errors import ConfigError, DataError
from ecgadapt.fileio import numpy_load_reason
from ecgadapt.paths import default_cache_dir
from ecgadapt.pretrain.deepfake import DEEPFAKE_RATE, DEEPFAKE_SCALE_MV, deepfake_fill

CORPUS_FORMAT = "ecgadapt-corpus"
CORPUS_FORMAT_VERSION = 1
SIGNALS_FILE = "signals.npy"
MANIFEST_FILE = "manifest.json"


@dataclass
class Corpus:
    """An opened corpus: ``signals`` (N, 12, T) float32 memmap in mV at ``rate`` Hz, leads in LEADS order."""

    name: str
    path: Path
    rate: int
    kind: str  # "ptbxl", "wfdb", "deepfake", "npy" or "corpus"
    origin: str = "real"  # "generated", "synthetic" or "real"
    normalisation: str = "none"  # "none": millivolts; "lead": already z-scored per lead (preprocessed arrays)
    ecg_ids: np.ndarray | None = field(
        default=None, repr=False
    )  # PTB-XL ecg_id per row (real PTB-XL records)
    folds: np.ndarray | None = field(default=None, repr=False)  # PTB-XL strat_fold per row (0: not listed)
    inside_ptbxl: Path | None = (
        None  # a WFDB folder inside this real PTB-XL folder: its records' folds unknown
    )
    _signals: np.ndarray | None = field(default=None, repr=False)

    @property
    def signals(self) -> np.ndarray:
        """Read-only memory map of the signals (opened lazily, also inside DataLoader workers)."""
        if self._signals is None:
            self._signals = np.load(self.path / SIGNALS_FILE, mmap_mode="r")
        return self._signals

    def __len__(self) -> int:
        return int(self.signals.shape[0])

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_signals"] = None  # never pickle the memory map's contents into workers
        return state


def _say(progress: bool, msg: str) -> None:
    if progress:
        print(f"ecgadapt: {msg}", file=sys.stderr)


def _is_current(target: Path, fingerprint: dict) -> bool:
    """Whether the corpus at ``target`` was built from the source with this ``fingerprint`` (an outdated or
    unreadable one is not: it is rebuilt)."""
    try:
        manifest = _read_corpus_manifest(target)
    except DataError:
        return False
    return manifest is not None and manifest.get("fingerprint") == fingerprint


def _read_corpus_manifest(path: Path) -> dict | None:
    """The manifest of a complete corpus folder written here, None if ``path`` is not one."""
    file = path / MANIFEST_FILE
    if not file.is_file():
        return None
    try:
        manifest = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != CORPUS_FORMAT:
        return None
    if manifest.get("complete") is not True or manifest.get("format_version") != CORPUS_FORMAT_VERSION:
        raise DataError(f"{path} is an incomplete or outdated corpus folder; delete it and build it again")
    return manifest


def _open_folder(path: Path, manifest: dict) -> Corpus:
    kind = manifest["kind"]
    origin = manifest.get("origin", "generated" if kind == "deepfake" else "real")
    source = Path(manifest["source"]) if manifest.get("source") else None
    corpus = Corpus(
        name=manifest.get("name", path.name),
        path=path,
        rate=int(manifest["rate"]),
        kind=kind,
        origin=origin,
        normalisation=manifest.get("normalisation", "none"),
        ecg_ids=read_ecg_ids(source, int(manifest["shape"][0]))
        if kind == "npy" and origin == "real"
        else None,
        inside_ptbxl=_enclosing_ptbxl(source) if kind == "wfdb" and origin == "real" else None,
    )
    if list(corpus.signals.shape) != list(manifest["shape"]):
        raise DataError(
            f"{path / SIGNALS_FILE} has shape {list(corpus.signals.shape)}, the manifest says {manifest['shape']}; "
            "delete the folder and build it again"
        )
    return corpus


def _build_corpus(target: Path, shape: tuple[int, int, int], manifest: dict, fill, progress: bool) -> Path:
    """Create ``signals.npy`` of ``shape``, let ``fill(memmap)`` write it, add the manifest, rename into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir()
    start = time.perf_counter()
    try:
        signals = np.lib.format.open_memmap(tmp / SIGNALS_FILE, mode="w+", dtype=np.float32, shape=shape)
        fill(signals)
        signals.flush()
        del signals
        manifest = {
            "format": CORPUS_FORMAT,
            "format_version": CORPUS_FORMAT_VERSION,
            "complete": True,
            "shape": list(shape),
            "dtype": "float32",
            "leads": list(LEADS),
            "units": "mV",
            "normalisation": "none",
            **manifest,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "seconds": round(time.perf_counter() - start, 3),
        }
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
        _swap_into_place(tmp, target)  # replaces a stale corpus there, if any
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _say(progress, f"wrote corpus {target} ({shape[0]} ECGs, {manifest['seconds']:.1f} s)")
    return target


def _corpus_dir(kind: str, key: str, cache_dir: str | os.PathLike | None) -> Path:
    base = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return base / "corpora" / f"{kind}-{key}"


def _folder_origin(root: Path) -> str:
    """``synthetic`` for a folder written by ecgadapt's synthetic generator (or a subfolder of one), else ``real``."""
    from ecgadapt.data.synthetic import MARKER_NAME

    return "synthetic" if any((p / MARKER_NAME).is_file() for p in (root, *root.parents[:2])) else "real"


def _enclosing_ptbxl(folder: Path | None) -> Path | None:
    """The PTB-XL folder (holding ``ptbxl_database.csv``) that ``folder`` lies in, up to two levels up."""
    from ecgadapt.data.ptbxl import DATABASE_CSV

    if folder is None:
        return None
    return next((p for p in (folder, *folder.parents[:2]) if (p / DATABASE_CSV).is_file()), None)


# -- WFDB folders ------------------------------------------------------------------------------------------


def _wfdb_fingerprint(headers: list[Path]) -> dict:
    digest = hashlib.sha256()
    for h in headers:
        st = h.stat()
        digest.update(f"{h}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return {"n_records": len(headers), "sha256": digest.hexdigest()}


def prepare_wfdb_corpus(
    root: str | os.PathLike, cache_dir: str | os.PathLike | None = None, progress: bool = True
) -> Path:
    """Read every WFDB record under ``root`` (12 standard leads, one sampling rate) into a corpus folder.

    Records are cut to the shortest record's length. A folder matching the records on disk is reused.
    """
    from tqdm.auto import tqdm

    from ecgadapt.data.ptbxl import read_header, read_record

    root = Path(root).expanduser().resolve()
    headers = sorted(root.rglob("*.hea"))
    if not headers:
        raise DataError(
            f"{root} holds no WFDB records (*.hea); pass a PTB-XL folder, a corpus folder or WFDB records"
        )
    fingerprint = _wfdb_fingerprint(headers)
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", root.name).strip("._") or "root"
    target = _corpus_dir("wfdb", f"{name}-{hashlib.sha256(str(root).encode()).hexdigest()[:10]}", cache_dir)
    if _is_current(target, fingerprint):
        _say(progress, f"reusing corpus {target}")
        return target
    infos = [read_header(h.with_suffix("")) for h in headers]
    rates = sorted({round(i.fs) for i in infos})
    if len(rates) != 1:
        by_rate = {r: next(h for h, i in zip(headers, infos) if round(i.fs) == r).name for r in rates}
        raise DataError(
            f"WFDB records under {root} mix sampling rates {rates} Hz (e.g. {by_rate}); "
            "pass one folder per rate as separate --corpus arguments"
        )
    length = min(i.sig_len for i in infos)

    def fill(signals: np.ndarray) -> None:
        for i, h in enumerate(tqdm(headers, desc=f"read {root.name}", disable=not progress, leave=False)):
            signals[i] = read_record(h.with_suffix(""))[:, :length]

    shape = (len(headers), len(LEADS), length)
    meta = {
        "name": root.name,
        "kind": "wfdb",
        "rate": rates[0],
        "source": str(root),
        "fingerprint": fingerprint,
        "origin": _folder_origin(root),
    }
    return _build_corpus(target, shape, meta, fill, progress)


# -- deepfake-ecg ------------------------------------------------------------------------------------------


def generate_deepfake_corpus(
    out_dir: str | os.PathLike,
    n: int,
    seed: int = 0,
    rate: int = DEEPFAKE_RATE,
    chunk_size: int = 32,
    device: str = "cpu",
    progress: bool = True,
) -> Path:
    """Generate ``n`` 10-s 12-lead ECGs with deepfake-ecg into corpus folder ``out_dir`` (mV, ``rate`` Hz).

    The generator makes leads I, II, V1-V6 at 500 Hz from seeded uniform noise, chunk by chunk; the four
    other limb leads are derived, and ``rate`` < 500 resamples with :class:`ecgadapt.data.transforms.Resample`.
    An existing complete folder with the same ``n``, ``seed`` and ``rate`` is reused; any other is an error.
    """
    if n < 1 or chunk_size < 1:
        raise ConfigError(
            f"need n >= 1 and chunk_size >= 1 to generate ECGs, got n={n}, chunk_size={chunk_size}"
        )
    out_dir = Path(out_dir).expanduser()
    wanted = {"n": int(n), "seed": int(seed), "rate": int(rate)}
    if out_dir.exists():
        manifest = _read_corpus_manifest(out_dir)
        made = {k: manifest.get("generator", {}).get(k) for k in wanted} if manifest else None
        if manifest is not None and manifest.get("kind") == "deepfake" and made == wanted:
            _say(progress, f"reusing generated corpus {out_dir}")
            return out_dir
        raise ConfigError(
            f"{out_dir} already exists and is not a deepfake corpus with n={n}, seed={seed}, rate={rate}; "
            "choose another folder or delete it"
        )
    length, fill = deepfake_fill(n, seed, rate, chunk_size, device, progress)

    meta = {
        "name": out_dir.name,
        "kind": "deepfake",
        "origin": "generated",
        "rate": int(rate),
        "source": "deepfake-ecg (Pulse2Pulse generator, MIT licence)",
        "generator": {**wanted, "chunk_size": int(chunk_size), "scale_mv": DEEPFAKE_SCALE_MV},
    }
    return _build_corpus(out_dir, (int(n), len(LEADS), length), meta, fill, progress)


# -- preprocessed arrays -----------------------------------------------------------------------------------

NPY_PREFIX = "npy:"
_CHUNK = 256  # records checked / copied at a time


def parse_npy_source(source: str | os.PathLike) -> tuple[Path, int | None] | None:
    """``(file, rate or None)`` for ``npy:PATH[@RATE]`` or a path ending in ``.npy``; None for other sources."""
    text = str(source)
    if text.startswith(NPY_PREFIX):
        text = text[len(NPY_PREFIX) :]
    elif not text.lower().endswith(".npy") and not re.search(r"\.npy@\d+$", text, re.IGNORECASE):
        return None
    match = re.fullmatch(r"(.+)@(\d+)", text)
    if match:
        return Path(match.group(1)).expanduser(), int(match.group(2))
    return Path(text).expanduser(), None


def _npy_rate(file: Path, rate: int | None) -> int:
    """The array's sampling rate: the explicit one, else a ``<N>hz`` in the file name."""
    if rate is not None:
        if rate < 1:
            raise ConfigError(f"sampling rate of {file} must be >= 1 Hz, got {rate}; pass npy:{file}@RATE")
        return rate
    match = re.search(r"(\d+)\s*hz", file.name, re.IGNORECASE)
    if match is None:
        raise ConfigError(
            f"cannot tell the sampling rate of {file} (no '<N>hz' in its name); pass it as npy:{file}@RATE, "
            f"e.g. npy:{file}@100"
        )
    return int(match.group(1))


def _open_npy(file: Path) -> np.ndarray:
    """The array in ``file`` as a read-only memory map, with one clear error for each way it can be unusable."""
    if not file.is_file():
        raise DataError(f"corpus array {file} not found; pass npy:PATH to an existing .npy file")
    try:
        array = np.load(file, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as err:
        raise DataError(
            f"{file} is not a readable .npy array ({numpy_load_reason(err)}); save it with numpy.save"
        ) from None
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "fiu":
        raise DataError(
            f"{file} holds {getattr(array, 'dtype', type(array))} values; save the signals as a float array"
        )
    if array.ndim != 3 or min(array.shape) < 1:
        raise DataError(
            f"{file} has shape {list(array.shape)}; a corpus array must be (records, {len(LEADS)} leads, samples): "
            "stack the records into one 3-D array and save it again"
        )
    if array.shape[1] != len(LEADS):
        hint = (
            "it looks like (records, samples, leads): save np.transpose(a, (0, 2, 1))"
            if array.shape[2] == len(LEADS)
            else "derive the missing leads (III = II - I, aVR, aVL, aVF from I and II; see twelve_from_eight) "
            "or drop records that lack leads, and save it again"
        )
        raise DataError(
            f"{file} has {array.shape[1]} leads (shape {list(array.shape)}); ecgadapt needs all {len(LEADS)} "
            f"standard leads in the order {', '.join(LEADS)}: {hint}"
        )
    return array


def _check_finite(file: Path, array: np.ndarray) -> None:
    """DataError naming the first records with NaN or infinite values, if any."""
    bad: list[int] = []
    for start in range(0, len(array), _CHUNK):
        chunk = np.asarray(array[start : start + _CHUNK], dtype=np.float32)
        bad.extend((start + np.flatnonzero(~np.isfinite(chunk).all(axis=(1, 2)))).tolist())
    if bad:
        raise DataError(
            f"{file} has NaN or infinite values in {len(bad)} record(s) (rows {bad[:5]}{' ...' if len(bad) > 5 else ''}); "
            "drop or repair those rows (e.g. a = a[np.isfinite(a).all(axis=(1, 2))]) and save it again"
        )


def detect_normalisation(array: np.ndarray, n: int = 200) -> str:
    """``"lead"`` when the first ``n`` records look z-scored per lead (mean ~0, std ~1), else ``"none"`` (mV)."""
    sample = np.asarray(array[:n], dtype=np.float64)
    mean = np.median(np.abs(sample.mean(axis=-1)))
    std = np.median(sample.std(axis=-1))
    return "lead" if mean < 0.1 and 0.8 < std < 1.2 else "none"


def prepare_npy_corpus(
    source: str | os.PathLike, cache_dir: str | os.PathLike | None = None, progress: bool = True
) -> Path:
    """Check a preprocessed array (``npy:PATH[@RATE]``) and copy it once, as float32, into a corpus folder.

    Wrong shapes, lead counts and non-finite values raise one :class:`DataError` naming the file and the fix.
    A folder matching the file on disk (path, size, modification time) is reused.
    """
    parsed = parse_npy_source(source)
    if parsed is None:
        raise ConfigError(f"{source} is not an array source; pass npy:PATH or a path ending in .npy")
    file, rate = parsed
    file = file.resolve()
    array = _open_npy(file)
    rate = _npy_rate(file, rate)
    st = file.stat()
    fingerprint = {"file": str(file), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "rate": rate}
    key = hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:10]
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", file.parent.name).strip("._") or "array"
    target = _corpus_dir("npy", f"{name}-{key}", cache_dir)
    if _is_current(target, fingerprint):
        _say(progress, f"reusing corpus {target}")
        return target
    _check_finite(file, array)
    normalisation = detect_normalisation(array)

    def fill(signals: np.ndarray) -> None:
        for start in range(0, len(array), _CHUNK):
            signals[start : start + _CHUNK] = array[start : start + _CHUNK]

    meta = {
        "name": file.parent.name,
        "kind": "npy",
        "origin": _folder_origin(file.parent),
        "rate": rate,
        "source": str(file),
        "fingerprint": fingerprint,
        "normalisation": normalisation,
        "units": "z-score per lead" if normalisation == "lead" else "mV",
    }
    return _build_corpus(target, tuple(int(d) for d in array.shape), meta, fill, progress)


def check_corpus_input(corpus: Corpus, input_spec, model: str) -> None:
    """ConfigError when ``corpus``'s records cannot be brought to ``input_spec``'s normalisation.

    Per-lead z-scored records fit models that normalise per lead (``lead``) or scale each lead (``minmax``),
    both invariant to the per-lead scale; ``global`` and ``none`` need the amplitudes in millivolts.
    """
    if corpus.normalisation == "lead" and input_spec.normalisation not in ("lead", "minmax"):
        raise ConfigError(
            f"corpus {corpus.name} ({corpus.path}) is already z-scored per lead, but {model} expects "
            f"normalisation {input_spec.normalisation!r}, which needs millivolts; pretrain a model whose input spec "
            "normalises per lead (e.g. ecg_vit_tiny or xresnet1d_tiny) or pass the records in mV"
        )


# -- dispatch ----------------------------------------------------------------------------------------------


def _ptbxl_rate(rate: int | None) -> int:
    """PTB-XL's stored rate closest above the wanted one (100 or 500 Hz)."""
    return 100 if rate is not None and rate <= 100 else 500


def _cache_corpus(cache) -> Corpus:
    """A prepared cache as a corpus; a real PTB-XL one with each row's ecg_id and strat_fold."""
    origin = _folder_origin(cache.root)
    ptbxl = origin == "real" and cache.manifest.get("source", "ptbxl") == "ptbxl"
    index = cache.index.sort_values("row")
    return Corpus(
        name=cache.root.name,
        path=cache.path,
        rate=cache.rate,
        kind="ptbxl",
        origin=origin,
        ecg_ids=index["ecg_id"].to_numpy(dtype=np.int64) if ptbxl else None,
        folds=index["strat_fold"].to_numpy(dtype=np.int64) if ptbxl else None,
    )


def open_corpus(
    source: str | os.PathLike,
    rate: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> Corpus:
    """Open (preparing or generating once if needed) the corpus ``source``; ``rate`` is the model's rate.

    ``rate`` picks PTB-XL's 100 Hz records for models at <= 100 Hz and its 500 Hz records otherwise, and the
    stored rate of generated ECGs.
    """
    text = str(source)
    match = re.fullmatch(r"deepfake:(\d+)(?::(\d+))?", text)
    if match:
        n, seed = int(match.group(1)), int(match.group(2) or 0)
        store = _ptbxl_rate(rate)
        path = _corpus_dir("deepfake", f"n{n}-seed{seed}-rate{store}", cache_dir)
        generate_deepfake_corpus(path, n, seed=seed, rate=store, progress=progress)
        return _open_folder(path, _read_corpus_manifest(path))
    if parse_npy_source(text) is not None:
        path = prepare_npy_corpus(text, cache_dir=cache_dir, progress=progress)
        return _open_folder(path, _read_corpus_manifest(path))
    path = Path(source).expanduser()
    if not path.is_dir():
        raise DataError(
            f"corpus {path} not found; pass a PTB-XL folder, a prepared cache, a folder of WFDB records, "
            "deepfake:N or npy:FILE.npy"
        )
    manifest = _read_corpus_manifest(path)
    if manifest is not None:
        return _open_folder(path, manifest)
    from ecgadapt.data.cache import MANIFEST_FILE as CACHE_MANIFEST
    from ecgadapt.data.cache import load_or_prepare, open_cache
    from ecgadapt.data.ptbxl import DATABASE_CSV

    if (path / CACHE_MANIFEST).is_file():
        return _cache_corpus(open_cache(path))
    if (path / DATABASE_CSV).is_file():
        return _cache_corpus(load_or_prepare(path, _ptbxl_rate(rate), cache_dir=cache_dir, progress=progress))
    target = prepare_wfdb_corpus(path, cache_dir=cache_dir, progress=progress)
    return _open_folder(target, _read_corpus_manifest(target))


# -- PTB-XL folds ------------------------------------------------------------------------------------------

IDS_FILE = "ecg_ids.csv"


def read_ecg_ids(array_file: Path | None, n_rows: int) -> np.ndarray | None:
    """PTB-XL ecg_ids of an array's rows from the ``ecg_ids.csv`` beside it; None when there is none."""
    if array_file is None or not (array_file.parent / IDS_FILE).is_file():
        return None
    import pandas as pd

    file = array_file.parent / IDS_FILE
    try:
        ids = pd.read_csv(file)["ecg_id"].to_numpy()
    except (ValueError, KeyError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise DataError(f"{file} is not a list of ecg_ids (one column 'ecg_id'): {err}") from None
    if len(ids) != n_rows or not np.issubdtype(ids.dtype, np.integer):
        raise DataError(
            f"{file} lists {len(ids)} ecg_ids ({ids.dtype}) but {array_file} has {n_rows} rows; it must give "
            "one integer ecg_id per row, in order, or be removed"
        )
    return ids.astype(np.int64)
