"""ECGFounder (Li et al., NEJM AI 2025): a 1-D RegNet-style CNN (``Net1D``) with squeeze-excitation blocks.

An independent implementation of the released 12-lead network of github.com/PKUDigitalHealth/ECGFounder
(see ``../shared/compat/ecgfounder/README.md``), in its released setting ``use_bn=False, use_do=False``:

- ``first_conv``: Conv1d(12 -> 64, k 16, stride 2, TensorFlow-style "same" padding) -> Swish;
- 7 stages (``stage_list.{s}.block_list.{b}``) of [2, 2, 2, 3, 3, 4, 4] blocks, widths
  [64, 160, 160, 400, 400, 1024, 1024]; each block: [Swish, skipped in the very first block] -> 1x1 conv ->
  Swish -> grouped conv (k 16, stride 2 in a stage's first block, groups = width / 16) -> Swish -> 1x1 conv ->
  squeeze-excitation (r = 2) -> DropPath -> + shortcut. The shortcut of a stage's first block is max-pooled
  (k = s = 2, after one zero of right padding) and zero-padded along channels when the width grows;
- features: the last stage's output averaged over time, shape (B, 1024); no activation after the last stage.

Names equal upstream's (``first_conv.conv``, ``conv{1,2,3}.conv``, ``se_fc{1,2}``), except the classifier,
which is ``head`` (upstream: ``dense``). Input: (B, 12, 5000) at 500 Hz, one mean/std over the whole record
(``normalisation="global"``) after a 0.67-40 Hz band-pass, as upstream's ``dataset.py``.

Checkpoints (family ``ecgfounder``), a torch dict with the weights under ``state_dict`` (``module.`` prefix
stripped if present): ``dense.*`` maps to ``head.*`` (the released 150-class head is dropped unless the model is
built with 150 classes); the unused BatchNorm entries ``first_bn.*`` and ``stage_list.*.block_list.*.bn{1,2,3}.*``
(never applied with ``use_bn=False``) are ignored. The 1-lead release loads into ``in_channels=1``.

Regularisation: ``drop_rate`` is the dropout before the head (the network has no attention or MLP);
``drop_path_rate`` is the stochastic-depth rate of the last residual block, rising linearly over all blocks of
all stages.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from ecgadapt.constants import LEADS
from ecgadapt.errors import ConfigError, DataError
from ecgadapt.models.base import ECGModel, InputSpec, ModelInfo, config_with
from ecgadapt.models.keymap import KeyMap, register_keymap
from ecgadapt.models.layers import DropPath, drop_path_schedule
from ecgadapt.models.registry import register_model

ECGFOUNDER_INPUT_SPEC = InputSpec(
    sampling_rate=500, length=5000, leads=LEADS, normalisation="global", band_pass=(0.67, 40.0)
)
"""Upstream's ``dataset.py``: 500 Hz, 10 s, 0.67-40 Hz band-pass, one mean/std per record."""


@dataclass(frozen=True)
class Net1DConfig:
    """Architecture of a Net1D (field names as upstream's constructor arguments)."""

    in_channels: int = 12
    base_filters: int = 64
    ratio: float = 1.0
    filter_list: tuple[int, ...] = (64, 160, 160, 400, 400, 1024, 1024)
    m_blocks_list: tuple[int, ...] = (2, 2, 2, 3, 3, 4, 4)
    kernel_size: int = 16
    stride: int = 2
    groups_width: int = 16


