"""Shared fixtures: reference folders (skipped with a reason when absent) and a small synthetic PTB-XL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ecgadapt.paths import shared_dir
from ecgadapt.train.config import FinetuneConfig
from tiny_runs import tiny_config


@pytest.fixture(scope="session")
def shared() -> Path:
    """The shared reference folder; skips when it is absent."""
    path = shared_dir()
    if not path.is_dir():
        pytest.skip(f"shared reference folder not found at {path} (set ECGADAPT_SHARED)")
    return path


@pytest.fixture(scope="session")
def ptbxl500(shared: Path) -> Path:
    """The first 500 real PTB-XL records; skips when absent."""
    path = shared / "data" / "ptbxl-500"
    if not (path / "ptbxl_database.csv").is_file():
        pytest.skip(f"real PTB-XL subset not found at {path}")
    return path


@pytest.fixture(scope="session")
def ptbxl2285(shared: Path) -> Path:
    """2,285 real PTB-XL records at 100 Hz only, with their official folds; skips when absent."""
    path = shared / "data" / "ptbxl-2285"
    if not (path / "ptbxl_database.csv").is_file():
        pytest.skip(f"real PTB-XL set ptbxl-2285 not found at {path}")
    return path


@pytest.fixture(scope="session")
def compat(shared: Path) -> Path:
    """Checkpoint-compatibility reference vectors; skips when absent."""
    path = shared / "compat"
    if not path.is_dir():
        pytest.skip(f"compat reference vectors not found at {path}")
    return path


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic dataset in PTB-XL layout (120 records, seed 0), shared by the session."""
    from ecgadapt.data.synthetic import write_synthetic_ptbxl

    return write_synthetic_ptbxl(tmp_path_factory.mktemp("synthetic"), n_records=120, seed=0)


@pytest.fixture(scope="session")
def syn_cache_dir(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Cache folder holding the synthetic dataset prepared at 100 Hz."""
    from ecgadapt.data.cache import prepare_cache

    cache_dir = tmp_path_factory.mktemp("cache")
    prepare_cache(synthetic_root, 100, cache_dir=cache_dir, workers=1, progress=False)
    return cache_dir


@pytest.fixture
def make_cfg(synthetic_root: Path, syn_cache_dir: Path, tmp_path: Path) -> Callable[..., FinetuneConfig]:
    """``make_cfg(recipe, out_name, *overrides, model=..., kwargs=..., epochs=...)``: a test-sized config."""

    def make(recipe: str = "post_training", out: str = "run", *overrides: str, **kw) -> FinetuneConfig:
        return tiny_config(synthetic_root, syn_cache_dir, tmp_path / out, recipe, *overrides, **kw)

    return make


@pytest.fixture(scope="session")
def trained_run(synthetic_root: Path, syn_cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished lp_ft run (one epoch per stage) on the synthetic dataset; treat as read-only."""
    import torch

    from ecgadapt.train.finetune import run_finetune

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path_factory.mktemp("trained") / "run"
        return run_finetune(tiny_config(synthetic_root, syn_cache_dir, out, "lp_ft", epochs=1))
    finally:
        torch.set_num_threads(threads)


TORCH_TEST_FOLDERS = ("train", "engine", "bench", "inference")
"""Test folders whose tests train or score tiny models."""


@pytest.fixture(autouse=True)
def _one_torch_thread(request: pytest.FixtureRequest) -> Iterator[None]:
    """Tiny models run fastest (and without oversubscribing shared CPUs) on one thread."""
    if request.path.parent.name not in TORCH_TEST_FOLDERS:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
