"""Key maps: how one model family's checkpoint files map onto its models' state dicts, and load plans.

A model module registers its family's :class:`KeyMap` with :func:`register_keymap` at import time: an explicit
``remap(file_keys, model_keys) -> {file_key: model_key}`` function, an ``ignore`` table of file-key patterns that
may be dropped on purpose (each with its reason: decoders, mask tokens, unused BatchNorm, pre-training heads),
``markers`` (keys that identify the family's files) and shape ``hints``. Families without a registered key map
(our own models) use the identity map with no ignore list.

:func:`plan_load` matches remapped keys against ``model.state_dict()`` without touching the model. Keys mapped
to ``head.*`` form the classifier: loaded when they fit the model's head exactly, otherwise dropped (the model
keeps its new head). Every other model key must be loaded; every other file key must be mapped or ignored;
every shape must agree. This module knows no model registry: :mod:`ecgadapt.models.checkpoint` uses both.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

Remap = Callable[[Iterable[str], Collection[str]], dict[str, str]]
Hint = Callable[
    [tuple[int, ...], tuple[int, ...]], "str | None"
]  # (file shape, model shape) -> advice or None


def identity_remap(file_keys: Iterable[str], model_keys: Collection[str]) -> dict[str, str]:
    """Every file key names the model key of the same name (files written from ``model.state_dict()``)."""
    return {k: k for k in file_keys}


@dataclass(frozen=True)
class KeyMap:
    """How one model family's checkpoint files map onto its models' state dicts."""

    family: str
    remap: Remap = identity_remap
    ignore: Mapping[str, str] = field(
        default_factory=dict
    )  # fnmatch pattern of an unmapped file key -> reason
    markers: tuple[str, ...] = ()  # any of these file keys identifies the family
    hints: Mapping[str, str | Hint] = field(default_factory=dict)  # model key -> advice on a shape mismatch
    description: str = ""

    def ignore_reason(self, file_key: str) -> str | None:
        """Why an unmapped file key may be dropped, or None if it must not be."""
        for pattern, reason in self.ignore.items():
            if fnmatch.fnmatchcase(file_key, pattern):
                return reason
        return None


FAMILY_KEYMAPS: dict[str, KeyMap] = {}
"""Registered key maps by family; extend with :func:`register_keymap`."""


def register_keymap(keymap: KeyMap) -> KeyMap:
    """Register the key map of ``keymap.family`` (once per family) and return it."""
    if keymap.family in FAMILY_KEYMAPS:
        raise ValueError(f"a key map for family {keymap.family!r} is registered twice")
    FAMILY_KEYMAPS[keymap.family] = keymap
    return keymap


def keymap_for(family: str) -> KeyMap:
    """The family's registered key map, or the identity map for families without one."""
    return FAMILY_KEYMAPS.get(family) or KeyMap(
        family=family, description="ecgadapt checkpoint (model.state_dict(); the head may be absent)"
    )


