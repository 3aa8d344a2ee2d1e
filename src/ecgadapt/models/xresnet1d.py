"""1-D XResNet: the strongest supervised baseline family of the PTB-XL benchmark (Strodthoff et al. 2020).

An independent implementation of the "bag of tricks" ResNet (He et al. 2019) in 1-D, with the settings of the
PTB-XL benchmark's ``xresnet1d101``:

- stem: three conv-BN-ReLU layers (12 -> 32 -> 32 -> 64 channels, kernel 5, the first with stride 2),
  then max-pool (kernel 3, stride 2);
- four stages of bottleneck blocks (1x1 -> kernel-5 -> 1x1 convs, expansion 4, the stride on the middle conv),
  ``[3, 4, 23, 3]`` blocks for 101 and ``[3, 4, 6, 3]`` for 50;
- shortcut: average pool (2, ceil mode) when the block strides, then 1x1 conv + BN when the channels change;
- the last BN of every residual branch starts with gamma = 0, and ReLU follows the addition;
- DropPath (stochastic depth) on the residual branch of every block, rates rising linearly over all blocks;
- pooled features: concatenation of adaptive max and average pooling.

Widths: the benchmark's code keeps the bottleneck width at 64 in all four stages (every stage outputs
64 * 4 = 256 channels, so the pooled features have 2 * 256 = 512 dims), unlike fastai's image XResNet
(64, 128, 256, 512 -> 2 * 2048 = 4096 dims). We follow the benchmark; ``widths=(64, 128, 256, 512)`` gives the
image-style network.

Head: by default ``head_drop`` = Dropout(drop_rate) then one Linear (what linear probing and the
post-training recipe need). ``head_hidden=128`` builds the benchmark's head instead: BN -> Dropout(p/2) ->
Linear(512, 128) -> ReLU -> BN -> Dropout(p) -> Linear(128, classes) with p = drop_rate (0.5 in the benchmark),
and ``head_drop`` becomes Identity because the dropouts live inside the head.

Input (benchmark facts): 12 leads at 100 Hz; training on random 2.5 s crops (250 samples) of the 10 s records,
testing by sliding 250-sample windows with stride 125 over the record and taking the max of the window
predictions. The benchmark standardised with one mean/std fitted over the whole training set (all leads) and
applied no filter; the closest per-record equivalent is ``normalisation="global"`` with no band-pass, which is
the native input spec below. The network itself is length-agnostic (any length >= 32 samples).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ecgadapt.errors import ConfigError
from ecgadapt.models.base import ECGModel, InputSpec, ModelInfo, init_head
from ecgadapt.models.layers import DropPath, drop_path_schedule
from ecgadapt.models.registry import register_model

XRESNET1D_INPUT_SPEC = InputSpec(sampling_rate=100, length=250, normalisation="global", band_pass=None)
"""Native input of the PTB-XL benchmark's xresnet1d: 100 Hz, 2.5 s windows, one mean/std per record, no filter."""

XRESNET1D_TINY_INPUT_SPEC = InputSpec(
    sampling_rate=100, length=1000, normalisation="lead", band_pass=(0.67, 40.0)
)
"""Input of the self-pretrained ``xresnet1d_tiny``: that of ``ecg_vit`` (10 s at 100 Hz, per-lead z-score,
0.67-40 Hz), so that it pretrains on the same corpora, including per-lead z-scored real arrays."""


class ConvBnAct(nn.Sequential):
    """Conv1d (no bias) -> BatchNorm1d -> optional ReLU, 'same' padding."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int,
        stride: int = 1,
        act: bool = True,
        zero_bn: bool = False,
    ) -> None:
        layers: list[nn.Module] = [
            nn.Conv1d(in_ch, out_ch, kernel_size, stride=stride, padding=(kernel_size - 1) // 2, bias=False),
            nn.BatchNorm1d(out_ch),
        ]
        if act:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)
        self.zero_bn = zero_bn


class Bottleneck1d(nn.Module):
    """1x1 -> k -> 1x1 bottleneck with DropPath on the branch, avg-pool/1x1 shortcut, ReLU after the sum."""

    def __init__(
        self, in_ch: int, width: int, out_ch: int, stride: int, kernel_size: int, drop_path: float = 0.0
    ) -> None:
        super().__init__()
        self.conv1 = ConvBnAct(in_ch, width, 1)
        self.conv2 = ConvBnAct(width, width, kernel_size, stride=stride)
        self.conv3 = ConvBnAct(width, out_ch, 1, act=False, zero_bn=True)
        self.drop_path = DropPath(drop_path)
        shortcut: list[nn.Module] = []
        if stride != 1:
            shortcut.append(nn.AvgPool1d(stride, ceil_mode=True))
        if in_ch != out_ch:
            shortcut.append(ConvBnAct(in_ch, out_ch, 1, act=False))
        self.shortcut = nn.Sequential(*shortcut)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch = self.conv3(self.conv2(self.conv1(x)))
        return self.act(self.drop_path(branch) + self.shortcut(x))


class ConcatPool1d(nn.Module):
    """Concatenation of global max and global average pooling over time: (B, C, T) -> (B, 2C)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.amax(dim=-1), x.mean(dim=-1)], dim=1)


