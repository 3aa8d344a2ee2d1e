"""Parameter groups (weight decay split, layer decay), AdamW creation and the warmup-cosine schedule."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ecgadapt.engine.optim import (
    cosine_schedule_with_warmup,
    create_optimizer,
    param_groups,
    warmup_cosine_factor,
)
from ecgadapt.errors import ConfigError
from ecgadapt.models import create_model
from ecgadapt.models.base import ECGModel, InputSpec


class TinyViT(ECGModel):
    """A ViT-shaped dummy: patch embedding, cls token, position embedding, blocks, final norm, head."""

    def __init__(self, depth: int = 3, dim: int = 8, num_classes: int = 2) -> None:
        super().__init__()
        self.input_spec = InputSpec(sampling_rate=100, length=40)
        self.num_features, self.num_classes = dim, num_classes
        self.patch_embed = nn.Conv1d(12, dim, kernel_size=10, stride=10)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 5, dim))
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim)) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)
        self.head_drop = nn.Identity()
        self.head = nn.Linear(dim, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_embed(x).transpose(1, 2)
        tokens = torch.cat([self.cls_token.expand(len(x), -1, -1), tokens], dim=1) + self.pos_embed
        for blk in self.blocks:
            tokens = tokens + blk(tokens)
        return self.norm(tokens)[:, 0]

    def no_weight_decay(self) -> set[str]:
        return {"cls_token", "pos_embed"}

    def num_layers(self) -> int:
        return len(self.blocks) + 1

    def layer_id(self, param_name: str) -> int:
        if param_name.startswith(("patch_embed", "cls_token", "pos_embed")):
            return 0
        if param_name.startswith("blocks."):
            return int(param_name.split(".")[1]) + 1
        return self.num_layers()


def tiny_xresnet(**kw):
    torch.manual_seed(0)
    return create_model(
        "xresnet1d50", num_classes=3, layers=(1, 1, 1, 1), widths=(4, 4, 4, 4), stem_widths=(4, 4, 8), **kw
    )


def names_by_decay(groups: list[dict]) -> tuple[set[str], set[str]]:
    decay = {n for g in groups if g["weight_decay"] > 0 for n in g["param_names"]}
    no_decay = {n for g in groups if g["weight_decay"] == 0 for n in g["param_names"]}
    return decay, no_decay


def test_xresnet_no_decay_on_bn_and_bias_only():
    model = tiny_xresnet()
    decay, no_decay = names_by_decay(param_groups(model, weight_decay=0.05, lr=1e-3))
    assert decay | no_decay == {n for n, _ in model.named_parameters()} and not decay & no_decay
    assert "stem.0.1.weight" in no_decay and "stem.0.1.bias" in no_decay  # BN gamma/beta
    assert "head.bias" in no_decay
    assert all(n.endswith("0.weight") or n == "head.weight" for n in decay)  # convs and the linear head
    assert "stem.0.0.weight" in decay and "head.weight" in decay


def test_vit_no_decay_includes_embeddings_and_norms():
    model = TinyViT()
    groups = param_groups(model, weight_decay=0.1, lr=1e-3)
    decay, no_decay = names_by_decay(groups)
    assert {
        "cls_token",
        "pos_embed",
        "norm.weight",
        "norm.bias",
        "blocks.0.0.weight",
        "blocks.0.1.bias",
    } <= no_decay
    assert decay == {"patch_embed.weight", "head.weight"} | {f"blocks.{i}.1.weight" for i in range(3)}
    assert {g["name"] for g in groups} == {"decay", "no_decay"}
    assert all(g["lr_scale"] == 1.0 and g["lr"] == 1e-3 for g in groups)


def test_frozen_parameters_are_skipped_unless_asked():
    model = TinyViT()
    for p in model.parameters():
        p.requires_grad_(False)
    model.head.requires_grad_(True)
    names = {n for g in param_groups(model, 0.1, 1e-3) for n in g["param_names"]}
    assert names == {"head.weight", "head.bias"}
    all_names = {n for g in param_groups(model, 0.1, 1e-3, trainable_only=False) for n in g["param_names"]}
    assert len(all_names) == len(list(model.parameters()))
    model.head.requires_grad_(False)
    with pytest.raises(ConfigError, match="no trainable parameters"):
        param_groups(model, 0.1, 1e-3)


@pytest.mark.parametrize("make", [TinyViT, tiny_xresnet])
def test_layer_decay_scales_are_monotone(make):
    model = make()
    groups = param_groups(model, weight_decay=0.05, lr=1e-3, layer_decay=0.75)
    scale_of = {n: g["lr_scale"] for g in groups for n in g["param_names"]}
    by_layer: dict[int, set[float]] = {}
    for name, scale in scale_of.items():
        by_layer.setdefault(model.layer_id(name), set()).add(scale)
    assert all(len(s) == 1 for s in by_layer.values())
    layers = sorted(by_layer)
    scales = [by_layer[i].pop() for i in layers]
    assert scales == sorted(scales) and len(set(scales)) == len(scales)
    assert scales[-1] == 1.0  # head
    assert scales[0] == pytest.approx(0.75 ** model.num_layers())  # stem / embeddings
    assert all(g["lr"] == pytest.approx(1e-3 * g["lr_scale"]) for g in groups)


@pytest.mark.parametrize("layer_decay", [None, 0.75])
def test_head_lr_scale_multiplies_the_head_groups_only(layer_decay):
    model = TinyViT()
    plain = {n: g["lr"] for g in param_groups(model, 0.05, 1e-3, layer_decay) for n in g["param_names"]}
    scaled_groups = param_groups(model, 0.05, 1e-3, layer_decay, head_lr_scale=10.0)
    scaled = {n: g["lr"] for g in scaled_groups for n in g["param_names"]}
    head = {f"head.{n}" for n, _ in model.head.named_parameters()}
    assert head and set(scaled) == set(plain)
    for name, lr in scaled.items():
        assert lr == pytest.approx(plain[name] * (10.0 if name in head else 1.0)), name
    assert {n for g in scaled_groups if g["name"].startswith("head_") for n in g["param_names"]} == head
    with pytest.raises(ConfigError, match="head_lr_scale"):
        param_groups(model, 0.05, 1e-3, head_lr_scale=0.0)


def test_bad_layer_decay_raises():
    with pytest.raises(ConfigError, match="layer_decay"):
        param_groups(TinyViT(), 0.05, 1e-3, layer_decay=1.5)


def test_create_optimizer_is_adamw_and_fused_ignored_on_cpu():
    opt = create_optimizer(TinyViT(), lr=1e-3, weight_decay=0.05, fused=True, betas=(0.9, 0.95))
    assert isinstance(opt, torch.optim.AdamW)
    assert not opt.defaults["fused"]
    assert opt.defaults["betas"] == (0.9, 0.95)
    assert {g["name"] for g in opt.param_groups} == {"decay", "no_decay"}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_create_optimizer_fused_on_cuda():
    opt = create_optimizer(TinyViT().cuda(), lr=1e-3, weight_decay=0.05)
    assert opt.defaults["fused"]


def test_schedule_values_warmup_and_cosine():
    model = TinyViT()
    opt = create_optimizer(model, lr=1e-2, weight_decay=0.0, layer_decay=0.5)
    head = next(g for g in opt.param_groups if g["lr_scale"] == 1.0)
    stem = min(opt.param_groups, key=lambda g: g["lr_scale"])
    sched = cosine_schedule_with_warmup(opt, warmup_steps=10, total_steps=110, min_lr_ratio=0.1)
    lrs = {0: (head["lr"], stem["lr"])}
    for step in range(1, 111):
        opt.step()
        sched.step()
        lrs[step] = (head["lr"], stem["lr"])
    assert (
        lrs[0][0] == pytest.approx(1e-3) and lrs[0][1] > 0
    )  # the first warm-up step already learns: 1/10 of lr
    assert lrs[5][0] == pytest.approx(0.6e-2)
    assert lrs[9][0] == pytest.approx(1e-2) and lrs[10][0] == pytest.approx(1e-2)  # warm-up end: the peak
    assert lrs[60][0] == pytest.approx(1e-2 * (0.1 + 0.9 * 0.5))  # half-way down the cosine
    assert lrs[110][0] == pytest.approx(1e-3)  # end: min_lr_ratio * lr
    for step in (0, 5, 10, 60, 110):  # every group honours its lr_scale
        assert lrs[step][1] == pytest.approx(lrs[step][0] * stem["lr_scale"])


def test_factor_without_warmup_and_past_the_end():
    assert warmup_cosine_factor(0, 0, 100) == 1.0
    assert warmup_cosine_factor(50, 0, 100) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert warmup_cosine_factor(500, 0, 100, min_lr_ratio=0.2) == pytest.approx(0.2)


def test_bad_schedule_arguments_raise():
    opt = create_optimizer(TinyViT(), lr=1e-3, weight_decay=0.0)
    with pytest.raises(ConfigError, match="warmup_steps"):
        cosine_schedule_with_warmup(opt, warmup_steps=20, total_steps=10)
    with pytest.raises(ConfigError, match="min_lr_ratio"):
        cosine_schedule_with_warmup(opt, warmup_steps=0, total_steps=10, min_lr_ratio=2.0)
