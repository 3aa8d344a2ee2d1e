"""The candidates of a ``tune`` search: a config's ``tune`` grid expanded into candidate runs, one chosen.

A config's ``tune`` maps stage fields to the values to try, e.g. ``{lr: [1e-4, 3e-4, 1e-3], head_lr_scale: [1, 10]}``.
A plain field name sets that field on the stages that fine-tune the whole model (``trainable: all``), or on
every stage of a recipe without such a stage (``linear_probe``); ``stages.N.field`` sets one stage
(:func:`~ecgadapt.train.config.tune_targets`). Every combination is one *candidate*: an ordinary fine-tuning
run in ``RUN/candidates/<id>`` that trains on the training folds and is scored on the validation fold only
(``training.score_test: false``). Once every candidate has finished, :func:`select_candidate` keeps the one
with the best validation metric (``training.select_metric``, macro AUROC by default; ties go to the first in
grid order, and ``tune.json`` records them),
and only that candidate is then scored on the test fold (:func:`finish_tuned_run`). The run directory then
holds the chosen candidate's results, as if it had been trained alone, plus ``tune.json`` with every
candidate's validation scores. The search itself, which trains the candidates, is :mod:`ecgadapt.bench.tune`.
"""

from __future__ import annotations

import itertools
import math
import os
import shutil
from pathlib import Path
from typing import Any

from ecgadapt.errors import ConfigError, DataError
from ecgadapt.eval.temperature import fit_run_calibration
from ecgadapt.fileio import replacing
from ecgadapt.locks import writes_run_dir
from ecgadapt.runs.rundir import RunDir, read_json
from ecgadapt.train.config import FinetuneConfig, tune_targets
from ecgadapt.train.finetune import score_test_fold


def check_candidates(cfg: FinetuneConfig) -> None:
    """Raise :class:`ConfigError` unless every candidate of ``cfg``'s ``tune`` search is a valid config."""
    for cand in candidate_configs(cfg, validate=False).values():
        cand.validate()


def _value_text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def candidate_id(values: dict[str, Any]) -> str:
    """Folder name of a candidate: ``lr=0.0003__head_lr_scale=10``."""
    return "__".join(f"{key.replace('stages.', 's')}={_value_text(v)}" for key, v in values.items())


def candidate_values(cfg: FinetuneConfig) -> list[dict[str, Any]]:
    """Every combination of the ``tune`` values, in the order given (first key varies slowest)."""
    keys = list(cfg.tune)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(cfg.tune[k] for k in keys))]


def candidate_configs(cfg: FinetuneConfig, validate: bool = True) -> dict[str, FinetuneConfig]:
    """``{candidate id: config}``: the base config with one combination applied, no ``tune``, validation only."""
    out = {}
    for values in candidate_values(cfg):
        d = cfg.to_dict()
        d["tune"] = {}
        d["training"]["score_test"] = False
        for key, value in values.items():
            targets, name = tune_targets(cfg, key)
            for i in targets:
                d["recipe"]["stages"][i][name] = value
        cid = candidate_id(values)
        if cfg.out is not None:
            d["out"] = str(RunDir(cfg.out).candidate(cid).path)
        cand = FinetuneConfig.from_dict(d) if validate else _unvalidated(d)
        out[cid] = cand
    return out


def _unvalidated(d: dict) -> FinetuneConfig:
    try:
        return FinetuneConfig.from_dict(d)
    except ConfigError as err:
        raise ConfigError(f"a tune candidate is not a valid config: {err}") from None


def _val_score(final: dict, metric: str) -> float:
    value = (final.get("val") or {}).get(metric)
    return math.nan if value is None else float(value)


