"""Pretrained weights: read a file, unwrap it, remap its keys explicitly per family, check, load.

The path from a file to a model is always the same, for released foundation-model files and our own:

1. :func:`read_checkpoint` reads ``.pt``/``.pth`` (``torch.load(weights_only=True)``) or ``.safetensors``,
   unwraps a dict holding the weights under ``model``, ``state_dict`` or ``model_state_dict`` (or takes a flat
   dict of tensors), and strips a ``module.`` prefix carried by every key (DataParallel).
2. The model's family (``ModelInfo.family``) selects a :class:`KeyMap` from ``FAMILY_KEYMAPS``: an explicit
   ``remap(file_keys, model_keys) -> {file_key: model_key}`` function, an ``ignore`` table of file-key
   patterns that may be dropped on purpose (each with its reason: decoders, mask tokens, unused BatchNorm,
   pre-training heads), ``markers`` (keys that identify the family's files) and shape ``hints``.
   Families without a registered key map (our own models) use the identity map with no ignore list.
3. :func:`plan_load` matches the remapped keys against ``model.state_dict()`` without touching the model.
   Keys mapped to ``head.*`` form the classifier: loaded when they fit the model's head exactly, otherwise
   dropped (the model keeps its new head). Every other model key must be loaded; every other file key must be
   mapped or ignored; every shape must agree. Anything else raises one :class:`CheckpointError` naming the
   offending keys and the model the file looks like.
4. :func:`load_pretrained` loads the complete state dict with ``strict=True``.

A model module registers its family's map with :func:`register_keymap` at import time.
"""

from __future__ import annotations

import fnmatch
import pickle
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ecgadapt.errors import CheckpointError, ECGAdaptError

WRAPPERS: tuple[str, ...] = ("model", "state_dict", "model_state_dict")
"""Top-level keys under which known checkpoint files keep their weights, tried in this order."""

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
    _ensure_registered()
    return FAMILY_KEYMAPS.get(family) or KeyMap(
        family=family, description="ecgadapt checkpoint (model.state_dict(); the head may be absent)"
    )


# -- reading files -----------------------------------------------------------------------------------------


class OpaqueObject:
    """Inert stand-in for a pickled object whose class is not loaded; keeps its arguments and state only."""

    def __new__(cls, *args: object, **kwargs: object) -> OpaqueObject:
        obj = super().__new__(cls)
        obj.args = args
        obj.state = None
        return obj

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def __setstate__(self, state: object) -> None:
        self.state = state


@dataclass
class RawCheckpoint:
    """A checkpoint file's weights after unwrapping, with how they were stored."""

    path: Path
    format: str  # "torch" or "safetensors"
    wrapper: str | None  # the top-level key holding the weights, None for a flat dict
    state_dict: dict[str, torch.Tensor]
    stripped_prefix: str | None = None  # "module." when every key carried it
    placeholders: tuple[str, ...] = ()  # pickled globals read as inert OpaqueObject stand-ins
    other_entries: tuple[
        str, ...
    ] = ()  # the wrapper dict's other top-level keys (epoch, optimizer, config...)

    @property
    def n_numbers(self) -> int:
        """Total number of elements over all tensors."""
        return sum(t.numel() for t in self.state_dict.values())


def _sniff_format(path: Path) -> str:
    """``"safetensors"`` or ``"torch"``, from the suffix, else from the first bytes."""
    if path.suffix == ".safetensors":
        return "safetensors"
    if path.suffix in (".pt", ".pth", ".bin", ".ckpt", ".tar"):
        return "torch"
    with open(path, "rb") as f:
        head = f.read(9)
    if head[:2] == b"PK" or head[:1] == b"\x80":
        return "torch"
    if len(head) == 9 and head[8:9] == b"{":
        return "safetensors"
    raise CheckpointError(
        f"{path}: unknown checkpoint format; expected a torch file (.pt/.pth) or a .safetensors file"
    )


