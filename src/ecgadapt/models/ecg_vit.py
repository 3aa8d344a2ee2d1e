"""Compact ECG Vision Transformers: one token per (lead, patch), pre-norm blocks, mean pooling."""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from ecgadapt.constants import LEADS
from ecgadapt.errors import ConfigError
from ecgadapt.models.base import ECGModel, InputSpec, ModelInfo
from ecgadapt.models.keymap import KeyMap, register_keymap
from ecgadapt.models.layers import DropPath, check_patch_input, drop_path_schedule
from ecgadapt.models.registry import register_model

ECG_VIT_INPUT_SPEC = InputSpec(
    sampling_rate=100, length=1000, leads=LEADS, normalisation="lead", band_pass=(0.67, 40.0)
)
"""Native input of the ``ecg_vit_*`` models: 12 leads, 10 s at 100 Hz, per-lead z-scored, 0.67-40 Hz."""


def sincos_position_table(num_positions: int, width: int, temperature: float = 10000.0) -> torch.Tensor:
    """A 1-D sine-cosine table of shape (num_positions, width): sines in the first half, cosines in the second."""
    if width % 2:
        raise ConfigError(f"sin-cos position embeddings need an even width, got {width}")
    freqs = temperature ** (-torch.arange(width // 2, dtype=torch.float64) / (width // 2))
    angles = torch.arange(num_positions, dtype=torch.float64)[:, None] * freqs[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1).float()


class Attention(nn.Module):
    """Multi-head self-attention (fused scaled dot-product) with dropout on its output projection."""

    def __init__(self, width: int, heads: int, qkv_bias: bool = True, drop: float = 0.0) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width, bias=qkv_bias)
        self.proj = nn.Linear(width, width)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.drop(self.proj(x.transpose(1, 2).reshape(b, n, d)))


class Mlp(nn.Module):
    """Linear -> GELU -> Linear -> dropout."""

    def __init__(self, width: int, hidden: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, width)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.act(self.fc1(x))))


