"""The pieces of distributed training: the global order, the shards of a batch, the loss weights, and the
collectives on two gloo processes (gathering in item order, an error of rank 0 raised on every rank)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from distributed_runs import rank_errors, run_ranks
from ecgadapt.engine.distributed import (
    Distributed,
    ShardedBatches,
    distributed_session,
    env_world,
    epoch_order,
    global_batches,
    rank_device,
    shard_batch,
)
from ecgadapt.engine.seeding import epoch_generator, seed_epoch
from ecgadapt.errors import ConfigError, DataError


@pytest.mark.parametrize(
    "n, batch_size, drop_last", [(96, 16, False), (103, 16, True), (103, 16, False), (5, 8, False)]
)
def test_the_global_batches_are_those_of_a_shuffling_one_process_loader(n, batch_size, drop_last):
    loader = DataLoader(
        range(n), batch_size=batch_size, shuffle=True, drop_last=drop_last, generator=epoch_generator(3, 1, 4)
    )
    expected = [b.tolist() for b in loader]
    assert global_batches(epoch_order(n, epoch_generator(3, 1, 4)), batch_size, drop_last) == expected


@pytest.mark.parametrize("size", [2, 7, 15, 16])
@pytest.mark.parametrize("world", [1, 2, 3])
def test_the_shards_of_a_global_batch_are_the_batch_in_order_split_within_one_item(size, world):
    if size < world:
        return
    batch = list(range(100, 100 + size))
    shards = [shard_batch(batch, r, world) for r in range(world)]
    assert sum(shards, []) == batch
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_weighted_shard_losses_average_to_the_global_batch_mean():
    # DistributedDataParallel averages the ranks' gradients; the weights make that the global batch's gradient
    losses = np.random.default_rng(0).random(15)
    for world in (2, 3, 4):
        shards = [shard_batch(list(range(15)), r, world) for r in range(world)]
        weighted = [
            Distributed(world, r).loss_weight(len(s), 15) * losses[s].mean() for r, s in enumerate(shards)
        ]
        assert sum(weighted) / world == pytest.approx(losses.mean())


def test_a_global_batch_smaller_than_the_number_of_processes_is_refused():
    assert list(ShardedBatches([[0, 1, 2], [3, 4]], rank=1, world_size=2)) == [[2], [4]]
    with pytest.raises(ConfigError, match="cannot be split across 3 processes"):
        ShardedBatches([[0, 1, 2], [3, 4]], rank=0, world_size=3)


def test_torchruns_variables_name_the_rank_and_its_device():
    assert env_world({}) == (1, 0, 0)
    assert env_world({"WORLD_SIZE": "1", "RANK": "0"}) == (1, 0, 0)
    assert env_world({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"}) == (4, 3, 1)
    with pytest.raises(ConfigError, match="torchrun"):
        env_world({"WORLD_SIZE": "2"})
    assert rank_device(torch.device("cuda"), 1) == torch.device("cuda", 1)
    assert rank_device(torch.device("cpu"), 1) == torch.device("cpu")


def test_one_process_is_left_as_it_was(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    with distributed_session(torch.device("cpu")) as dist:
        assert not dist.enabled and dist.is_main and not torch.distributed.is_initialized()
        rows = np.arange(6.0).reshape(3, 2)
        assert dist.gather_rows([0, 1, 2], 3, rows)[0] is rows
        assert dist.on_main(lambda: 7) == 7 and dist.sum([1.5]) == [1.5]
        assert dist.shard(5) == [0, 1, 2, 3, 4]


def test_each_rank_after_the_first_draws_its_own_dropout():
    draws = []
    for rank in (0, 0, 1):
        seed_epoch(5, 1, 2, rank)
        draws.append(torch.rand(3))
    assert torch.equal(draws[0], draws[1]) and not torch.equal(draws[0], draws[2])


def _collectives(out: Path) -> None:
    """On every rank: gather uneven shards of 7 items, sum, and see rank 0's errors (its class, its message)."""
    with distributed_session(torch.device("cpu")) as dist:
        shard = dist.shard(7)
        values = np.asarray([[10.0 * i, i] for i in shard])
        (gathered,) = dist.gather_rows(shard, 7, values)
        total = dist.sum([dist.rank + 1.0])
        found = {"shard": shard, "gathered": gathered.tolist(), "sum": total}
        for fail in (lambda: (_ for _ in ()).throw(DataError("rank 0 cannot read the cache")), lambda: 1 / 0):
            try:
                dist.on_main(fail)
            except Exception as err:  # noqa: BLE001 - recorded for the test
                found.setdefault("errors", []).append([type(err).__name__, str(err)])
        try:
            dist.gather_rows([0], 7, values[:1])  # the shards miss items: refused on every rank
        except Exception as err:  # noqa: BLE001
            found["gap"] = str(err)
        order = []
        dist.main_first(lambda: order.append(dist.rank))
        found["main_first"] = order
        (out / f"rank{dist.rank}.json").write_text(json.dumps(found))


def test_two_ranks_gather_in_item_order_and_raise_rank_0s_errors_together(tmp_path):
    assert run_ranks(_collectives, 2, tmp_path, errors=tmp_path / "errors") == [0, 0], rank_errors(
        tmp_path / "errors"
    )
    found = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert found[0]["shard"] == [0, 2, 4, 6] and found[1]["shard"] == [1, 3, 5]
    for f in found:
        assert f["gathered"] == [[10.0 * i, i] for i in range(7)]
        assert f["sum"] == [3.0]
        assert f["errors"][0] == ["DataError", "rank 0 cannot read the cache"]
        assert "do not cover the items exactly once" in f["gap"]
    assert found[0]["errors"][1] == ["ZeroDivisionError", "division by zero"]
    assert found[1]["errors"][1] == ["ECGAdaptError", "rank 0 failed: ZeroDivisionError: division by zero"]
    assert found[0]["main_first"] == [0] and found[1]["main_first"] == [1]