def same_pad(x: torch.Tensor, kernel_size: int, stride: int) -> torch.Tensor:
    """Zero-pad the time axis TensorFlow-style so that the output length is ceil(T / stride)."""
    t = x.shape[-1]
    out = -(-t // stride)
    total = max(0, (out - 1) * stride + kernel_size - t)
    return F.pad(x, (total // 2, total - total // 2))


class SameConv1d(nn.Module):
    """Conv1d with "same" padding; the convolution is the ``conv`` attribute (checkpoint layout)."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_ch, out_ch, kernel_size, stride=stride, groups=groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(same_pad(x, self.conv.kernel_size[0], self.conv.stride[0]))


class BasicBlock(nn.Module):
    """Bottleneck block with squeeze-excitation; DropPath on the residual branch."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        ratio: float,
        kernel_size: int,
        stride: int,
        groups_width: int,
        downsample: bool,
        is_first_block: bool,
        drop_path: float,
    ) -> None:
        super().__init__()
        mid = int(out_ch * ratio)
        if mid % groups_width:
            raise ConfigError(f"ecgfounder: width {mid} is not a multiple of groups_width {groups_width}")
        self.in_ch, self.out_ch = in_ch, out_ch
        self.downsample = downsample
        self.is_first_block = is_first_block
        self.conv1 = SameConv1d(in_ch, mid, 1)
        self.conv2 = SameConv1d(
            mid, mid, kernel_size, stride=stride if downsample else 1, groups=mid // groups_width
        )
        self.conv3 = SameConv1d(mid, out_ch, 1)
        self.se_fc1 = nn.Linear(out_ch, out_ch // 2)
        self.se_fc2 = nn.Linear(out_ch // 2, out_ch)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x if self.is_first_block else F.silu(x)
        out = self.conv3(F.silu(self.conv2(F.silu(self.conv1(out)))))
        scale = torch.sigmoid(self.se_fc2(F.silu(self.se_fc1(out.mean(-1)))))
        out = out * scale[..., None]
        shortcut = x
        if self.downsample:
            shortcut = F.max_pool1d(F.pad(shortcut, (0, 1)), kernel_size=2, stride=2)
        if self.out_ch != self.in_ch:
            diff = self.out_ch - self.in_ch
            shortcut = F.pad(shortcut, (0, 0, diff // 2, diff - diff // 2))
        return self.drop_path(out) + shortcut


class Stage(nn.Module):
    """A run of blocks; the first one strides and widens (``block_list`` is the checkpoint name)."""

    def __init__(self, blocks: Sequence[BasicBlock]) -> None:
        super().__init__()
        self.block_list = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.block_list:
            x = block(x)
        return x


class Net1D(ECGModel):
    """ECGFounder's Net1D backbone with a linear head on the time-averaged last stage."""

    def __init__(
        self, cfg: Net1DConfig, *, num_classes: int, drop_rate: float = 0.0, drop_path_rate: float = 0.0
    ) -> None:
        super().__init__()
        if len(cfg.filter_list) != len(cfg.m_blocks_list) or not cfg.filter_list:
            raise ConfigError(
                "ecgfounder: filter_list and m_blocks_list must be non-empty and of equal length"
            )
        if not 1 <= cfg.in_channels <= len(LEADS):
            raise ConfigError(f"ecgfounder: in_channels must be 1..{len(LEADS)}, got {cfg.in_channels}")
        self.cfg = cfg
        self.num_features = cfg.filter_list[-1]
        self.drop_rate = drop_rate
        self.input_spec = replace(ECGFOUNDER_INPUT_SPEC, leads=LEADS[: cfg.in_channels])
        self.first_conv = SameConv1d(cfg.in_channels, cfg.base_filters, cfg.kernel_size, stride=2)
        rates = iter(drop_path_schedule(drop_path_rate, sum(cfg.m_blocks_list)))
        stages, in_ch = [], cfg.base_filters
        for s, (out_ch, n_blocks) in enumerate(zip(cfg.filter_list, cfg.m_blocks_list)):
            blocks = [
                BasicBlock(
                    in_ch if b == 0 else out_ch,
                    out_ch,
                    cfg.ratio,
                    cfg.kernel_size,
                    cfg.stride,
                    cfg.groups_width,
                    downsample=b == 0,
                    is_first_block=s == 0 and b == 0,
                    drop_path=next(rates),
                )
                for b in range(n_blocks)
            ]
            stages.append(Stage(blocks))
            in_ch = out_ch
        self.stage_list = nn.ModuleList(stages)
        self.head_drop = nn.Dropout(drop_rate)
        self.reset_classifier(num_classes)
        self._block_offsets = [sum(cfg.m_blocks_list[:s]) for s in range(len(cfg.m_blocks_list))]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, T) -> last stage averaged over time, (B, filter_list[-1])."""
        if x.ndim != 3 or x.shape[1] != self.cfg.in_channels:
            raise DataError(
                f"ecgfounder expects input of shape (batch, {self.cfg.in_channels}, samples), got "
                f"{tuple(x.shape)}; select the leads of input_spec.leads in that order"
            )
        out = F.silu(self.first_conv(x))
        for stage in self.stage_list:
            out = stage(out)
        return out.mean(-1)

    def num_layers(self) -> int:
        """``first_conv`` is layer 0, residual block k (counted over all stages) is k + 1, head is last."""
        return sum(self.cfg.m_blocks_list) + 1

    def layer_id(self, param_name: str) -> int:
        """Layer id of ``param_name`` for layer-wise LR decay."""
        if param_name.startswith("first_conv"):
            return 0
        m = re.match(r"stage_list\.(\d+)\.block_list\.(\d+)\.", param_name)
        if m:
            return self._block_offsets[int(m[1])] + int(m[2]) + 1
        return self.num_layers()

    def drop_path_rates(self) -> list[float]:
        """DropPath rate of every residual block, in forward order."""
        return [blk.drop_path.drop_prob for stage in self.stage_list for blk in stage.block_list]


# -- checkpoint key map ------------------------------------------------------------------------------------


def _ecgfounder_remap(file_keys: Iterable[str], model_keys: Collection[str]) -> dict[str, str]:
    """``dense.*`` -> ``head.*``; the BatchNorm entries stay unmapped (ignored); everything else as it is."""
    mapping: dict[str, str] = {}
    for key in file_keys:
        if key.startswith("dense."):
            mapping[key] = "head." + key.removeprefix("dense.")
        elif not _is_bn_key(key):
            mapping[key] = key
    return mapping


_BN_KEY = re.compile(r"(first_bn|stage_list\.\d+\.block_list\.\d+\.bn[123])\.")


def _is_bn_key(key: str) -> bool:
    return _BN_KEY.match(key) is not None


def _first_conv_hint(got: tuple[int, ...], want: tuple[int, ...]) -> str | None:
    """Advice when only the number of input leads differs (e.g. the 1-lead release)."""
    if len(got) == 3 and got[1] != want[1] and (got[0], got[2]) == (want[0], want[2]):
        return f"the file takes {got[1]} input lead(s): build the model with in_channels={got[1]}"
    return None


ECGFOUNDER_KEYMAP = register_keymap(
    KeyMap(
        family="ecgfounder",
        remap=_ecgfounder_remap,
        ignore={
            "first_bn.*": "BatchNorm registered but never applied (use_bn=False)",
            "stage_list.*.block_list.*.bn[123].*": "BatchNorm registered but never applied (use_bn=False)",
        },
        markers=("first_conv.conv.weight",),
        hints={"first_conv.conv.weight": _first_conv_hint},
        description="ECGFounder Net1D checkpoint (torch dict with 'state_dict'; classifier 'dense')",
    )
)


# -- registry ----------------------------------------------------------------------------------------------


@register_model(
    ModelInfo(
        name="ecgfounder_net1d",
        family="ecgfounder",
        input_spec=ECGFOUNDER_INPUT_SPEC,
        description="ECGFounder 12-lead Net1D (12 x 5000 at 500 Hz, 7 stages, 1024 features), MIT code",
        checkpoint_formats=("torch dict 'state_dict' (classifier 'dense', unused BatchNorm entries)",),
    )
)
def ecgfounder_net1d(
    *, num_classes: int, drop_rate: float = 0.0, drop_path_rate: float = 0.0, **overrides
) -> Net1D:
    """ECGFounder's 12-lead Net1D; ``overrides`` replace fields of :class:`Net1DConfig`."""
    return Net1D(
        config_with(Net1DConfig(), overrides, "ecgfounder"),
        num_classes=num_classes,
        drop_rate=drop_rate,
        drop_path_rate=drop_path_rate,
    )


__all__ = [
    "ECGFOUNDER_INPUT_SPEC",
    "ECGFOUNDER_KEYMAP",
    "Net1D",
    "Net1DConfig",
    "ecgfounder_net1d",
    "same_pad",
]