def fastai_head(num_features: int, hidden: int, num_classes: int, drop_rate: float) -> nn.Sequential:
    """The PTB-XL benchmark's head: BN, Dropout(p/2), Linear, ReLU, BN, Dropout(p), Linear."""
    head = nn.Sequential(
        nn.BatchNorm1d(num_features),
        nn.Dropout(drop_rate / 2),
        nn.Linear(num_features, hidden),
        nn.ReLU(inplace=True),
        nn.BatchNorm1d(hidden),
        nn.Dropout(drop_rate),
        nn.Linear(hidden, num_classes),
    )
    nn.init.kaiming_normal_(head[2].weight, nonlinearity="relu")
    nn.init.zeros_(head[2].bias)
    init_head(head[6])
    return head


class XResNet1d(ECGModel):
    """1-D XResNet with bottleneck blocks; ``forward_features`` returns concat max+avg pooled features."""

    def __init__(
        self,
        layers: Sequence[int] = (3, 4, 23, 3),
        num_classes: int = 5,
        in_chans: int = 12,
        widths: Sequence[int] = (64, 64, 64, 64),
        expansion: int = 4,
        stem_widths: Sequence[int] = (32, 32, 64),
        kernel_size: int = 5,
        stem_kernel_size: int = 5,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        head_hidden: int | None = None,
        input_spec: InputSpec = XRESNET1D_INPUT_SPEC,
    ) -> None:
        super().__init__()
        if len(layers) != len(widths) or not layers or min(layers) < 1:
            raise ConfigError(
                f"xresnet1d: layers={list(layers)} and widths={list(widths)} must be equally long lists of "
                "positive block counts / widths"
            )
        if len(stem_widths) != 3:
            raise ConfigError(f"xresnet1d: stem_widths={list(stem_widths)} must list three widths")
        if not 0.0 <= drop_rate < 1.0 or not 0.0 <= drop_path_rate < 1.0:
            raise ConfigError(
                f"xresnet1d: drop_rate={drop_rate} and drop_path_rate={drop_path_rate} must lie in [0, 1)"
            )
        self.input_spec = input_spec
        self.num_classes = num_classes
        self.drop_rate = float(drop_rate)
        self.head_hidden = head_hidden

        stem_ch = [in_chans, *stem_widths]
        self.stem = nn.Sequential(
            *[
                ConvBnAct(stem_ch[i], stem_ch[i + 1], stem_kernel_size, stride=2 if i == 0 else 1)
                for i in range(3)
            ],
            nn.MaxPool1d(kernel_size=3, stride=2, padding=1),
        )
        rates = drop_path_schedule(drop_path_rate, sum(layers))
        stages: list[nn.Module] = []
        in_ch, k = stem_ch[-1], 0
        for s, (n_blocks, width) in enumerate(zip(layers, widths)):
            out_ch = width * expansion
            blocks = []
            for b in range(n_blocks):
                stride = 2 if (s > 0 and b == 0) else 1
                blocks.append(Bottleneck1d(in_ch, width, out_ch, stride, kernel_size, drop_path=rates[k]))
                in_ch, k = out_ch, k + 1
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = ConcatPool1d()
        self.num_features = 2 * in_ch
        self._block_offsets = [sum(layers[:s]) for s in range(len(layers))]
        self._num_blocks = sum(layers)
        self._init_weights()
        self.reset_classifier(num_classes)

    def _init_weights(self) -> None:
        """Kaiming-normal convs, BN gamma 1 / beta 0, gamma 0 on the last BN of each residual branch."""
        for m in self.modules():
            if isinstance(m, nn.Conv1d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm1d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for m in self.modules():
            if isinstance(m, ConvBnAct) and m.zero_bn:
                nn.init.zeros_(m[1].weight)

    def reset_classifier(self, num_classes: int) -> None:
        """Fresh head: Linear (default) or the benchmark's BN/Dropout/Linear head when ``head_hidden`` is set."""
        if self.head_hidden is None or num_classes <= 0:
            self.head_drop = nn.Dropout(self.drop_rate)
            super().reset_classifier(num_classes)
        else:
            self.num_classes = num_classes
            self.head_drop = nn.Identity()
            self.head = fastai_head(self.num_features, self.head_hidden, num_classes, self.drop_rate)

    def forward_map(self, x: torch.Tensor) -> torch.Tensor:
        """(B, leads, T) -> (B, C, T') feature map of the last stage, before pooling."""
        if x.ndim != 3:
            raise ConfigError(f"xresnet1d expects input of shape (batch, leads, time), got {tuple(x.shape)}")
        return self.stages(self.stem(x))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, leads, T) -> (B, num_features) concat max+avg pooled features."""
        return self.pool(self.forward_map(x))

    def num_layers(self) -> int:
        """Stem = 0, blocks 1..N in order, head = N + 1."""
        return self._num_blocks + 1

    def layer_id(self, param_name: str) -> int:
        """Layer id of ``param_name``: 0 for the stem, the block's position (1-based) in a stage, head last."""
        parts = param_name.split(".")
        if parts[0] == "stem":
            return 0
        if parts[0] == "stages" and len(parts) > 2:
            return self._block_offsets[int(parts[1])] + int(parts[2]) + 1
        if parts[0] in ("head", "head_drop"):
            return self.num_layers()
        raise ConfigError(
            f"xresnet1d has no parameter named {param_name!r}; expected stem.*, stages.*, head.*"
        )

    def drop_path_rates(self) -> list[float]:
        """DropPath rate of every block, in forward order."""
        return [blk.drop_path.drop_prob for stage in self.stages for blk in stage]


