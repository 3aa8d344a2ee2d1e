"""HuBERT-ECG (Coppola et al., 2024): a self-supervised HuBERT on 12 leads concatenated into one sequence.

Built on Hugging Face ``transformers``' ``HubertModel`` (optional extra: ``pip install "ecgadapt[hubert]"``), with
the released settings of github.com/Edoar-do/HuBERT-ECG (see ``../shared/compat/hubert_ecg/README.md``): a
5-layer conv feature encoder (512 channels, kernels 10,3,3,2,2, strides 4,2,2,2,2, no bias, GroupNorm on the
first layer), post-LN transformer (``do_stable_layer_norm=False``), 128-tap positional conv in 16 groups.

Sizes: ``hubert_ecg_small`` (512 wide, 8 layers), ``hubert_ecg_base`` (768, 12), ``hubert_ecg_large``
(960, 16). The backbone is the ``hubert_ecg`` attribute, so state-dict keys read ``hubert_ecg.<HF name>``.

Input: 12 leads x 500 samples at 100 Hz (5 s), per-lead min-max scaled to [-1, 1] after a 0.05-47 Hz
band-pass. ``input_spec.flatten_leads`` is True: the model consumes the leads concatenated lead after lead
into one 6000-sample sequence. :meth:`HubertECG.forward_features` does the flattening itself, so it takes
(B, 12, T) like every other model; the already-flat (B, 1, 12 * T) that ``data.transforms.FlattenLeads``
produces, or (B, 12 * T), are accepted as well. Upstream's
dataset decimates the flattened 500 Hz sequence; resampling each lead to 100 Hz is the per-lead equivalent.

Features: the mean of ``last_hidden_state`` over all frames (93 for 6000 samples).

Regularisation: ``drop_rate`` sets HF's ``hidden_dropout``, ``attention_dropout`` and ``activation_dropout``
(unless given as overrides) and the dropout before the head. ``drop_path_rate``: DropPath (stochastic depth,
per sample) is inserted on both residual branches of every encoder layer, after HF's own dropout on the
branch, with the usual linear per-layer schedule; HF's ``layerdrop`` (which skips whole layers for the whole
batch) is therefore 0 by default (override ``layerdrop`` to use it; it is off in eval mode either way).
SpecAugment masking is off (``mask_time_prob=0``), so the model has no ``masked_spec_embed``.

Checkpoints (family ``hubert_ecg``): the Hugging Face ``model.safetensors`` (flat HF names), the ``.pt`` dict
with ``model_state_dict`` (its pickled ``model_config`` object is read as an inert placeholder by
``checkpoint.read_checkpoint``), and fine-tuned wrapper files whose keys carry a ``hubert_ecg.`` prefix and a
``classifier.{weight,bias}`` head (mapped to ``head``). Both weight-norm spellings of the positional conv
(``parametrizations.weight.original0/1`` and ``weight_g/weight_v``) map to whichever this torch uses.
Ignored: ``masked_spec_embed``, ``final_proj.*`` and ``label_embedding.*`` (pre-training), and fine-tuned heads
other than a single linear layer (``classifier.0/2.*``).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from typing import Any

import torch
from torch import nn

from ecgadapt.constants import LEADS
from ecgadapt.errors import ConfigError, DataError, ECGAdaptError
from ecgadapt.models.base import ECGModel, InputSpec, ModelInfo
from ecgadapt.models.keymap import KeyMap, register_keymap
from ecgadapt.models.layers import DropPath, drop_path_schedule
from ecgadapt.models.registry import register_model

HUBERT_ECG_INPUT_SPEC = InputSpec(
    sampling_rate=100,
    length=500,
    leads=LEADS,
    normalisation="minmax",
    band_pass=(0.05, 47.0),
    flatten_leads=True,
)
"""Upstream preprocessing: 0.05-47 Hz band-pass, per-lead min-max to [-1, 1], 5 s at 100 Hz, leads concatenated."""

RELEASED_SETTINGS: dict[str, Any] = dict(
    conv_dim=[512] * 5,
    conv_kernel=[10, 3, 3, 2, 2],
    conv_stride=[4, 2, 2, 2, 2],
    conv_bias=False,
    feat_extract_norm="group",
    feat_extract_activation="gelu",
    do_stable_layer_norm=False,
    feat_proj_layer_norm=True,
    num_conv_pos_embeddings=128,
    num_conv_pos_embedding_groups=16,
    hidden_act="gelu",
    layer_norm_eps=1e-5,
    mask_time_prob=0.0,  # released 0.33 (pre-training SpecAugment); off for fine-tuning
    mask_time_length=1,
    mask_feature_prob=0.0,
    feat_proj_dropout=0.0,
    layerdrop=0.0,  # released 0.1 (small, base); replaced by DropPath
)
"""HubertConfig settings shared by the three released sizes (fine-tuning variants of masking/layerdrop)."""

SIZES: dict[str, dict[str, int]] = {
    "small": dict(hidden_size=512, num_hidden_layers=8, num_attention_heads=8, intermediate_size=2048),
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "large": dict(hidden_size=960, num_hidden_layers=16, num_attention_heads=12, intermediate_size=3840),
}
CLASSIFIER_PROJ_SIZE = {"small": 256, "base": 256, "large": 512}

PRETRAINING_ONLY = frozenset({"ensemble_length", "vocab_sizes"})
"""Upstream config fields that only shape pre-training heads (not built here); accepted and ignored."""

_INSTALL = 'HuBERT-ECG models need the optional dependency transformers>=4.40: pip install "ecgadapt[hubert]"'


def _transformers() -> Any:
    """The ``transformers`` module, or an ECGAdaptError saying how to install it."""
    try:
        import transformers
    except ImportError:
        raise ECGAdaptError(_INSTALL) from None
    return transformers


class HubertECG(ECGModel):
    """HuBERT-ECG backbone (HF ``HubertModel`` as ``hubert_ecg``) with a linear head on mean-pooled frames."""

    def __init__(
        self, config: dict[str, Any], *, num_classes: int, drop_rate: float = 0.0, drop_path_rate: float = 0.0
    ) -> None:
        super().__init__()
        transformers = _transformers()
        self.hubert_ecg = transformers.HubertModel(transformers.HubertConfig(**config))
        self.num_features = int(config["hidden_size"])
        self.depth = int(config["num_hidden_layers"])
        self.drop_rate = drop_rate
        self.input_spec = HUBERT_ECG_INPUT_SPEC
        self._add_drop_path(drop_path_rate)
        self.head_drop = nn.Dropout(drop_rate)
        self.reset_classifier(num_classes)

    def _add_drop_path(self, drop_path_rate: float) -> None:
        """Append DropPath to the dropout closing each residual branch (attention and feed-forward)."""
        for layer, rate in zip(
            self.hubert_ecg.encoder.layers, drop_path_schedule(drop_path_rate, self.depth)
        ):
            if not (hasattr(layer, "dropout") and hasattr(layer.feed_forward, "output_dropout")):
                raise ECGAdaptError(
                    "this transformers version's HubertEncoderLayer lacks dropout/feed_forward.output_dropout; "
                    'install a supported one: pip install "ecgadapt[hubert]"'
                )
            layer.dropout = nn.Sequential(layer.dropout, DropPath(rate))
            layer.feed_forward.output_dropout = nn.Sequential(
                layer.feed_forward.output_dropout, DropPath(rate)
            )

    def flatten(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 12, T) -> (B, 12 * T), lead after lead; already-flat (B, 1, 12 * T) or (B, 12 * T) pass through."""
        leads = self.input_spec.num_leads
        if x.ndim == 3 and x.shape[1] in (leads, 1):
            return x.reshape(x.shape[0], -1)
        if x.ndim == 2:
            return x
        raise DataError(
            f"hubert_ecg expects input of shape (batch, {leads}, samples), or flattened lead after lead "
            f"(batch, 1, {leads} * samples) / (batch, {leads} * samples); got {tuple(x.shape)}"
        )

    def forward_frames(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder output before pooling, (B, frames, hidden)."""
        return self.hubert_ecg(input_values=self.flatten(x)).last_hidden_state

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Mean of the encoder output over frames: (B, hidden)."""
        return self.forward_frames(x).mean(dim=1)

    def no_weight_decay(self) -> set[str]:
        """The SpecAugment mask vector, when the model has one."""
        return {"hubert_ecg.masked_spec_embed"} if hasattr(self.hubert_ecg, "masked_spec_embed") else set()

    def num_layers(self) -> int:
        """Feature encoder, projection and positional conv are layer 0, encoder layer i is i + 1, head last."""
        return self.depth + 1

    def layer_id(self, param_name: str) -> int:
        """Layer id of ``param_name`` for layer-wise LR decay."""
        m = re.match(r"hubert_ecg\.encoder\.layers\.(\d+)\.", param_name)
        if m:
            return int(m[1]) + 1
        if param_name.startswith("hubert_ecg."):
            return 0
        return self.num_layers()

    def drop_path_rates(self) -> list[float]:
        """DropPath rate of every encoder layer, in forward order."""
        return [layer.dropout[1].drop_prob for layer in self.hubert_ecg.encoder.layers]


# -- checkpoint key map ------------------------------------------------------------------------------------

_PREFIX = "hubert_ecg."
_WN_NEW = ("parametrizations.weight.original0", "parametrizations.weight.original1")
_WN_OLD = ("weight_g", "weight_v")
_POS_CONV = "encoder.pos_conv_embed.conv."


def _hubert_remap(file_keys: Iterable[str], model_keys: Collection[str]) -> dict[str, str]:
    """Add the ``hubert_ecg.`` prefix (kept if present), ``classifier.*`` -> ``head.*``, fix weight-norm names."""
    new_spelling = _PREFIX + _POS_CONV + _WN_NEW[0] in model_keys
    src, dst = (_WN_OLD, _WN_NEW) if new_spelling else (_WN_NEW, _WN_OLD)
    mapping: dict[str, str] = {}
    for key in file_keys:
        body = key.removeprefix(_PREFIX)
        if body in ("classifier.weight", "classifier.bias"):
            mapping[key] = "head." + body.removeprefix("classifier.")
            continue
        for old, new in zip(src, dst):
            if body == _POS_CONV + old:
                body = _POS_CONV + new
        mapping[key] = _PREFIX + body
    return mapping


_PRETRAINING = "pre-training only (HuBERT targets / SpecAugment)"
HUBERT_ECG_KEYMAP = register_keymap(
    KeyMap(
        family="hubert_ecg",
        remap=_hubert_remap,
        ignore={
            "masked_spec_embed": "SpecAugment mask vector (masking is off for fine-tuning)",
            "hubert_ecg.masked_spec_embed": "SpecAugment mask vector (masking is off for fine-tuning)",
            "final_proj.*": _PRETRAINING,
            "hubert_ecg.final_proj.*": _PRETRAINING,
            "label_embedding.*": _PRETRAINING,
            "hubert_ecg.label_embedding.*": _PRETRAINING,
            "classifier.*": "fine-tuned head other than one linear layer: the model gets a new head",
        },
        markers=(
            "feature_extractor.conv_layers.0.conv.weight",
            "hubert_ecg.feature_extractor.conv_layers.0.conv.weight",
        ),
        hints={
            "hubert_ecg.feature_projection.projection.weight": "hidden size: small 512, base 768, large 960",
        },
        description="HuBERT-ECG checkpoint (flat HF safetensors, or torch dict 'model_state_dict')",
    )
)


# -- registry ----------------------------------------------------------------------------------------------


def hubert_config(size: str, drop_rate: float = 0.0, **overrides: Any) -> dict[str, Any]:
    """HubertConfig arguments of a released size with ``overrides`` (any HubertConfig field) applied."""
    transformers = _transformers()
    config: dict[str, Any] = {
        **RELEASED_SETTINGS,
        **SIZES[size],
        "classifier_proj_size": CLASSIFIER_PROJ_SIZE[size],
        "hidden_dropout": drop_rate,
        "attention_dropout": drop_rate,
        "activation_dropout": drop_rate,
    }
    overrides = {k: v for k, v in overrides.items() if k not in PRETRAINING_ONLY}
    valid = set(transformers.HubertConfig().to_dict())
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise ConfigError(f"hubert_ecg: unknown option(s) {', '.join(unknown)}; use HubertConfig field names")
    config.update(overrides)
    return config


def _info(size: str, params: str) -> ModelInfo:
    s = SIZES[size]
    return ModelInfo(
        name=f"hubert_ecg_{size}",
        family="hubert_ecg",
        input_spec=HUBERT_ECG_INPUT_SPEC,
        description=(
            f"HuBERT-ECG {size} ({s['hidden_size']} wide, {s['num_hidden_layers']} layers, {params}; 12 x 500 at "
            "100 Hz flattened), CC BY-NC weights; needs transformers"
        ),
        checkpoint_formats=("HF model.safetensors (flat)", "torch dict 'model_state_dict'"),
    )


def _build(
    size: str, num_classes: int, drop_rate: float, drop_path_rate: float, overrides: dict
) -> HubertECG:
    config = hubert_config(size, drop_rate, **overrides)
    return HubertECG(config, num_classes=num_classes, drop_rate=drop_rate, drop_path_rate=drop_path_rate)


@register_model(_info("small", "30M"))
def hubert_ecg_small(
    *, num_classes: int, drop_rate: float = 0.0, drop_path_rate: float = 0.0, **overrides
) -> HubertECG:
    """HuBERT-ECG small; ``overrides`` are HubertConfig fields (e.g. the tiny test config)."""
    return _build("small", num_classes, drop_rate, drop_path_rate, overrides)


@register_model(_info("base", "93M"))
def hubert_ecg_base(
    *, num_classes: int, drop_rate: float = 0.0, drop_path_rate: float = 0.0, **overrides
) -> HubertECG:
    """HuBERT-ECG base."""
    return _build("base", num_classes, drop_rate, drop_path_rate, overrides)


@register_model(_info("large", "188M"))
def hubert_ecg_large(
    *, num_classes: int, drop_rate: float = 0.0, drop_path_rate: float = 0.0, **overrides
) -> HubertECG:
    """HuBERT-ECG large."""
    return _build("large", num_classes, drop_rate, drop_path_rate, overrides)


__all__ = [
    "HUBERT_ECG_INPUT_SPEC",
    "HUBERT_ECG_KEYMAP",
    "HubertECG",
    "hubert_config",
    "hubert_ecg_base",
    "hubert_ecg_large",
    "hubert_ecg_small",
]