def _convert_advice(path: Path) -> str:
    return (
        "ecgadapt only reads tensors and plain data, never pickled code (loading such a file can run code hidden "
        "in it); if the file comes from a source you trust, convert it in a trusted, isolated environment to plain "
        "weights (the state dict of tensors alone, ideally saved with safetensors), or use the model's "
        ".safetensors release"
    )


def load_failure_reason(path: str | Path, err: BaseException) -> str:
    """Why ``torch.load(path, weights_only=True)`` failed, in words; never repeats advice to load unsafely."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError:
        size = None
    if size == 0:
        return "the file is empty (0 bytes): the download or copy was cut short; fetch or copy it again"
    lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
    safe = [
        ln
        for ln in lines
        if "weights_only" not in ln and "trust the source" not in ln and "can still be loaded" not in ln
    ]
    detail = next((ln for ln in safe if "WeightsUnpickler error" in ln or "Unsupported" in ln), None)
    if detail is None and safe:
        detail = safe[0]
    if isinstance(err, EOFError) or (detail is None and not lines):
        detail = detail or f"the file ends early ({size} bytes): it is truncated or not a torch checkpoint"
    if detail is None:
        detail = f"{type(err).__name__}: the file holds objects a safe load refuses"
    return detail.removeprefix("_pickle.UnpicklingError: ")


def _torch_load(path: Path) -> tuple[object, tuple[str, ...]]:
    """``torch.load(weights_only=True)``; pickled non-tensor objects (e.g. a config) become OpaqueObjects."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True), ()
    except pickle.UnpicklingError as err:
        first_error = load_failure_reason(path, err)
    except (RuntimeError, OSError, EOFError, ValueError) as err:
        raise CheckpointError(
            f"cannot read {path} as a torch checkpoint: {load_failure_reason(path, err)}"
        ) from None
    names: list[str] = []
    if hasattr(torch.serialization, "get_unsafe_globals_in_checkpoint"):
        try:
            names = list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
        except (RuntimeError, ValueError, pickle.UnpicklingError):  # legacy (non-zip) files
            names = []
    if names:
        try:
            with torch.serialization.safe_globals([(OpaqueObject, n) for n in names]):
                return torch.load(path, map_location="cpu", weights_only=True), tuple(names)
        except (pickle.UnpicklingError, RuntimeError, TypeError, AttributeError):
            pass
    raise CheckpointError(f"cannot read {path} safely: {first_error}; {_convert_advice(path)}")


def _non_finite(key: str, t: torch.Tensor) -> bool:
    """NaN anywhere; +-inf outside attention-mask buffers (where -inf is how a mask is written)."""
    if bool(torch.isnan(t).any()):
        return True
    return "mask" not in key.lower() and not bool(torch.isfinite(t).all())


def check_finite(state_dict: Mapping[str, torch.Tensor], path: Path) -> None:
    """A CheckpointError naming the tensors that hold NaN or infinite values (a diverged or corrupt file)."""
    bad = [k for k, t in state_dict.items() if t.is_floating_point() and _non_finite(k, t)]
    if bad:
        raise CheckpointError(
            f"checkpoint {path} holds NaN or infinite values in {len(bad)} tensor(s): {_clip(bad)}; the file is "
            "corrupt or was saved from a diverged training: use another checkpoint"
        )


def _is_tensor_dict(obj: object) -> bool:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def _unwrap(obj: object, path: Path) -> tuple[dict[str, torch.Tensor], str | None, tuple[str, ...]]:
    """The weights and the wrapper key holding them (None for a flat dict)."""
    if _is_tensor_dict(obj):
        return dict(obj), None, ()
    if isinstance(obj, Mapping):
        for wrapper in WRAPPERS:
            if _is_tensor_dict(obj.get(wrapper)):
                others = tuple(str(k) for k in obj if k != wrapper)
                return dict(obj[wrapper]), wrapper, others
        entries = ", ".join(repr(k) for k in list(obj)[:12]) or "none"
        raise CheckpointError(
            f"{path}: no weights found; top-level entries are {entries}; expected a dict of tensors, or one "
            f"under {', '.join(repr(w) for w in WRAPPERS)}"
        )
    raise CheckpointError(
        f"{path}: holds a {type(obj).__name__}, not a dict of tensors; save model.state_dict() instead"
    )