_DESCRIPTION = "1-D XResNet{depth} of the PTB-XL benchmark (Strodthoff et al. 2020), trained from scratch"


def _make(
    default_layers: tuple[int, ...], num_classes: int, drop_rate: float, drop_path_rate: float, /, **overrides
) -> XResNet1d:
    """Build an XResNet1d, letting ``overrides`` replace any constructor argument (e.g. layers, widths)."""
    kwargs = dict(layers=default_layers)
    kwargs.update(overrides)
    try:
        return XResNet1d(
            num_classes=num_classes, drop_rate=drop_rate, drop_path_rate=drop_path_rate, **kwargs
        )
    except TypeError as exc:
        raise ConfigError(f"xresnet1d: unknown override in {sorted(overrides)} ({exc})") from None


@register_model(ModelInfo("xresnet1d101", "xresnet1d", XRESNET1D_INPUT_SPEC, _DESCRIPTION.format(depth=101)))
def xresnet1d101(
    *, num_classes: int, drop_rate: float = 0.0, drop_path_rate: float = 0.0, **overrides
) -> XResNet1d:
    """XResNet1d-101: bottleneck stages [3, 4, 23, 3]."""
    return _make((3, 4, 23, 3), num_classes, drop_rate, drop_path_rate, **overrides)


@register_model(ModelInfo("xresnet1d50", "xresnet1d", XRESNET1D_INPUT_SPEC, _DESCRIPTION.format(depth=50)))
def xresnet1d50(
    *, num_classes: int, drop_rate: float = 0.0, drop_path_rate: float = 0.0, **overrides
) -> XResNet1d:
    """XResNet1d-50: bottleneck stages [3, 4, 6, 3]."""
    return _make((3, 4, 6, 3), num_classes, drop_rate, drop_path_rate, **overrides)


# tiny is sized like ecg_vit_tiny for CPU fine-tuning on 10 s records: four bottleneck blocks (one per stage),
# bottleneck widths 32-64, 512 pooled features, 0.17 M parameters; pretrained by masked-segment reconstruction
# (ecgadapt.pretrain.masked_segment).
_TINY = dict(
    layers=(1, 1, 1, 1),
    widths=(32, 32, 64, 64),
    stem_widths=(16, 16, 32),
    input_spec=XRESNET1D_TINY_INPUT_SPEC,
)


@register_model(
    ModelInfo(
        "xresnet1d_tiny",
        "xresnet1d",
        XRESNET1D_TINY_INPUT_SPEC,
        "Compact 1-D XResNet (4 bottleneck blocks, 0.17 M params) for self-supervised pretraining on 10 s ECGs",
        checkpoint_formats=("ecgadapt",),
    )
)
def xresnet1d_tiny(
    *, num_classes: int, drop_rate: float = 0.0, drop_path_rate: float = 0.0, **overrides
) -> XResNet1d:
    """The tiny XResNet1d (CPU-friendly, per-lead normalised 10 s input)."""
    kwargs = {**_TINY, **overrides}
    return _make(kwargs.pop("layers"), num_classes, drop_rate, drop_path_rate, **kwargs)


# small doubles every width of tiny (bottleneck widths 64-128, 1,024 pooled features, 0.66 M parameters): the
# candidate chosen on ptbxl-2285's fold 9 over tiny as the default encoder (benchmarks/pretrain_ptbxl2285.py).
_SMALL = {**_TINY, "widths": (64, 64, 128, 128), "stem_widths": (32, 32, 64)}


@register_model(
    ModelInfo(
        "xresnet1d_small",
        "xresnet1d",
        XRESNET1D_TINY_INPUT_SPEC,
        "Compact 1-D XResNet (4 bottleneck blocks, 0.66 M params): xresnet1d_tiny with every width doubled",
        checkpoint_formats=("ecgadapt",),
    )
)
def xresnet1d_small(
    *, num_classes: int, drop_rate: float = 0.0, drop_path_rate: float = 0.0, **overrides
) -> XResNet1d:
    """The small XResNet1d: ``xresnet1d_tiny`` with doubled widths (CPU-friendly, per-lead normalised 10 s input)."""
    kwargs = {**_SMALL, **overrides}
    return _make(kwargs.pop("layers"), num_classes, drop_rate, drop_path_rate, **kwargs)
