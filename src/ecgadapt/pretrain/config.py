"""Pretraining configuration: :class:`PretrainConfig`, the model families' presets, and building it from flags."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ecgadapt.errors import ConfigError
from ecgadapt.models import model_info
from ecgadapt.runs.rundir import RunDir
from ecgadapt.train.config import parse_override

OBJECTIVES = {"ecg_vit": "masked-ecg", "xresnet1d": "masked-segment"}
"""Pretraining objective of each supported model family."""
PRESETS: dict[str, dict] = {
    "ecg_vit": {"mask_ratio": 0.75, "lr": 5e-4, "segment_size": 25},
    "xresnet1d": {"mask_ratio": 0.5, "lr": 3e-3, "segment_size": 25},
}
"""Per model family, the pretraining values a field left unset (None) takes: masked ECG modelling of a ViT
masks 75% of its patches; masked-segment reconstruction of a CNN masks 50% of 0.25 s segments at lr 3e-3, the
settings of the bundled ``xresnet1d_tiny`` (benchmarks/pretrain_bundled_cnn.sh)."""


@dataclass
class PretrainConfig:
    """Everything a pretraining run needs; written resolved to ``config.yaml``."""

    model: str = "ecg_vit_tiny"
    model_kwargs: dict = field(default_factory=dict)  # architecture overrides passed to create_model
    corpora: list[str] = field(
        default_factory=list
    )  # folders, "deepfake:N[:SEED]", "npy:FILE" (see open_corpus)
    corpus_weights: list[float] = field(
        default_factory=list
    )  # share of training draws per corpus (empty: by size)
    real_val: str | None = None  # a real held-out set (e.g. PTB-XL) to measure the domain gap on
    cache_dir: str | None = None  # where prepared/generated corpora go (default: the user cache)
    corpus_folds: list[int] | None = None  # keep only these PTB-XL strat_folds of corpora of PTB-XL records
    corpus_folds_from: str | None = None  # PTB-XL folder giving the folds of npy: arrays' ecg_ids
    allow_eval_folds: bool = False  # let corpora include PTB-XL folds 9 and 10 (validation and test)
    input_spec: dict | None = None  # resolved from the model: rate, length, normalisation, band-pass
    mask_ratio: float | None = None  # None: the model family's preset (PRESETS)
    decoder_width: int = 128
    decoder_depth: int = 2
    decoder_heads: int = 4
    norm_target: bool = True  # per-patch normalised reconstruction targets
    # masked-segment objective (xresnet1d): samples per masked (lead, segment) token; None: the preset
    segment_size: int | None = None
    drop_path_rate: float = 0.0
    epochs: int = 10
    steps_per_epoch: int | None = None  # cap on optimiser steps per epoch (None: one pass over the corpora)
    batch_size: int = 64
    lr: float | None = None  # None: the model family's preset (PRESETS)
    min_lr_ratio: float = 0.01
    warmup_epochs: float = 1.0
    weight_decay: float = 0.05
    grad_clip: float | None = 1.0
    val_fraction: float = 0.05  # share of each corpus held out for the validation loss
    max_val_samples: int = 1000  # cap on held-out samples per corpus and on the real set
    seed: int = 0
    num_workers: int = 0
    device: str = "auto"
    amp: bool = True  # bf16 autocast on CUDA (CPU stays float32)
    progress: bool = True

    def to_dict(self) -> dict:
        """Plain-data form (YAML-safe)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> PretrainConfig:
        """Build from plain data, naming any unknown key."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown pretraining config key(s): {', '.join(unknown)}")
        return cls(**d)

    def with_preset(self) -> PretrainConfig:
        """A copy whose unset (None) preset fields take the values of the model family's preset."""
        preset = PRESETS.get(model_info(self.model).family, {})
        return dataclasses.replace(self, **{k: v for k, v in preset.items() if getattr(self, k) is None})

    def validate(self) -> None:
        """Raise :class:`ConfigError` on a value that cannot work, naming the field."""
        if not self.corpora:
            raise ConfigError("no pretraining corpus: pass --corpus DIR (or deepfake:N) at least once")
        if self.corpus_weights and (
            len(self.corpus_weights) != len(self.corpora)
            or min(self.corpus_weights) < 0
            or sum(self.corpus_weights) <= 0
        ):
            raise ConfigError(
                f"corpus_weights {list(self.corpus_weights)} must give one weight >= 0 per corpus "
                f"({len(self.corpora)}: {', '.join(self.corpora)}), not all zero; pass --corpus-weight once per --corpus"
            )
        if model_info(self.model).family not in OBJECTIVES:
            raise ConfigError(
                f"pretraining supports the {' and '.join(OBJECTIVES)} models only, not {self.model!r}; "
                "use --model ecg_vit_tiny, ecg_vit_tiny_p50 or xresnet1d_tiny"
            )
        if self.corpus_folds is not None and (
            not self.corpus_folds or not set(self.corpus_folds) <= set(range(1, 11))
        ):
            raise ConfigError(f"corpus_folds must list PTB-XL folds 1-10, got {self.corpus_folds!r}")
        for key in ("epochs", "batch_size", "max_val_samples"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(self, key)!r}")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise ConfigError(f"steps_per_epoch must be >= 1 or null, got {self.steps_per_epoch!r}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction must lie in [0, 1), got {self.val_fraction!r}")
        if self.lr <= 0 or self.weight_decay < 0 or self.warmup_epochs < 0:
            raise ConfigError(
                f"need lr > 0, weight_decay >= 0, warmup_epochs >= 0; got {self.lr}, "
                f"{self.weight_decay}, {self.warmup_epochs}"
            )


def build_pretrain_config(
    out: str | Path, resume: bool = False, model_args: Sequence[str] = (), **flags: object
) -> PretrainConfig:
    """A config from command-line ``flags`` (None = not given) over the defaults, or over the run's own
    ``config.yaml`` when resuming; ``model_args`` are ``KEY=VALUE`` architecture overrides."""
    saved = Path(out) / RunDir.CONFIG
    base = yaml.safe_load(saved.read_text()) if resume and saved.is_file() else {}
    d = {**base, **{k: v for k, v in flags.items() if v is not None}}
    if model_args:
        kwargs = dict(d.get("model_kwargs") or {})
        for item in model_args:
            path, value = parse_override(item)
            kwargs[".".join(path)] = value
        d["model_kwargs"] = kwargs
    return PretrainConfig.from_dict(d)
