"""Constants every layer may import: the package version and the standard lead order."""

from __future__ import annotations

VERSION = "0.1.0"
"""The ecgadapt version (``ecgadapt.__version__``)."""

LEADS: tuple[str, ...] = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
"""The 12 standard leads in the order every signal array uses (``ecgadapt.LEADS``)."""