def read_checkpoint(path: str | Path) -> RawCheckpoint:
    """Read a checkpoint file and unwrap its weights (no key remapping)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}; pass a .pt/.pth or .safetensors file")
    fmt = _sniff_format(path)
    placeholders: tuple[str, ...] = ()
    if fmt == "safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            obj: object = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as err:
            raise CheckpointError(f"cannot read {path} as safetensors: {err}") from None
    else:
        obj, placeholders = _torch_load(path)
    state_dict, wrapper, others = _unwrap(obj, path)
    check_finite(state_dict, path)
    prefix = None
    if all(k.startswith("module.") for k in state_dict):
        state_dict = {k.removeprefix("module."): v for k, v in state_dict.items()}
        prefix = "module."
    return RawCheckpoint(path, fmt, wrapper, state_dict, prefix, placeholders, others)


# -- matching keys -----------------------------------------------------------------------------------------


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


def _is_head_key(key: str) -> bool:
    return key.startswith("head.")


def plan_load(model: nn.Module, state_dict: Mapping[str, torch.Tensor], keymap: KeyMap) -> LoadPlan:
    """Match ``state_dict`` (file keys) against ``model.state_dict()`` through ``keymap``; changes nothing."""
    model_sd = model.state_dict()
    mapping = keymap.remap(list(state_dict), set(model_sd))
    plan = LoadPlan(family=keymap.family)
    file_head: dict[str, str] = {}
    for file_key, tensor in state_dict.items():
        model_key = mapping.get(file_key)
        if model_key is not None and _is_head_key(model_key):
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
    model_head = {k for k in model_sd if _is_head_key(k)}
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


def _clip(items: list[str], limit: int = 8) -> str:
    """``a, b, c`` or the first ``limit`` items followed by ``... (+N more)``."""
    shown = ", ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown}, ... (+{len(items) - limit} more)"


def guess_families(keys: Collection[str]) -> list[str]:
    """Families whose marker keys appear among ``keys``."""
    _ensure_registered()
    return [f for f, km in FAMILY_KEYMAPS.items() if any(m in keys for m in km.markers)]


def _ensure_registered() -> None:
    from ecgadapt.models.registry import list_models

    list_models()


def models_of(families: Collection[str]) -> list[str]:
    """Registered model names of the given families."""
    from ecgadapt.models.registry import list_models, model_info

    return [n for n in list_models() if model_info(n).family in families]


def fit_models(state_dict: Mapping[str, torch.Tensor], names: Iterable[str]) -> dict[str, LoadPlan]:
    """Plans for loading ``state_dict`` into each named model built with default arguments on the meta device.

    Models that cannot be built here (e.g. an optional dependency is missing) are left out.
    """
    from ecgadapt.models.registry import create_model, model_info

    plans: dict[str, LoadPlan] = {}
    for name in names:
        try:
            with torch.device("meta"):
                model = create_model(name, num_classes=0)
        except (ECGAdaptError, RuntimeError, NotImplementedError):
            continue
        plans[name] = plan_load(model, state_dict, keymap_for(model_info(name).family))
    return plans


def _looks_like(state_dict: Mapping[str, torch.Tensor]) -> str:
    """One sentence on which family/model the file resembles."""
    families = guess_families(set(state_dict))
    if not families:
        return f"Its keys match no known family's markers (first keys: {_clip(list(state_dict), 4)})."
    plans = fit_models(state_dict, models_of(families))
    fits = [n for n, p in plans.items() if p.ok]
    if fits:
        return f"It looks like a {'/'.join(families)} checkpoint and fits: {', '.join(fits)}."
    return (
        f"It looks like a {'/'.join(families)} checkpoint but fits none of "
        f"{', '.join(plans) or 'its models'} as built with default settings."
    )


def _hint(keymap: KeyMap, model_key: str, got: tuple[int, ...], want: tuple[int, ...]) -> str | None:
    """The key map's advice on a shape mismatch of ``model_key``, if any."""
    hint = keymap.hints.get(model_key)
    return hint(got, want) if callable(hint) else hint


