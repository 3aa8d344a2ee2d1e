"""ST-MEM encoder (Na et al., ICLR 2024): a ViT that patches every lead separately.

An independent implementation that reproduces the released ViT-B/75 encoder of github.com/bakqui/ST-MEM
(see ``../shared/compat/st_mem/README.md``). Module and parameter names equal upstream's, so the released state
dict loads 1:1: ``pos_embedding``, ``sep_embedding``, ``to_patch_embedding.{1,2,3}``, ``lead_embeddings.{i}``,
``block0`` ... ``block{depth-1}`` (attributes, not a list) with ``attn.norm``, ``attn.fn.to_qkv``,
``attn.fn.to_out.0``, ``ff.norm``, ``ff.fn.net.0``, ``ff.fn.net.3``, then ``norm`` and ``head``.

Features: each lead gets ``[SEP, patches..., SEP]`` (the right SEP always uses the LAST position row, even for
inputs shorter than ``seq_len``), plus its lead embedding; all leads form one sequence; after the blocks the SEP
tokens are dropped, the patch tokens averaged, and ``norm`` is applied to the average.

Input: (B, 12, T) at 250 Hz with T a multiple of 75 and at most ``seq_len`` (2250), standardised with one
mean/std per crop over all leads (``normalisation="global"``) after a 0.67-40 Hz band-pass.

Checkpoints (family ``st_mem``), both wrapped in a torch dict under ``model``:

- the "Encoder" file: the encoder's keys as they are (no head);
- the "Full (encoder + decoder)" pre-training file: ``encoder.*`` keys are used with the prefix stripped; the
  decoder keys and the un-prefixed duplicate of the shared patch embedding are ignored (see ``ST_MEM_KEYMAP``).

Lead subsets: a model built with ``num_leads=k < 12`` uses ``lead_embeddings.0..k-1`` of a 12-lead file and
ignores the others, as upstream does.

Regularisation: ``drop_rate`` is the dropout after the attention projection, inside the MLP and before the
head; ``attn_drop_rate`` (override, default 0) drops attention probabilities; ``drop_path_rate`` is the
stochastic-depth rate of the last block (linear schedule, one rate per block for both residual branches).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from ecgadapt.constants import LEADS
from ecgadapt.errors import ConfigError
from ecgadapt.models.base import ECGModel, InputSpec, ModelInfo, config_with
from ecgadapt.models.keymap import KeyMap, register_keymap
from ecgadapt.models.layers import DropPath, check_patch_input, drop_path_schedule
from ecgadapt.models.registry import register_model

ST_MEM_INPUT_SPEC = InputSpec(
    sampling_rate=250, length=2250, leads=LEADS, normalisation="global", band_pass=(0.67, 40.0)
)
"""Upstream's downstream pipeline: 250 Hz, 9 s crops, 0.67-40 Hz band-pass, one mean/std per crop."""


@dataclass(frozen=True)
class StMemConfig:
    """Architecture of an ST-MEM encoder (field names as upstream's constructor arguments)."""

    seq_len: int = 2250
    patch_size: int = 75
    num_leads: int = 12
    width: int = 768
    depth: int = 12
    mlp_dim: int = 3072
    heads: int = 12
    dim_head: int = 64
    qkv_bias: bool = True
    attn_drop_rate: float = 0.0


class Patchify(nn.Module):
    """(B, L, T) -> (B, L, T / P, P): cut every lead into non-overlapping patches (no weights)."""

    def __init__(self, patch_size: int) -> None:
        super().__init__()
        self.patch_size = patch_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, leads, t = x.shape
        return x.reshape(b, leads, t // self.patch_size, self.patch_size)


class PreNorm(nn.Module):
    """``fn(norm(x))``; the names ``norm`` and ``fn`` are part of the checkpoint layout."""

    def __init__(self, dim: int, fn: nn.Module) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self.norm(x))


class Attention(nn.Module):
    """Multi-head self-attention with a fused ``to_qkv`` projection (q, k, v; each head-major)."""

    def __init__(
        self, dim: int, heads: int, dim_head: int, qkv_bias: bool, attn_drop: float, proj_drop: float
    ):
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.dim_head = dim_head
        self.attn_drop = attn_drop
        self.to_qkv = nn.Linear(dim, 3 * inner, bias=qkv_bias)
        self.to_out = nn.Sequential(nn.Linear(inner, dim), nn.Dropout(proj_drop))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        qkv = self.to_qkv(x).reshape(b, n, 3, self.heads, self.dim_head).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        drop = self.attn_drop if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=drop, scale=self.dim_head**-0.5)
        return self.to_out(out.transpose(1, 2).reshape(b, n, self.heads * self.dim_head))


