"""Exceptions that carry one clear, user-facing message."""


class ECGAdaptError(Exception):
    """Base error: its message names the file or value at fault and the fix."""


class DataError(ECGAdaptError):
    """Bad or missing input data (records, CSVs, caches)."""


class CheckpointError(ECGAdaptError):
    """A checkpoint that does not fit the model it is loaded into."""


class ConfigError(ECGAdaptError):
    """An invalid configuration value or name."""


class WriteError(ECGAdaptError):
    """An output that cannot be written: a full disk, a read-only or forbidden folder."""