def describe_problems(plan: LoadPlan, keymap: KeyMap, limit: int = 8) -> list[str]:
    """Human-readable lines for the unexpected, missing and shape-mismatched keys of ``plan``."""
    lines = []
    if plan.unexpected:
        lines.append(f"unexpected keys ({len(plan.unexpected)}): {_clip(plan.unexpected, limit)}")
    if plan.missing:
        lines.append(f"missing keys ({len(plan.missing)}): {_clip(plan.missing, limit)}")
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


def load_pretrained(
    model: nn.Module, name: str, path: str | Path, *, load_head: bool | None = None
) -> LoadPlan:
    """Load the weights in ``path`` into ``model`` (registered as ``name``) and return the plan used.

    ``load_head``: None loads a file head only when it fits the model's head exactly; False never loads it;
    True requires it. Raises :class:`CheckpointError` for any unexplained, missing or mis-shaped key.
    """
    from ecgadapt.models.registry import model_info

    keymap = keymap_for(model_info(name).family)
    raw = read_checkpoint(path)
    plan = plan_load(model, raw.state_dict, keymap)
    if not plan.ok:
        problems = "; ".join(describe_problems(plan, keymap))
        raise CheckpointError(
            f"checkpoint {raw.path} does not fit model {name!r} (family {keymap.family}): {problems}. "
            f"{_looks_like(raw.state_dict)} Pass a checkpoint made for {name!r}, or the model it fits."
        )
    if load_head is False and plan.head == "loaded":
        for model_key in [k for k in plan.tensors if _is_head_key(k)]:
            plan.ignored[plan.source.pop(model_key)] = "classifier head not loaded (load_head=False)"
            del plan.tensors[model_key]
        plan.head = "replaced"
    if load_head is True and plan.head != "loaded":
        raise CheckpointError(
            f"checkpoint {raw.path} has no classifier head that fits model {name!r} "
            f"(head: {plan.head}); build the model with the file's number of classes or pass load_head=None"
        )
    full = model.state_dict()
    full.update(plan.tensors)
    model.load_state_dict(full, strict=True)
    return plan


@dataclass
class CheckpointInfo:
    """What a checkpoint file is: format, wrapper, size, and the family/models it fits."""

    path: Path
    format: str
    wrapper: str | None
    n_tensors: int
    n_numbers: int
    families: list[str]  # families whose marker keys the file has
    fits: list[str]  # registered models (default settings) the file loads into without problems
    stripped_prefix: str | None = None
    placeholders: tuple[str, ...] = ()
    other_entries: tuple[str, ...] = ()
    plans: dict[str, LoadPlan] = field(default_factory=dict, repr=False)  # candidate model -> its load plan

    @property
    def family(self) -> str | None:
        """The first matching family, if any."""
        return self.families[0] if self.families else None

    @property
    def model(self) -> str | None:
        """The first model the file fits, if any."""
        return self.fits[0] if self.fits else None


def detect_checkpoint(path: str | Path) -> CheckpointInfo:
    """Read ``path`` and say what it is: format, wrapper, number of numbers, family and fitting models.

    Candidates are the models of the families whose marker keys the file has, or, without any, the models of
    families that have no markers (our own models).
    """
    from ecgadapt.models.registry import list_models, model_info

    raw = read_checkpoint(path)
    families = guess_families(set(raw.state_dict))
    unmarked = {model_info(n).family for n in list_models()} - {
        f for f, km in FAMILY_KEYMAPS.items() if km.markers
    }
    plans = fit_models(raw.state_dict, models_of(families or unmarked))
    return CheckpointInfo(
        path=raw.path,
        format=raw.format,
        wrapper=raw.wrapper,
        n_tensors=len(raw.state_dict),
        n_numbers=raw.n_numbers,
        families=families,
        fits=[n for n, p in plans.items() if p.ok],
        stripped_prefix=raw.stripped_prefix,
        placeholders=raw.placeholders,
        other_entries=raw.other_entries,
        plans=plans,
    )
