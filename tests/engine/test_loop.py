"""The fit loop's speed settings leave results as they were: loader workers, frozen-feature caching."""

from __future__ import annotations

import json

import pandas as pd
import torch

from ecgadapt.engine.checkpoints import load_checkpoint
from ecgadapt.train.finetune import run_finetune


def _final(run) -> dict:
    final = json.loads((run / "final.json").read_text())
    return {k: final[k] for k in ("val", "test", "best")}


def _metrics(run) -> pd.DataFrame:
    return pd.read_csv(run / "metrics.csv").drop(columns=["time_s"])


def _same_weights(a, b) -> bool:
    wa, wb = (
        load_checkpoint(a / "checkpoints/best.pt")["model"],
        load_checkpoint(b / "checkpoints/best.pt")["model"],
    )
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_loader_workers_do_not_change_a_run_with_random_crops_and_dropout(make_cfg):
    # xresnet1d50 crops 2.5 s of the 10 s records at random, and post_training's second stage has dropout and
    # stochastic depth: the crops must not depend on the process that draws them, nor consume the loop's RNG.
    runs = [
        run_finetune(make_cfg("post_training", f"w{n}", f"training.num_workers={n}", model="xresnet1d50"))
        for n in (0, 2)
    ]
    assert _final(runs[0]) == _final(runs[1])
    pd.testing.assert_frame_equal(_metrics(runs[0]), _metrics(runs[1]))
    assert _same_weights(*runs)


def _head_and_metrics(run) -> tuple[dict, pd.DataFrame]:
    best = load_checkpoint(run / "checkpoints/best_stage0.pt")["model"]
    return {k: v for k, v in best.items() if k.startswith("head.")}, _metrics(run)


def test_a_probe_on_cached_frozen_features_trains_the_head_it_trains_on_the_backbone(make_cfg, capsys):
    runs = {
        on: run_finetune(
            make_cfg("linear_probe", f"cache-{on}", f"training.cache_frozen_features={on}", epochs=3)
        )
        for on in ("true", "false")
    }
    assert "frozen backbone features of" in capsys.readouterr().out
    (head_on, rows_on), (head_off, rows_off) = (_head_and_metrics(runs[k]) for k in ("true", "false"))
    assert head_on.keys() == head_off.keys() and head_on
    for k in head_on:
        torch.testing.assert_close(head_on[k], head_off[k], rtol=1e-5, atol=1e-6)
    pd.testing.assert_frame_equal(rows_on, rows_off, rtol=1e-5)
    final_on, final_off = _final(runs["true"]), _final(runs["false"])
    for split in ("val", "test"):
        for metric in ("macro_auroc", "macro_auprc", "loss"):
            assert abs(final_on[split][metric] - final_off[split][metric]) < 1e-5


def test_post_training_with_cached_probe_features_ends_where_it_ends_without(make_cfg):
    # Stage 2 (full fine-tuning, dropout) starts from stage 1's best checkpoint and runs on the backbone.
    runs = [
        run_finetune(make_cfg("post_training", f"pt-{on}", f"training.cache_frozen_features={on}"))
        for on in ("true", "false")
    ]
    pd.testing.assert_frame_equal(_metrics(runs[0]), _metrics(runs[1]), rtol=1e-4)


def test_random_training_items_fall_back_to_the_backbone_every_batch_and_say_so(make_cfg, capsys):
    # xresnet1d50 crops 2.5 s of the 10 s records at random: the probe's features differ epoch by epoch.
    runs = [
        run_finetune(
            make_cfg(
                "linear_probe", f"crop-{on}", f"training.cache_frozen_features={on}", model="xresnet1d50"
            )
        )
        for on in ("true", "false")
    ]
    assert "draw random numbers" in capsys.readouterr().out
    assert _final(runs[0]) == _final(runs[1])
    assert _same_weights(*runs)
