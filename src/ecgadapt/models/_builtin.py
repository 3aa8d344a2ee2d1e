"""Imports that register the built-in models (each module registers itself on import)."""
from ecgadapt.models import ecg_vit  # noqa: F401
from ecgadapt.models import xresnet1d  # noqa: F401
from ecgadapt.models import st_mem, ecgfounder, hubert_ecg  # noqa: F401