@dataclass
class LoadPlan:
    """What loading a state dict into a model would do; ``ok`` when nothing is unexpected or missing."""

    family: str
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)  # model key -> tensor to load
    source: dict[str, str] = field(default_factory=dict)  # model key -> file key
    ignored: dict[str, str] = field(default_factory=dict)  # file key -> reason
    unexpected: list[str] = field(default_factory=list)  # file keys neither mapped nor ignorable
    missing: list[str] = field(default_factory=list)  # model keys (outside the head) without a tensor
    mismatched: list[tuple[str, str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    head: str = "new"  # "loaded": file head loaded; "new": none in the file; "replaced": file head dropped

    @property
    def ok(self) -> bool:
        """True when every non-head model key gets a tensor of the right shape and no file key is unexplained."""
        return not (self.unexpected or self.missing or self.mismatched)

    @property
    def n_loaded(self) -> int:
        """Number of elements that would be loaded."""
        return sum(t.numel() for t in self.tensors.values())

    @property
    def n_problems(self) -> int:
        """Count of unexpected, missing and mismatched keys."""
        return len(self.unexpected) + len(self.missing) + len(self.mismatched)


def is_head_key(key: str) -> bool:
    return key.startswith("head.")


def plan_load(model: nn.Module, state_dict: Mapping[str, torch.Tensor], keymap: KeyMap) -> LoadPlan:
    """Match ``state_dict`` (file keys) against ``model.state_dict()`` through ``keymap``; changes nothing."""
    model_sd = model.state_dict()
    mapping = keymap.remap(list(state_dict), set(model_sd))
    plan = LoadPlan(family=keymap.family)
    file_head: dict[str, str] = {}
    for file_key, tensor in state_dict.items():
        model_key = mapping.get(file_key)
        if model_key is not None and is_head_key(model_key):
            file_head[model_key] = file_key
        elif model_key is not None and model_key in model_sd and model_key not in plan.source:
            want = tuple(model_sd[model_key].shape)
            if tuple(tensor.shape) != want:
                plan.mismatched.append((file_key, model_key, tuple(tensor.shape), want))
            else:
                plan.tensors[model_key] = tensor
                plan.source[model_key] = file_key
        elif (reason := keymap.ignore_reason(file_key)) is not None:
            plan.ignored[file_key] = reason
        else:
            plan.unexpected.append(file_key)
    model_head = {k for k in model_sd if is_head_key(k)}
    if file_head:
        fits = set(file_head) == model_head and all(
            tuple(state_dict[f].shape) == tuple(model_sd[m].shape) for m, f in file_head.items()
        )
        if fits:
            for model_key, file_key in file_head.items():
                plan.tensors[model_key] = state_dict[file_key]
                plan.source[model_key] = file_key
            plan.head = "loaded"
        else:
            for file_key in file_head.values():
                shape = "x".join(str(s) for s in state_dict[file_key].shape)
                plan.ignored[file_key] = f"classifier head ({shape}) not loaded: the model keeps its new head"
            plan.head = "replaced"
    bad = {m for _, m, _, _ in plan.mismatched}
    plan.missing = [k for k in model_sd if k not in plan.tensors and k not in model_head and k not in bad]
    return plan


def clip_list(items: list[str], limit: int = 8) -> str:
    """``a, b, c`` or the first ``limit`` items followed by ``... (+N more)``."""
    shown = ", ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown}, ... (+{len(items) - limit} more)"


def guess_families(keys: Collection[str]) -> list[str]:
    """Families whose marker keys appear among ``keys``."""
    return [f for f, km in FAMILY_KEYMAPS.items() if any(m in keys for m in km.markers)]


def _hint(keymap: KeyMap, model_key: str, got: tuple[int, ...], want: tuple[int, ...]) -> str | None:
    """The key map's advice on a shape mismatch of ``model_key``, if any."""
    hint = keymap.hints.get(model_key)
    return hint(got, want) if callable(hint) else hint


def describe_problems(plan: LoadPlan, keymap: KeyMap, limit: int = 8) -> list[str]:
    """Human-readable lines for the unexpected, missing and shape-mismatched keys of ``plan``."""
    lines = []
    if plan.unexpected:
        lines.append(f"unexpected keys ({len(plan.unexpected)}): {clip_list(plan.unexpected, limit)}")
    if plan.missing:
        lines.append(f"missing keys ({len(plan.missing)}): {clip_list(plan.missing, limit)}")
    # mismatches the key map has advice for come first; at most ``limit // 2`` are spelled out
    mismatched = sorted(plan.mismatched, key=lambda m: _hint(keymap, *m[1:]) is None)
    for file_key, model_key, got, want in mismatched[: max(1, limit // 2)]:
        name = file_key if file_key == model_key else f"{file_key} -> {model_key}"
        hint = _hint(keymap, model_key, got, want)
        lines.append(
            f"shape mismatch {name}: file {list(got)} vs model {list(want)}" + (f" ({hint})" if hint else "")
        )
    if len(mismatched) > max(1, limit // 2):
        lines.append(f"... (+{len(mismatched) - max(1, limit // 2)} more shape mismatches)")
    return lines