class FeedForward(nn.Module):
    """Linear -> exact GELU -> Dropout -> Linear -> Dropout, stored as ``net.{0..4}``."""

    def __init__(self, dim: int, hidden: int, drop: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(drop), nn.Linear(hidden, dim), nn.Dropout(drop)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TransformerBlock(nn.Module):
    """Pre-norm block: ``x + DropPath(attn(x))`` then ``x + DropPath(ff(x))``."""

    def __init__(self, cfg: StMemConfig, drop: float, drop_path: float) -> None:
        super().__init__()
        attn = Attention(cfg.width, cfg.heads, cfg.dim_head, cfg.qkv_bias, cfg.attn_drop_rate, drop)
        self.attn = PreNorm(cfg.width, attn)
        self.ff = PreNorm(cfg.width, FeedForward(cfg.width, cfg.mlp_dim, drop))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(x))
        return x + self.drop_path(self.ff(x))


def sincos_table(num_positions: int, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """1-D sine-cosine table (sin half, then cos half), shape (1, num_positions, dim), rows 0 and -1 zero."""
    half = dim // 2
    omega = 1.0 / temperature ** (torch.arange(half, dtype=torch.float64) / half)
    pos = torch.arange(num_positions, dtype=torch.float64)[:, None] * omega[None, :]
    table = torch.cat([pos.sin(), pos.cos()], dim=1)
    table = F.pad(table, (0, dim - 2 * half))
    table[0] = 0.0
    table[-1] = 0.0
    return table.float()[None]


class StMemViT(ECGModel):
    """The ST-MEM encoder with a linear head on the normalised mean of the patch tokens."""

    def __init__(
        self, cfg: StMemConfig, *, num_classes: int, drop_rate: float = 0.0, drop_path_rate: float = 0.0
    ) -> None:
        super().__init__()
        if cfg.seq_len % cfg.patch_size:
            raise ConfigError(
                f"st_mem: seq_len {cfg.seq_len} must be a multiple of patch_size {cfg.patch_size}"
            )
        if not 1 <= cfg.num_leads <= len(LEADS):
            raise ConfigError(f"st_mem: num_leads must be 1..{len(LEADS)}, got {cfg.num_leads}")
        self.cfg = cfg
        self.num_patches = cfg.seq_len // cfg.patch_size
        self.num_features = cfg.width
        self.drop_rate = drop_rate
        self.input_spec = replace(ST_MEM_INPUT_SPEC, length=cfg.seq_len, leads=LEADS[: cfg.num_leads])
        # The position table is frozen, as in the release (a sin-cos table stored in the checkpoint).
        self.pos_embedding = nn.Parameter(sincos_table(self.num_patches + 2, cfg.width), requires_grad=False)
        self.sep_embedding = nn.Parameter(torch.zeros(cfg.width))
        self.to_patch_embedding = nn.Sequential(
            Patchify(cfg.patch_size),
            nn.LayerNorm(cfg.patch_size),
            nn.Linear(cfg.patch_size, cfg.width),
            nn.LayerNorm(cfg.width),
        )
        self.lead_embeddings = nn.ParameterList(
            nn.Parameter(torch.zeros(cfg.width)) for _ in range(cfg.num_leads)
        )
        for i, rate in enumerate(drop_path_schedule(drop_path_rate, cfg.depth)):
            self.add_module(f"block{i}", TransformerBlock(cfg, drop_rate, rate))
        self.norm = nn.LayerNorm(cfg.width)
        self.head_drop = nn.Dropout(drop_rate)
        self._init_weights()
        self.reset_classifier(num_classes)

    def _init_weights(self) -> None:
        nn.init.normal_(self.sep_embedding, std=0.02)
        for emb in self.lead_embeddings:
            nn.init.normal_(emb, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    @property
    def blocks(self) -> list[TransformerBlock]:
        """The transformer blocks in order (registered as ``block0``, ``block1``, ...)."""
        return [getattr(self, f"block{i}") for i in range(self.cfg.depth)]

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a DataError unless ``x`` is (B, num_leads, T) with T a multiple of patch_size, <= seq_len."""
        cfg = self.cfg
        check_patch_input(x, "st_mem", cfg.num_leads, cfg.patch_size, cfg.seq_len, " (250 Hz)")

    def forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Block outputs of shape (B, L, n + 2, width), SEP tokens included."""
        self.check_input(x)
        b, leads, t = x.shape
        n = t // self.cfg.patch_size
        tokens = self.to_patch_embedding(x) + self.pos_embedding[:, None, 1 : n + 1]  # (B, L, n, D)
        left = (self.sep_embedding + self.pos_embedding[0, 0]).expand(b, leads, 1, -1)
        right = (self.sep_embedding + self.pos_embedding[0, -1]).expand(b, leads, 1, -1)
        tokens = torch.cat([left, tokens, right], dim=2)
        tokens = tokens + torch.stack(list(self.lead_embeddings))[None, :, None, :]
        seq = tokens.reshape(b, leads * (n + 2), -1)
        for block in self.blocks:
            seq = block(seq)
        return seq.reshape(b, leads, n + 2, -1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Mean of the patch tokens of all leads (SEP tokens dropped), then ``norm``: (B, width)."""
        return self.norm(self.forward_tokens(x)[:, :, 1:-1].mean(dim=(1, 2)))

    def no_weight_decay(self) -> set[str]:
        """Position, SEP and lead embeddings are not weight-decayed."""
        return {"pos_embedding", "sep_embedding", "lead_embeddings"}

    def num_layers(self) -> int:
        """Embeddings are layer 0, ``block{i}`` is i + 1, final norm and head are ``depth + 1``."""
        return self.cfg.depth + 1

    def layer_id(self, param_name: str) -> int:
        """Layer id of ``param_name`` for layer-wise LR decay."""
        if param_name.startswith(("pos_embedding", "sep_embedding", "to_patch_embedding", "lead_embeddings")):
            return 0
        m = re.match(r"block(\d+)\.", param_name)
        if m:
            return int(m[1]) + 1
        return self.num_layers()

    def drop_path_rates(self) -> list[float]:
        """DropPath rate of every block, in forward order."""
        return [blk.drop_path.drop_prob for blk in self.blocks]


# -- checkpoint key map ------------------------------------------------------------------------------------

_LEAD_EMB = re.compile(r"lead_embeddings\.(\d+)")


def _st_mem_remap(file_keys: Iterable[str], model_keys: Collection[str]) -> dict[str, str]:
    """Encoder file: identity. Pre-training file (has ``encoder.*``): ``encoder.X -> X``, all else unmapped.

    Lead embeddings the model does not have (a lead-subset model) are left unmapped, hence ignored.
    """
    keys = list(file_keys)
    pretrain = any(k.startswith("encoder.") for k in keys)
    mapping: dict[str, str] = {}
    for key in keys:
        if pretrain and not key.startswith("encoder."):
            continue
        target = key.removeprefix("encoder.") if pretrain else key
        if _LEAD_EMB.fullmatch(target) and target not in model_keys:
            continue
        mapping[key] = target
    return mapping


def _pos_embedding_hint(got: tuple[int, ...], want: tuple[int, ...]) -> str | None:
    """Advice when only the position table's length differs (the model was built with another seq_len)."""
    if len(got) != 3 or got[2] != want[2]:
        return None
    return (
        f"the file's table has {got[1]} rows, i.e. seq_len = {got[1] - 2} * patch_size; build the model with that "
        "seq_len (2250 for the release): shorter inputs need no rebuild, any multiple of 75 up to seq_len works"
    )


ST_MEM_KEYMAP = register_keymap(
    KeyMap(
        family="st_mem",
        remap=_st_mem_remap,
        ignore={
            "mask_embedding": "pre-training decoder: mask token",
            "decoder_pos_embed": "pre-training decoder: position table",
            "to_decoder_embedding.*": "pre-training decoder: input projection",
            "decoder_blocks.*": "pre-training decoder: transformer blocks",
            "decoder_norm.*": "pre-training decoder: final norm",
            "decoder_head.*": "pre-training decoder: reconstruction head",
            "to_patch_embedding.*": "pre-training file: duplicate of the shared encoder.to_patch_embedding",
            "lead_embeddings.*": "lead embedding of a lead the model was not built with (num_leads)",
            "encoder.lead_embeddings.*": "lead embedding of a lead the model was not built with (num_leads)",
        },
        markers=("sep_embedding", "encoder.sep_embedding"),
        hints={"pos_embedding": _pos_embedding_hint},
        description="ST-MEM checkpoint (torch dict with 'model': encoder, or encoder + decoder under encoder.*)",
    )
)


# -- registry ----------------------------------------------------------------------------------------------


@register_model(
    ModelInfo(
        name="st_mem_vit_b75",
        family="st_mem",
        input_spec=ST_MEM_INPUT_SPEC,
        description="ST-MEM ViT-B/75 encoder (12 leads x 2250 at 250 Hz, width 768, depth 12), CC BY-NC weights",
        checkpoint_formats=("torch dict 'model' (encoder)", "torch dict 'model' (encoder + decoder)"),
    )
)
def st_mem_vit_b75(
    *, num_classes: int, drop_rate: float = 0.0, drop_path_rate: float = 0.0, **overrides
) -> StMemViT:
    """ST-MEM ViT-B/75; ``overrides`` replace fields of :class:`StMemConfig` (e.g. the tiny test config)."""
    return StMemViT(
        config_with(StMemConfig(), overrides, "st_mem"),
        num_classes=num_classes,
        drop_rate=drop_rate,
        drop_path_rate=drop_path_rate,
    )


__all__ = ["ST_MEM_INPUT_SPEC", "ST_MEM_KEYMAP", "StMemConfig", "StMemViT", "sincos_table", "st_mem_vit_b75"]
