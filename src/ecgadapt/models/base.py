"""The interface every ecgadapt backbone implements (timm style)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from ecgadapt.constants import LEADS
from ecgadapt.errors import ConfigError

Config = TypeVar("Config")


@dataclass(frozen=True)
class InputSpec:
    """What a model expects as input: rate, length, lead order and normalisation."""

    sampling_rate: int
    length: int
    leads: tuple[str, ...] = LEADS
    normalisation: str = (
        "lead"  # "lead": per-lead z-score; "global": one mean/std per record; "minmax"; "none"
    )
    band_pass: tuple[float, float] | None = (0.67, 40.0)
    flatten_leads: bool = False  # True for models that take leads concatenated into one 1-D sequence

    @property
    def num_leads(self) -> int:
        """Number of input leads."""
        return len(self.leads)

    def to_dict(self) -> dict:
        """Plain-data form for configs and checkpoints."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> InputSpec:
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        d["leads"] = tuple(d.get("leads", LEADS))
        if d.get("band_pass") is not None:
            d["band_pass"] = tuple(d["band_pass"])
        return cls(**d)


@dataclass
class ModelInfo:
    """Registry metadata of one model name."""

    name: str
    family: str
    input_spec: InputSpec
    description: str = ""
    checkpoint_formats: tuple[str, ...] = field(default_factory=tuple)


class ECGModel(nn.Module):
    """Base class: ``forward(x) = forward_head(forward_features(x))``.

    Subclasses set ``num_features``, ``input_spec`` and ``head_drop`` / ``head`` and implement
    :meth:`forward_features` returning pooled features of shape (B, num_features).
    """

    num_features: int
    input_spec: InputSpec
    num_classes: int
    head: nn.Module
    head_drop: nn.Module
    model_name: str | None = None  # the registered name it was built as (set by create_model)
    model_kwargs: dict[str, Any] | None = None  # the architecture overrides it was built with
    class_names: list[str] | None = None  # the head's classes, when known (a run's model carries them)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features of shape (B, num_features)."""
        raise NotImplementedError

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Dropout then the linear classifier (or the dropped-out features if ``pre_logits``)."""
        features = self.head_drop(features)
        return features if pre_logits else self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def save_pretrained(
        self, directory: str, *, class_names: list[str] | None = None, details: dict | None = None
    ) -> Path:
        """Write ``config.json``, ``model.safetensors`` and a model card ``README.md`` to ``directory`` (the
        Hugging Face Hub layout); ``create_model(pretrained=directory)`` loads it back, head included."""
        from ecgadapt.models.hub import save_pretrained

        return save_pretrained(self, directory, class_names=class_names, details=details)

    def get_classifier(self) -> nn.Module:
        """The classification head."""
        return self.head

    def head_parameter_names(self) -> list[str]:
        """State-dict names of the head's parameters (the only keys allowed missing when loading)."""
        return [f"head.{n}" for n, _ in self.head.named_parameters()]

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head with a freshly initialised ``Linear(num_features, num_classes)`` (Identity if 0)."""
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        if isinstance(self.head, nn.Linear):
            init_head(self.head)

    def no_weight_decay(self) -> set[str]:
        """Names of parameters that must not be weight-decayed beyond norms and biases (embeddings)."""
        return set()

    def num_layers(self) -> int:
        """Number of layer ids used for layer-wise LR decay (embeddings = 0, head = num_layers)."""
        raise NotImplementedError

    def layer_id(self, param_name: str) -> int:
        """Layer id of a parameter for layer-wise LR decay: 0 for the stem, ``num_layers()`` for the head."""
        raise NotImplementedError


def init_head(head: nn.Linear, std: float = 0.01) -> None:
    """Initialise a classification head: small normal weights, zero bias."""
    nn.init.normal_(head.weight, std=std)
    nn.init.zeros_(head.bias)


def config_with(defaults: Config, overrides: dict[str, Any], family: str) -> Config:
    """The dataclass ``defaults`` with ``overrides`` applied (lists become tuples where the default is a tuple).

    Unknown names raise a ConfigError naming ``family`` and listing the valid ones.
    """
    valid = {f.name for f in fields(defaults)}
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise ConfigError(
            f"{family}: unknown option(s) {', '.join(unknown)}; valid: {', '.join(sorted(valid))}"
        )
    tuples = {k: tuple(v) for k, v in overrides.items() if isinstance(getattr(defaults, k), tuple)}
    return replace(defaults, **{**overrides, **tuples})