class Block(nn.Module):
    """Pre-norm transformer block with stochastic depth on both residual branches."""

    def __init__(
        self,
        width: int,
        heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop: float = 0.0,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attn = Attention(width, heads, qkv_bias=qkv_bias, drop=drop)
        self.drop_path1 = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = Mlp(width, int(width * mlp_ratio), drop=drop)
        self.drop_path2 = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path1(self.attn(self.norm1(x)))
        return x + self.drop_path2(self.mlp(self.norm2(x)))


class ECGViT(ECGModel):
    """A ViT over per-lead patches: each lead is cut into patches of ``patch_size`` samples, one token each.

    Token ``lead * n + j`` is ``patch_embed(patch j of lead) + pos_embed[j] + lead_embed[lead]``; features
    are the mean over all tokens after the blocks, then ``norm``. :meth:`forward_tokens` runs the encoder on
    a subset of tokens, which is how masked pretraining uses this very module.
    """

    def __init__(
        self,
        *,
        num_classes: int,
        seq_len: int = 1000,
        patch_size: int = 50,
        num_leads: int = 12,
        width: int = 192,
        depth: int = 6,
        heads: int = 3,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        pos_embed: str = "sincos",
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        input_spec: InputSpec = ECG_VIT_INPUT_SPEC,
    ) -> None:
        super().__init__()
        if seq_len % patch_size:
            raise ConfigError(f"ecg_vit seq_len {seq_len} is not a multiple of patch_size {patch_size}")
        if pos_embed not in ("sincos", "learned"):
            raise ConfigError(f"ecg_vit pos_embed must be 'sincos' or 'learned', got {pos_embed!r}")
        if width % heads:
            raise ConfigError(f"ecg_vit width {width} is not divisible by heads {heads}")
        leads = input_spec.leads if input_spec.num_leads == num_leads else LEADS[:num_leads]
        self.input_spec = replace(input_spec, length=seq_len, leads=tuple(leads))
        self.seq_len, self.patch_size, self.num_leads = seq_len, patch_size, num_leads
        self.num_patches = seq_len // patch_size
        self.depth = depth
        self.num_features = self.width = width
        self.num_classes = num_classes

        self.patch_embed = nn.Linear(patch_size, width)
        pos = torch.zeros(1, self.num_patches, width)
        if pos_embed == "learned":
            self.pos_embed = nn.Parameter(nn.init.trunc_normal_(pos, std=0.02))
        else:  # a fixed table, saved with the weights
            self.register_buffer("pos_embed", sincos_position_table(self.num_patches, width)[None])
        self.lead_embed = nn.Parameter(torch.zeros(1, num_leads, width))
        rates = drop_path_schedule(drop_path_rate, depth)
        self.blocks = nn.ModuleList(
            Block(width, heads, mlp_ratio, qkv_bias=qkv_bias, drop=drop_rate, drop_path=r) for r in rates
        )
        self.norm = nn.LayerNorm(width)
        self.head_drop = nn.Dropout(drop_rate)
        self.head: nn.Module = nn.Identity()
        self._init_weights()
        self.reset_classifier(num_classes)

    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.lead_embed, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """(B, leads, T) -> (B, leads * T/P, P) patches, lead after lead; checks leads and length."""
        check_patch_input(x, "ecg_vit", self.num_leads, self.patch_size, self.seq_len)
        t = x.shape[-1]
        return x.reshape(x.shape[0], self.num_leads * (t // self.patch_size), self.patch_size)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens (B, leads * n, width) with patch, position and lead embeddings, before the blocks."""
        tokens = self.patch_embed(self.patchify(x))
        n = tokens.shape[1] // self.num_leads
        pos = self.pos_embed[:, None, :n, :] + self.lead_embed[:, :, None, :]  # (1, leads, n, width)
        return tokens + pos.reshape(1, self.num_leads * n, self.width)

    def forward_tokens(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Block outputs (before ``norm``) for all tokens, or only for token indices ``keep`` (B, K)."""
        tokens = self.embed(x)
        if keep is not None:
            tokens = torch.gather(tokens, 1, keep[..., None].expand(-1, -1, tokens.shape[-1]))
        for block in self.blocks:
            tokens = block(tokens)
        return tokens

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Mean over all tokens, then LayerNorm: (B, width)."""
        return self.norm(self.forward_tokens(x).mean(dim=1))

    def no_weight_decay(self) -> set[str]:
        """Position and lead embeddings are not weight-decayed."""
        return {"pos_embed", "lead_embed"}

    def num_layers(self) -> int:
        """Embeddings are layer 0, block i is layer i + 1, final norm and head are ``depth + 1``."""
        return self.depth + 1

    def layer_id(self, param_name: str) -> int:
        """Layer id of ``param_name`` for layer-wise LR decay."""
        if param_name.startswith(("patch_embed", "pos_embed", "lead_embed")):
            return 0
        if param_name.startswith("blocks."):
            return int(param_name.split(".")[1]) + 1
        return self.num_layers()


_ARCH_HINT = (
    "the file was saved from an ecg_vit with other seq_len/patch_size/width: pass the same model overrides"
)
ECG_VIT_KEYMAP = register_keymap(
    KeyMap(
        family="ecg_vit",
        markers=("lead_embed",),
        hints={"pos_embed": _ARCH_HINT, "patch_embed.weight": _ARCH_HINT, "lead_embed": _ARCH_HINT},
        description="ecgadapt ecg_vit checkpoint: model.state_dict() as saved (the head may be absent)",
    )
)
"""Identity key map: files are ``model.state_dict()`` (e.g. ``encoder.safetensors`` from pretraining)."""


def _ecg_vit_info(name: str, description: str) -> ModelInfo:
    return ModelInfo(
        name=name,
        family="ecg_vit",
        input_spec=ECG_VIT_INPUT_SPEC,
        description=description,
        checkpoint_formats=("ecgadapt",),
    )


def _build(defaults: dict, num_classes: int, drop_rate: float, drop_path_rate: float, **overrides) -> ECGViT:
    unknown = set(overrides) - {
        "seq_len",
        "patch_size",
        "num_leads",
        "width",
        "depth",
        "heads",
        "mlp_ratio",
        "qkv_bias",
        "pos_embed",
    }
    if unknown:
        raise ConfigError(f"unknown ecg_vit option(s): {', '.join(sorted(unknown))}")
    return ECGViT(
        num_classes=num_classes,
        drop_rate=drop_rate,
        drop_path_rate=drop_path_rate,
        **{**defaults, **overrides},
    )


# tiny is sized for CPU fine-tuning (>= 250 samples/s at batch 32 on 2 threads; benchmarks/bench_models.py):
# 12 leads x 8 patches of 1.25 s = 96 tokens, MLP ratio 2. small has 120 tokens of 1 s and a 4x MLP.
_TINY = dict(seq_len=1000, patch_size=125, width=96, depth=4, heads=2, mlp_ratio=2.0)
_SMALL = dict(seq_len=1000, patch_size=100, width=192, depth=6, heads=3, mlp_ratio=4.0)
# tiny_p50 has finer tokens (0.5 s, shorter than a beat): 12 leads x 20 patches = 240 tokens, width 64 to keep
# fine-tuning throughput near tiny's (about 0.8x on 2 threads, batch 32).
_TINY_P50 = dict(seq_len=1000, patch_size=50, width=64, depth=4, heads=2, mlp_ratio=2.0)


@register_model(
    _ecg_vit_info("ecg_vit_tiny", "Compact ECG ViT: 12 leads x 8 patches of 1.25 s, width 96, depth 4")
)
def ecg_vit_tiny(
    *, num_classes: int, drop_rate: float = 0.0, drop_path_rate: float = 0.0, **overrides
) -> ECGViT:
    """The tiny ECG ViT (CPU-friendly)."""
    return _build(_TINY, num_classes, drop_rate, drop_path_rate, **overrides)


@register_model(_ecg_vit_info("ecg_vit_small", "ECG ViT: 12 leads x 10 patches of 1 s, width 192, depth 6"))
def ecg_vit_small(
    *, num_classes: int, drop_rate: float = 0.0, drop_path_rate: float = 0.0, **overrides
) -> ECGViT:
    """The small ECG ViT."""
    return _build(_SMALL, num_classes, drop_rate, drop_path_rate, **overrides)


@register_model(
    _ecg_vit_info(
        "ecg_vit_tiny_p50",
        "Compact ECG ViT with finer tokens: 12 leads x 20 patches of 0.5 s, width 64, depth 4",
    )
)
def ecg_vit_tiny_p50(
    *, num_classes: int, drop_rate: float = 0.0, drop_path_rate: float = 0.0, **overrides
) -> ECGViT:
    """The tiny ECG ViT with 0.5 s patches (finer morphology per token)."""
    return _build(_TINY_P50, num_classes, drop_rate, drop_path_rate, **overrides)
