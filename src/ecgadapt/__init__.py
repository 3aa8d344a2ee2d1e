"""ecgadapt: adapt pretrained ECG foundation models to clinical classification tasks."""

__version__ = "0.1.0"

LEADS: tuple[str, ...] = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
