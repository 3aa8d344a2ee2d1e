"""benchmarks/gpu_projection.py: FLOPs counted as the GPU does the work, and the cell-time arithmetic."""

from __future__ import annotations

import pytest
import torch

from benchmark_scripts import benchmark_script


@pytest.fixture(scope="module")
def projection():
    yield from benchmark_script("gpu_projection")


def test_flops_of_a_linear_layer_and_of_attention_are_counted_forward_and_backward(projection) -> None:
    linear = torch.nn.Linear(8, 4, bias=False)
    forward, total = projection.count_flops(linear, torch.randn(3, 8))
    assert forward == 2 * 3 * 8 * 4  # one multiply and one add per weight per sample
    assert total == 2 * forward  # backward of a first layer: the weight's gradient only
    forward, total = projection.count_flops(linear, torch.randn(3, 8, requires_grad=True))
    assert total == 3 * forward  # ... of a later one: the input's gradient too

    class Attention(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.scaled_dot_product_attention(x, x, x)

    forward, _ = projection.count_flops(Attention(), torch.randn(1, 2, 5, 4, requires_grad=True))
    assert forward == 2 * (2 * 2 * 5 * 5 * 4), "the fused CPU kernel is counted through the math backend"


def test_a_grouped_convolutions_backward_costs_two_forward_passes(projection) -> None:
    for groups in (1, 4, 16):  # PyTorch's own formula counts the weight gradient groups times
        conv = torch.nn.Conv1d(64, 64, 3, groups=groups, bias=False)
        forward, total = projection.count_flops(conv, torch.randn(2, 64, 100, requires_grad=True))
        assert forward == 2 * 2 * 64 * (64 // groups) * 3 * 98
        assert total == 3 * forward


def test_a_fit_is_its_stages_epochs_of_training_and_validation_items(projection) -> None:
    n_train, n_val = projection.PAPER_MAIN_RECORDS["train"], projection.PAPER_MAIN_RECORDS["val"]
    stages = [("head", 2), ("all", 3)]
    gpu_bound = projection.fit_seconds(stages, 1, gpu_train=100.0, gpu_forward=300.0)
    assert gpu_bound == pytest.approx(2 * (n_train + n_val) / 300 + 3 * (n_train / 100 + n_val / 300))
    slow_loader = projection.fit_seconds(stages, 1, 100.0, 300.0, loader=50.0, workers=2)
    assert slow_loader == pytest.approx(5 * (n_train + n_val) / 50)  # overlapped: the loader sets the pace
    no_workers = projection.fit_seconds([("all", 1)], 1, 100.0, 300.0, loader=1000.0, workers=0)
    assert no_workers == pytest.approx(n_train / 100 + n_train / 1000 + n_val / 300 + n_val / 1000)


def test_loader_rates_take_each_paths_last_epoch_at_the_default_memo(projection) -> None:
    runs = [
        {
            "path": "computed",
            "memo": "default",
            "workers": 0,
            "epochs": [{"items_per_s": 1.0}, {"items_per_s": 2.0}],
        },
        {"path": "computed", "memo": "off", "workers": 0, "epochs": [{"items_per_s": 9.0}]},
        {"path": "stored", "memo": "default", "workers": 1, "epochs": [{"items_per_s": 5.0}]},
    ]
    assert projection.loader_rates({"runs": runs}) == {("computed", 0): 2.0, ("stored", 1): 5.0}


def test_paper_main_cells_are_counted_with_their_tune_candidates(projection) -> None:
    recipes = projection.paper_main_fits()
    assert sum(r["cells"] for r in recipes.values()) == 6 * 4 * 5  # tasks x recipes x seeds
    assert recipes["baseline_ft"]["fits"] == 1 and recipes["post_training"]["fits"] == 6
    assert recipes["post_training"]["stages"] == [("head", 10), ("all", 30)]
    assert {r["model"] for r in recipes.values()} == {"st_mem_vit_b75"}
