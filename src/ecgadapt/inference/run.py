"""``ecgadapt.load_run(RUN)``: a finished run as one object for notebooks (model, classes, config, calibration).

:meth:`Run.predict` scores numpy arrays and files through the code path of ``ecgadapt predict``
(:func:`~ecgadapt.inference.predict.predict_records`), so both give the same numbers: the run's preprocessing
(resampling, band-pass, normalisation, windows covering the record, their probabilities averaged) and its
temperature scaling.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ecgadapt.engine.device import resolve_device
from ecgadapt.errors import DataError
from ecgadapt.eval.temperature import load_calibration, temperatures_for
from ecgadapt.inference.predict import array_records, check_rate_value, load_inputs, predict_records
from ecgadapt.models.base import ECGModel
from ecgadapt.runs.rundir import RunDir
from ecgadapt.train.config import FinetuneConfig
from ecgadapt.train.evaluate import load_run_config, load_run_model

Inputs = np.ndarray | str | os.PathLike | Sequence[np.ndarray | str | os.PathLike]
"""What :meth:`Run.predict` scores: an array (12, T) or (N, 12, T), a file path (WFDB record or ``.npy``), or a
list of those."""


@dataclass
class Run:
    """A finished fine-tuning run: its best model (eval mode), classes, config and temperature scaling."""

    path: Path
    model: ECGModel
    classes: list[str]
    config: FinetuneConfig
    calibration: dict | None  # calibration.json (None: the run's probabilities are used as they are)
    device: torch.device

    @property
    def temperature(self) -> float | dict[str, float] | None:
        """The temperature of ``global`` scaling, one per class (a dict) for ``per_class``, None without."""
        if self.calibration is None:
            return None
        temps = temperatures_for(self.calibration, self.classes)
        if self.calibration["mode"] == "global":
            return float(temps[0])
        return {c: float(t) for c, t in zip(self.classes, temps)}

    @property
    def final(self) -> dict:
        """The run's ``final.json`` (scores, budget, notes)."""
        return RunDir(self.path).read_final()

    def predict(
        self,
        inputs: Inputs,
        *,
        rate: float | None = None,
        eval_windows: int | None = None,
        batch_size: int = 64,
        uncalibrated: bool = False,
        calibration: str | None = None,
    ) -> pd.DataFrame:
        """Class probabilities, one row per record: columns ``record``, ``input``, ``windows`` and one per class
        (``df[run.classes].to_numpy()`` is the (N, C) array), exactly as ``ecgadapt predict`` writes them.

        ``rate`` is the sampling rate (Hz) of arrays and ``.npy`` files (WFDB records carry their own); it is
        never guessed. Arrays are named ``array`` (one record) or ``array[i]``; a list's i-th array
        ``array<i>``. Temperature scaling is applied unless ``uncalibrated``; ``calibration`` names an external
        site whose own temperatures to use instead (``ecgadapt calibrate RUN --data ... --name SITE``).
        """
        if rate is not None:
            rate = check_rate_value(rate, "rate")
        records = _records(inputs, rate, self.model.input_spec.sampling_rate)
        return predict_records(
            self.path,
            self.config,
            self.model,
            self.classes,
            records,
            device=self.device,
            eval_windows=eval_windows,
            batch_size=batch_size,
            uncalibrated=uncalibrated,
            calibration=calibration,
        )

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """The run's model with its head and classes as a ``save_pretrained`` folder; the card names the run."""
        final = self.final if RunDir(self.path).final.is_file() else {}
        test = final.get("test") or {}
        details: dict[str, Any] = {
            "task": self.config.data.task,
            "recipe": self.config.recipe.name,
            "seed": self.config.seed,
            "trained from": self.config.model.weights or "random initialisation",
            "test macro AUROC": test.get("macro_auroc"),
            "test macro AUPRC": test.get("macro_auprc"),
            "temperature scaling": self.temperature,
        }
        details = {k: v for k, v in details.items() if v is not None}
        return self.model.save_pretrained(directory, class_names=self.classes, details=details)


def _records(
    inputs: Inputs, rate: float | None, model_rate: int
) -> Iterator[tuple[str, str, np.ndarray, float]]:
    """``(record, input, signal, rate)`` of every record in ``inputs`` (arrays need ``rate``)."""
    if isinstance(inputs, (str, os.PathLike, np.ndarray)):
        items: list[Any] = [inputs]
        names = ["array"]
    else:
        items = list(inputs)
        names = [f"array{i}" for i in range(len(items))]
    if not items:
        raise DataError("no input given: pass an array (12, T) or (N, 12, T), or WFDB records or .npy files")
    for name, item in zip(names, items):
        if isinstance(item, np.ndarray):
            if rate is None:
                raise DataError(
                    f"the sampling rate of {name} is unknown: pass rate=HZ (e.g. rate=500); ecgadapt does not guess it"
                )
            for record, x, src_rate in array_records(name, item, rate, name):
                yield record, name, x, src_rate
        else:
            for record, x, src_rate in load_inputs(item, rate, model_rate):
                yield record, str(item), x, src_rate


def load_run(run_dir: str | os.PathLike, *, device: str = "cpu") -> Run:
    """The finished run in ``run_dir``: its best checkpoint's model on ``device`` (eval mode), with its classes,
    config and temperature scaling; ``run.predict(...)`` scores arrays or files."""
    path = Path(run_dir)
    config = load_run_config(path)
    dev = resolve_device(device)
    model, meta = load_run_model(path, dev)
    classes = [str(c) for c in meta["class_names"]]
    model.class_names = classes
    return Run(path, model, classes, config, load_calibration(path), dev)
