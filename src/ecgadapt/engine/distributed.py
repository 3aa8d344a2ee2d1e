"""DistributedDataParallel under ``torchrun``: one training process per device, one global batch split among them.

``torchrun --nproc_per_node=N -m ecgadapt finetune ...`` (or ``pretrain``) starts N processes and sets
``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` in each; :func:`distributed_session` reads them, joins the process
group (NCCL on CUDA, gloo on CPU) and yields a :class:`Distributed`, the one object the fit loop asks. Without
those variables (or with ``WORLD_SIZE=1``) it yields the one-process :class:`Distributed`, whose collectives
are no-ops, so the same code runs both ways.

- **Batches.** Every rank draws the same global order of an epoch from the run's seed (:func:`epoch_order`: the
  draws a shuffling one-process loader makes) and cuts it into the config's global batches; each rank trains
  on its contiguous share of every global batch (:func:`shard_batch`). The loss of a rank is weighted by its
  share, so the averaged gradient is the gradient of the global batch's mean loss (:meth:`Distributed.loss_weight`).
- **Evaluation.** Each rank predicts every ``world_size``-th item (:meth:`Distributed.shard`, no padding, so no
  item is predicted twice) and :meth:`Distributed.gather_rows` puts every rank's rows back in item order.
- **Writes.** Only rank 0 touches the run directory: :meth:`Distributed.on_main` runs a function there and hands
  its result, or its error, to every rank, so a refused lock fails all ranks together.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn
from torch.utils.data import Sampler

from ecgadapt.errors import ConfigError, ECGAdaptError

T = TypeVar("T")

TIMEOUT_ENV = "ECGADAPT_DIST_TIMEOUT_S"
"""Seconds a rank waits at a collective for the others before it fails (default :data:`DEFAULT_TIMEOUT_S`)."""
DEFAULT_TIMEOUT_S = 1800


@dataclass(frozen=True)
class Distributed:
    """Where this process stands among the training processes, and the collectives the fit loop needs."""

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        """Whether more than one process trains (a process group is joined)."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes the run directory, prints and calls the callbacks."""
        return self.rank == 0

    @property
    def backend(self) -> str | None:
        """The process group's backend (None in one process)."""
        if not self.enabled or not torch.distributed.is_initialized():
            return None
        return str(torch.distributed.get_backend())

    def shard(self, n: int) -> list[int]:
        """This rank's items of an evaluation over ``n`` items: every ``world_size``-th, starting at its rank."""
        return list(range(self.rank, n, self.world_size))

    def loss_weight(self, local: int, global_size: int) -> float:
        """The factor on this rank's mean loss over ``local`` of a global batch's ``global_size`` items that makes
        the gradient the ranks average (sum / world size) the gradient of the global batch's mean loss."""
        return local * self.world_size / global_size

    # --- collectives: no-ops in one process ---
    def barrier(self) -> None:
        """Wait until every rank is here."""
        if self.enabled:
            torch.distributed.barrier()

    def broadcast(self, obj: T) -> T:
        """Rank 0's ``obj`` on every rank (picklable; tensors travel through the CPU)."""
        if not self.enabled:
            return obj
        box = [obj if self.is_main else None]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def all_gather(self, obj: T) -> list[T]:
        """Every rank's ``obj``, in rank order (picklable; keep tensors on the CPU)."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        torch.distributed.all_gather_object(out, obj)
        return out

    def sum(self, values: Sequence[float]) -> list[float]:
        """The sum over ranks of each of ``values`` (float64)."""
        if not self.enabled:
            return [float(v) for v in values]
        t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(t)
        return t.tolist()

    def gather_rows(self, shard: Sequence[int], n: int, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
        """Every rank's rows of ``arrays`` (row k holds item ``shard[k]``), put back in item order ``0..n-1``.

        Each item must come from exactly one rank: the shards of :meth:`shard` have no padding, and a gap or a
        duplicate is an error rather than a silently wrong score."""
        if not self.enabled:
            return arrays
        parts = self.all_gather((np.asarray(shard, dtype=np.int64), [np.asarray(a) for a in arrays]))
        index = np.concatenate([idx for idx, _ in parts])
        if len(index) != n or not np.array_equal(np.sort(index), np.arange(n)):
            raise ECGAdaptError(
                f"gathered {len(index)} rows for {n} items ({len(np.unique(index))} distinct): the ranks' shards "
                "do not cover the items exactly once"
            )
        gathered = []
        for k in range(len(arrays)):
            rows = np.concatenate([part[k] for _, part in parts])
            out = np.empty_like(rows)
            out[index] = rows
            gathered.append(out)
        return tuple(gathered)

    def on_main(self, fn: Callable[[], T]) -> T:
        """``fn()`` run on rank 0 alone, its result handed to every rank; an error there is raised on every rank
        (the same :class:`~ecgadapt.errors.ECGAdaptError` class and message), so the ranks fail together."""
        if not self.enabled:
            return fn()
        outcome: tuple[str, Any] = ("ok", None)
        error: BaseException | None = None
        if self.is_main:
            try:
                outcome = ("ok", fn())
            except Exception as err:  # handed to the other ranks, then raised here as it is
                error = err
                outcome = ("error", _portable_error(err))
        outcome = self.broadcast(outcome)
        if error is not None:
            raise error
        if outcome[0] == "error":
            cls, message = outcome[1]
            raise cls(message)
        return outcome[1]

    def main_first(self, fn: Callable[[], T]) -> T:
        """``fn()`` on rank 0, then on the other ranks: a cache rank 0 prepares is only opened by the others."""
        if not self.enabled:
            return fn()
        box: list[T] = []
        self.on_main(lambda: box.append(fn()))
        return box[0] if self.is_main else fn()

    def wrap(self, module: nn.Module) -> nn.Module:
        """``module`` in DistributedDataParallel (gradients averaged across ranks), or as it is in one process."""
        if not self.enabled:
            return module
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(module, device_ids=ids)


def _portable_error(err: Exception) -> tuple[type[Exception], str]:
    """An error's class and message as another rank raises it: ecgadapt's own errors keep their class."""
    if isinstance(err, ECGAdaptError):
        return type(err), str(err)
    return ECGAdaptError, f"rank 0 failed: {type(err).__name__}: {err}"


def env_world(environ: dict[str, str] | None = None) -> tuple[int, int, int]:
    """``(world_size, rank, local_rank)`` from torchrun's variables; ``(1, 0, 0)`` without them."""
    env = os.environ if environ is None else environ
    world = int(env.get("WORLD_SIZE") or 1)
    if world <= 1:
        return 1, 0, 0
    if "RANK" not in env:
        raise ConfigError(
            f"WORLD_SIZE={world} is set but RANK is not: start distributed runs with torchrun "
            "(torchrun --nproc_per_node=N -m ecgadapt finetune ...), which sets both"
        )
    rank = int(env["RANK"])
    return world, rank, int(env.get("LOCAL_RANK") or rank)


