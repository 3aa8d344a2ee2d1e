"""Run directories and results folders: file names, creation rules, typed readers and writers, config hashes.

Torch-free: reading a finished run never imports torch.
"""

from ecgadapt.runs.creation import check_run_dir, prepare_run_dir
from ecgadapt.runs.hashing import (
    RESULT_FREE_FIELDS,
    changed_keys,
    check_resume_config,
    config_sha256,
    file_sha256,
    flat_config,
    run_inputs,
    saved_config_sha256,
    with_legacy_values,
)
from ecgadapt.runs.rundir import (
    ResultsDir,
    RunDir,
    load_predictions,
    read_cell,
    read_final,
    read_json,
)

__all__ = [
    "RESULT_FREE_FIELDS",
    "ResultsDir",
    "RunDir",
    "changed_keys",
    "check_resume_config",
    "check_run_dir",
    "config_sha256",
    "file_sha256",
    "flat_config",
    "load_predictions",
    "prepare_run_dir",
    "read_cell",
    "read_final",
    "read_json",
    "run_inputs",
    "saved_config_sha256",
    "with_legacy_values",
]