def select_candidate(candidate_dirs: dict[str, Path], metric: str = "macro_auroc") -> tuple[str, list[dict]]:
    """The id of the candidate with the best validation ``metric`` (lowest for ``loss``; ties and NaNs: the
    first finite one in order), and a summary row per candidate. Reads validation results only."""
    rows = []
    for cid, d in candidate_dirs.items():
        if not RunDir(d).final.is_file():
            raise DataError(f"tune candidate {d} has not finished; resume the run before selecting")
        final = read_json(RunDir(d).final)
        if final.get("test") is not None:
            raise DataError(
                f"tune candidate {d} was scored on the test fold before selection: it is not a candidate"
            )
        val = final.get("val") or {}
        rows.append(
            {
                "id": cid,
                "run_dir": str(d),
                "val_macro_auroc": val.get("macro_auroc"),
                "val_macro_auprc": val.get("macro_auprc"),
                "val_loss": val.get("loss"),
                "steps_run": (final.get("budget") or {}).get("total_steps_run"),
                "score": _val_score(final, metric),
            }
        )
    sign = -1.0 if metric == "loss" else 1.0
    finite = [r for r in rows if math.isfinite(r["score"])]
    best = max(finite, key=lambda r: sign * r["score"]) if finite else rows[0]  # max keeps the first of ties
    return best["id"], rows


def tie_record(rows: list[dict], chosen: str) -> dict[str, Any] | None:
    """The candidates whose validation score equals the chosen one's exactly, and the rule that broke the tie
    (the first in grid order was taken); None when the chosen candidate is the only best one."""
    best = next(r["score"] for r in rows if r["id"] == chosen)
    tied = [r["id"] for r in rows if math.isfinite(best) and r["score"] == best]
    if len(tied) < 2:
        return None
    return {
        "candidates": tied,
        "score": best,
        "rule": "ties go to the first candidate in grid order (the order of the tune values, first key slowest)",
        "chosen": chosen,
    }


def link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link (else copy) ``src`` to ``dst`` through a fresh temporary name: a symlink at ``dst`` is replaced,
    never written through."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    with replacing(dst) as tmp:
        tmp.unlink()  # os.link needs the (random, fresh) name free
        try:
            os.link(src, tmp)
        except FileExistsError:
            raise
        except OSError:
            shutil.copy2(src, tmp)


@writes_run_dir
def finish_tuned_run(run_dir: str | Path, cache: Any = None, device: str = "auto") -> dict:
    """Select the best candidate of the tuned run in ``run_dir`` on the validation fold, score it (only it) on
    the test fold, and give the run directory its results; return the run's ``final.json``."""
    run_dir = Path(run_dir)
    run = RunDir(run_dir)
    cfg = FinetuneConfig.from_saved(run.config)
    dirs = {cid: run.candidate(cid).path for cid in candidate_configs(cfg)}
    chosen, rows = select_candidate(dirs, cfg.training.select_metric)
    values = {candidate_id(v): v for v in candidate_values(cfg)}[chosen]
    record = {
        "select_metric": cfg.training.select_metric,
        "split": f"val (fold {cfg.data.val_fold})",
        "chosen": chosen,
        "chosen_values": values,
        "candidates": [{k: v for k, v in r.items() if k != "score"} for r in rows],
        "search_steps": sum(int(r["steps_run"] or 0) for r in rows),
        "tie": tie_record(rows, chosen),
    }
    if record["tie"]:
        print(
            f"{run_dir}: {len(record['tie']['candidates'])} candidates tie on validation "
            f"{cfg.training.select_metric} ({', '.join(record['tie']['candidates'])}); the first in grid order, "
            f"{chosen}, is taken"
        )
    run.write_tune(record)  # the choice is on disk before the test fold is touched
    chosen_dir = dirs[chosen]
    final = score_test_fold(chosen_dir, cache=cache, device=device)
    chosen_run = RunDir(chosen_dir)
    for src, dst in (
        (chosen_run.predictions("val"), run.predictions("val")),
        (chosen_run.predictions("test"), run.predictions("test")),
        (chosen_run.metrics, run.metrics),
        (chosen_run.best_checkpoint, run.best_checkpoint),
    ):
        link_or_copy(src, dst)
    fit_run_calibration(run_dir, cfg.training.calibration)  # on the chosen candidate's validation predictions
    final = {
        **final,
        "tuning": record,
        "config_sha256": run.read_inputs().get("config_sha256"),
    }
    run.write_final(final)
    return final
