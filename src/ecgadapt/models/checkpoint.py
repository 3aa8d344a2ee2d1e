"""Pretrained weights: read a file safely, unwrap it, remap its keys per family, check, load; say what it is.

The path from a file to a model is always the same, for released foundation-model files and our own:

1. :func:`read_checkpoint` reads ``.pt``/``.pth`` (``torch.load(weights_only=True)``) or ``.safetensors``,
   unwraps a dict holding the weights under ``model``, ``state_dict`` or ``model_state_dict`` (or takes a flat
   dict of tensors), and strips a ``module.`` prefix carried by every key (DataParallel).
2. The model's family (``ModelInfo.family``) selects a :class:`~ecgadapt.models.keymap.KeyMap`
   (:mod:`ecgadapt.models.keymap`), and :func:`~ecgadapt.models.keymap.plan_load` matches the remapped keys
   against the model. Anything unexplained raises one :class:`CheckpointError` naming the offending keys and
   the model the file looks like (found through the registry).
3. :func:`load_pretrained` loads the complete state dict with ``strict=True``.

:func:`detect_checkpoint` says what a file is: its format, wrapper, family and the registered models it fits.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ecgadapt.errors import CheckpointError, ECGAdaptError
from ecgadapt.models.keymap import (
    FAMILY_KEYMAPS,
    LoadPlan,
    clip_list,
    describe_problems,
    guess_families,
    is_head_key,
    keymap_for,
    plan_load,
)
from ecgadapt.models.registry import build_model, list_models, model_info

WRAPPERS: tuple[str, ...] = ("model", "state_dict", "model_state_dict")
"""Top-level keys under which known checkpoint files keep their weights, tried in this order."""


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
    return _without_unsafe_advice(detail.removeprefix("_pickle.UnpicklingError: "))


_UNSAFE_ADVICE = re.compile(r"(allow_pickle|weights_only|safe_globals|trust|pickle\.load)", re.IGNORECASE)
"""Words of the sentences in torch's and numpy's errors that advise loading a file unsafely."""


def _without_unsafe_advice(detail: str) -> str:
    """``detail`` in our words: a pickled global is named as such, and no sentence advises an unsafe load."""
    pickled = re.search(r"Unsupported global: GLOBAL ([\w.]+)", detail)
    if pickled:
        return (
            f"it holds a pickled Python object ({pickled[1]}), not only tensors and plain data; ecgadapt never "
            "loads pickled objects"
        )
    kept = [part for part in re.split(r"(?<=\.)\s+", detail) if not _UNSAFE_ADVICE.search(part)]
    return " ".join(kept) or "the file holds objects a safe load refuses"


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


def non_finite_tensors(obj: object, prefix: str = "") -> list[str]:
    """Dotted names of the floating-point tensors in ``obj`` (a tensor, or mappings and lists of them, nested)
    that hold NaN or infinite values."""
    if isinstance(obj, torch.Tensor):
        return [prefix or "tensor"] if obj.is_floating_point() and _non_finite(prefix, obj) else []
    if isinstance(obj, Mapping):
        items: Iterable = obj.items()
    elif isinstance(obj, (list, tuple)):
        items = enumerate(obj)
    else:
        return []
    return [bad for k, v in items for bad in non_finite_tensors(v, f"{prefix}.{k}" if prefix else str(k))]


def check_finite(state: Mapping[str, object], path: Path, fix: str = "use another checkpoint") -> None:
    """A CheckpointError naming the tensors of ``state`` (nested) that hold NaN or infinite values, and ``path``:
    the file is corrupted (a file ecgadapt writes never holds them)."""
    bad = non_finite_tensors(state)
    if bad:
        raise CheckpointError(
            f"checkpoint {path} holds NaN or infinite values in {len(bad)} tensor(s): {clip_list(bad)}; the file "
            f"is corrupted: {fix}"
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


# -- registered models -----------------------------------------------------------------------------------


def models_of(families: Collection[str]) -> list[str]:
    """Registered model names of the given families."""
    return [n for n in list_models() if model_info(n).family in families]


def fit_models(state_dict: Mapping[str, torch.Tensor], names: Iterable[str]) -> dict[str, LoadPlan]:
    """Plans for loading ``state_dict`` into each named model built with default arguments on the meta device.

    Models that cannot be built here (e.g. an optional dependency is missing) are left out.
    """
    plans: dict[str, LoadPlan] = {}
    for name in names:
        try:
            with torch.device("meta"):
                model = build_model(name, num_classes=0)
        except (ECGAdaptError, RuntimeError, NotImplementedError):
            continue
        plans[name] = plan_load(model, state_dict, keymap_for(model_info(name).family))
    return plans


def _looks_like(state_dict: Mapping[str, torch.Tensor]) -> str:
    """One sentence on which family/model the file resembles."""
    families = guess_families(set(state_dict))
    if not families:
        return f"Its keys match no known family's markers (first keys: {clip_list(list(state_dict), 4)})."
    plans = fit_models(state_dict, models_of(families))
    fits = [n for n, p in plans.items() if p.ok]
    if fits:
        return f"It looks like a {'/'.join(families)} checkpoint and fits: {', '.join(fits)}."
    return (
        f"It looks like a {'/'.join(families)} checkpoint but fits none of "
        f"{', '.join(plans) or 'its models'} as built with default settings."
    )


def load_pretrained(
    model: nn.Module, name: str, path: str | Path, *, load_head: bool | None = None
) -> LoadPlan:
    """Load the weights in ``path`` into ``model`` (registered as ``name``) and return the plan used.

    ``load_head``: None loads a file head only when it fits the model's head exactly; False never loads it;
    True requires it. Raises :class:`CheckpointError` for any unexplained, missing or mis-shaped key.
    """
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
        for model_key in [k for k in plan.tensors if is_head_key(k)]:
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
