"""Imports that register the built-in models (each module registers itself on import)."""

from ecgadapt.models import ecg_vit, ecgfounder, hubert_ecg, st_mem, xresnet1d

__all__ = ["ecg_vit", "ecgfounder", "hubert_ecg", "st_mem", "xresnet1d"]
