"""Locations of shared reference material and default folders."""

from __future__ import annotations

import os
from pathlib import Path


def shared_dir() -> Path:
    """The read-only shared folder (env ``ECGADAPT_SHARED``, default ``../shared``)."""
    return Path(os.environ.get("ECGADAPT_SHARED", "../shared")).expanduser()


def default_cache_dir() -> Path:
    """Default cache folder (env ``ECGADAPT_CACHE``, default ``~/.cache/ecgadapt``)."""
    return Path(os.environ.get("ECGADAPT_CACHE", Path.home() / ".cache" / "ecgadapt")).expanduser()
