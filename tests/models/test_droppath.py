"""DropPath (stochastic depth) and its per-block schedule."""

import copy
from collections.abc import Iterator

import pytest
import torch
from torch import nn

from ecgadapt.models import DropPath, create_model, drop_path_schedule


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny models run faster single-threaded, and the CPU is shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_identity_in_eval_mode() -> None:
    x = torch.randn(64, 5, 7)
    layer = DropPath(0.5).eval()
    assert torch.equal(layer(x), x)


def test_dropped_fraction_matches_rate() -> None:
    torch.manual_seed(0)
    rate, n = 0.3, 20000
    out = DropPath(rate).train()(torch.ones(n, 3, 4))
    dropped = (out == 0).all(dim=(1, 2)).float().mean().item()
    sigma = (rate * (1 - rate) / n) ** 0.5
    assert abs(dropped - rate) < 5 * sigma, f"dropped {dropped:.4f}, expected {rate} +- {5 * sigma:.4f}"


def test_drops_whole_samples_and_rescales_kept_ones() -> None:
    torch.manual_seed(1)
    rate = 0.25
    x = torch.randn(500, 6, 8)
    out = DropPath(rate).train()(x)
    kept = (out != 0).any(dim=(1, 2))
    dropped = ~kept
    assert dropped.any() and kept.any()
    assert torch.equal(out[dropped], torch.zeros_like(out[dropped]))  # a dropped sample is zero everywhere
    torch.testing.assert_close(out[kept], x[kept] / (1 - rate))  # a kept sample is scaled by 1 / keep


def test_expectation_is_preserved() -> None:
    torch.manual_seed(2)
    rate, n = 0.4, 50000
    out = DropPath(rate).train()(torch.full((n, 1), 3.0))
    sigma = 3.0 * (rate / (1 - rate) / n) ** 0.5  # std of the sample mean
    assert abs(out.mean().item() - 3.0) < 5 * sigma


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5])
def test_rejects_rates_outside_unit_interval(bad: float) -> None:
    with pytest.raises(ValueError, match="drop_prob"):
        DropPath(bad)


def test_schedule_rises_linearly_from_zero_to_rate() -> None:
    assert drop_path_schedule(0.2, 5) == pytest.approx([0.0, 0.05, 0.1, 0.15, 0.2])
    assert drop_path_schedule(0.3, 1) == [0.3]
    assert drop_path_schedule(0.3, 0) == []


def test_ecg_vit_blocks_follow_the_schedule() -> None:
    model = create_model("ecg_vit_tiny", num_classes=2, drop_path_rate=0.3, depth=4)
    rates = [(b.drop_path1.drop_prob, b.drop_path2.drop_prob) for b in model.blocks]
    expected = drop_path_schedule(0.3, 4)
    assert [r1 for r1, _ in rates] == pytest.approx(expected)
    assert [r2 for _, r2 in rates] == pytest.approx(expected)


def _without_droppath(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every DropPath replaced by Identity."""
    clone = copy.deepcopy(model)
    for module in list(clone.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, DropPath):
                setattr(module, child_name, nn.Identity())
    assert not any(isinstance(m, DropPath) for m in clone.modules())
    return clone


def test_zero_rate_is_bit_identical_to_a_model_without_droppath() -> None:
    torch.manual_seed(0)
    model = create_model("ecg_vit_tiny", num_classes=3, drop_path_rate=0.0).train()
    plain = _without_droppath(model).train()
    x = torch.randn(4, 12, 1000)
    assert torch.equal(model(x), plain(x))


def test_nonzero_rate_changes_training_outputs_only() -> None:
    torch.manual_seed(0)
    model = create_model("ecg_vit_tiny", num_classes=3, drop_path_rate=0.5)
    plain = _without_droppath(model)
    x = torch.randn(16, 12, 1000)
    assert torch.equal(model.eval()(x), plain.eval()(x))
    assert not torch.equal(model.train()(x), plain.train()(x))