def refuse_under_torchrun(command: str, environ: dict[str, str] | None = None) -> None:
    """Stop a command that runs several trainings of its own (a grid, a tune) when torchrun started it."""
    world, _, _ = env_world(environ)
    if world > 1:
        raise ConfigError(
            f"{command} trains several runs, each in its own process, and torchrun started {world} copies of it "
            f"(WORLD_SIZE={world}): run {command} without torchrun, and torchrun one `ecgadapt finetune` (without "
            "--tune) for a distributed run"
        )


def rank_device(device: torch.device, local_rank: int) -> torch.device:
    """The device of the process with ``local_rank`` on its machine: CUDA device ``local_rank`` when ``device`` is
    CUDA without an index, else ``device`` itself."""
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", local_rank)
    return device


@contextlib.contextmanager
def distributed_session(device: torch.device) -> Iterator[Distributed]:
    """This process's :class:`Distributed` for a run on ``device`` (``cuda`` becomes ``cuda:LOCAL_RANK``).

    Under torchrun it joins the process group (NCCL on CUDA, gloo on CPU; left when the block ends unless it was
    joined before), and ranks other than 0 print nothing to stdout. In one process it changes nothing."""
    world, rank, local_rank = env_world()
    if world == 1:
        yield Distributed(device=device)
        return
    device = rank_device(device, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    joined = not torch.distributed.is_initialized()
    if joined:
        timeout = datetime.timedelta(seconds=float(os.environ.get(TIMEOUT_ENV) or DEFAULT_TIMEOUT_S))
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend, timeout=timeout)
    ctx = Distributed(world, rank, local_rank, device)
    try:
        with contextlib.ExitStack() as quiet:
            if rank:
                quiet.enter_context(contextlib.redirect_stdout(quiet.enter_context(open(os.devnull, "w"))))
            yield ctx
    finally:
        if joined and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def epoch_order(n: int, generator: torch.Generator) -> list[int]:
    """The order in which a shuffling one-process DataLoader with ``generator`` visits ``n`` items.

    Such a loader first draws its workers' base seed from the generator, then its ``RandomSampler`` draws a
    permutation; this makes the same two draws, so every rank (and a one-process run) sees the same order."""
    torch.empty((), dtype=torch.int64).random_(generator=generator)
    return torch.randperm(n, generator=generator).tolist()


def global_batches(order: Sequence[int], batch_size: int, drop_last: bool) -> list[list[int]]:
    """``order`` cut into batches of ``batch_size`` (the last partial one dropped when ``drop_last``)."""
    batches = [list(order[i : i + batch_size]) for i in range(0, len(order), batch_size)]
    if drop_last and batches and len(batches[-1]) < batch_size:
        batches.pop()
    return batches


def shard_batch(batch: Sequence[int], rank: int, world_size: int) -> list[int]:
    """Rank ``rank``'s contiguous share of a global batch: shares differ by at most one item, the first ranks
    take the larger ones."""
    size, extra = divmod(len(batch), world_size)
    start = rank * size + min(rank, extra)
    return list(batch[start : start + size + (rank < extra)])


def check_shards(batch_sizes: Sequence[int], world_size: int) -> None:
    """Refuse a global batch with fewer items than ranks: a rank would have nothing to train on."""
    small = [b for b in batch_sizes if b < world_size]
    if small:
        raise ConfigError(
            f"a global batch of {min(small)} record(s) cannot be split across {world_size} processes (every "
            "process needs at least one record per step); use fewer processes (--nproc_per_node) or a larger "
            "training.batch_size"
        )


class ShardedBatches(Sampler[list[int]]):
    """A DataLoader ``batch_sampler``: this rank's share of each of ``batches`` (global batches of item indices)."""

    def __init__(self, batches: Sequence[Sequence[int]], rank: int = 0, world_size: int = 1) -> None:
        self.batches = [list(b) for b in batches]
        self.rank, self.world_size = rank, world_size
        check_shards([len(b) for b in self.batches], world_size)

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.batches:
            yield batch if self.world_size == 1 else shard_batch(batch, self.rank, self.world_size)

    def global_sizes(self) -> list[int]:
        """The number of items of each global batch (all ranks together)."""
        return [len(b) for b in self.batches]
