"""Shared fixtures: reference folders (skipped with a reason when absent) and a small synthetic PTB-XL."""

from __future__ import annotations

from pathlib import Path

import pytest

from ecgadapt.paths import shared_dir


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
