"""``run_finetune``: one fine-tuning run from a config to a run directory.

The order is fixed: resolve the config, prepare the run directory, build data and model, :func:`fit` on the
training and validation folds, and only then, in :func:`_final_step`, build the test dataset and score the
best checkpoint on it. Nothing before the final step can reach the test fold: :func:`fit` is given the
training and validation datasets only.

Under ``torchrun`` every process runs this function (:mod:`ecgadapt.engine.distributed`): rank 0 alone checks
and writes the run directory (and holds its lock) and scores the best checkpoint at the end; the others train
their share of every batch, then leave.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ecgadapt.data import synthetic
from ecgadapt.data.cache import ECGCache, load_or_prepare
from ecgadapt.data.dataset import ECGDataset
from ecgadapt.data.identity import (
    BY_DATABASE,
    cache_patient_ids,
    pretraining_overlap_counts,
    record_identities,
)
from ecgadapt.data.stats import cache_split_stats, format_stats
from ecgadapt.data.transforms import build_transforms
from ecgadapt.engine.budget import StagePlan, batches_per_epoch, floor_note, plan_budget, requested_budget
from ecgadapt.engine.checkpoints import load_checkpoint
from ecgadapt.engine.device import resolve_device
from ecgadapt.engine.distributed import Distributed, distributed_session
from ecgadapt.engine.environment import write_env
from ecgadapt.engine.loggers import check_logger, open_logger
from ecgadapt.engine.loop import Callback, FitResult, Trainer, class_exclusions, pos_weight_from_labels
from ecgadapt.engine.seeding import seed_everything
from ecgadapt.engine.stages import Stage, reference_model
from ecgadapt.errors import ConfigError
from ecgadapt.eval.metrics import score
from ecgadapt.eval.summary import (
    interval_note,
    macro_intervals,
    macro_text,
    min_positives_fix,
    rare_class_warning,
)
from ecgadapt.eval.temperature import fit_run_calibration
from ecgadapt.locks import RunLock
from ecgadapt.models import create_model, model_info
from ecgadapt.models.base import ECGModel
from ecgadapt.models.checkpoint import load_pretrained
from ecgadapt.runs.creation import check_run_dir, prepare_run_dir
from ecgadapt.runs.hashing import RESULT_FREE_FIELDS, check_resume_config, flat_config, run_inputs
from ecgadapt.runs.rundir import RunDir, read_json
from ecgadapt.train.config import DataConfig, FinetuneConfig
from ecgadapt.train.evaluate import eval_dataset, load_run_config, load_run_model, score_split
from ecgadapt.weights import bundled_path, recorded_ptbxl_ids, seen_ptbxl_ids, seen_ptbxl_patients

# Fields that may differ between a run and its resumption (they do not change the result on a given device).
_RESUME_FREE = RESULT_FREE_FIELDS - {"data.cache_dir"}


def bundled_weights(model_name: str) -> Path:
    """Path of the checkpoint bundled with ecgadapt for ``model_name``; a clear error when there is none."""
    path = bundled_path(model_name)
    if path is not None:
        return path
    raise ConfigError(
        f"no bundled weights for model {model_name!r}: ecgadapt ships no pretrained checkpoint for it "
        "(src/ecgadapt/weights/); pass --weights PATH to a checkpoint, or use --recipe scratch"
    )


def resolve_config(cfg: FinetuneConfig) -> FinetuneConfig:
    """A validated copy with resolution notes (which weights are loaded) filled in."""
    cfg = dataclasses.replace(cfg, notes=[])
    cfg.validate()
    if cfg.data.root is None:
        raise ConfigError("data.root is not set: pass --data DIR (a PTB-XL-layout folder)")
    if cfg.out is None:
        raise ConfigError("out is not set: pass --out DIR for the run directory")
    model_info(cfg.model.name)  # validates the model name
    weights = cfg.model.weights
    if not cfg.recipe.pretrained:
        if weights is not None:
            cfg.notes.append(
                f"recipe {cfg.recipe.name!r} trains from random initialisation: model.weights={weights!r} was NOT loaded"
            )
    elif weights is None:
        cfg.notes.append("model.weights is null: the backbone starts from random initialisation")
    elif weights == "bundled":
        cfg.notes.append(f"model.weights 'bundled' resolved to {bundled_weights(cfg.model.name)}")
    elif not Path(weights).expanduser().exists():
        raise ConfigError(
            f"model.weights {weights!r} does not exist; pass --weights PATH to a checkpoint or 'bundled'"
        )
    return cfg


def weights_to_load(cfg: FinetuneConfig) -> Path | None:
    """The checkpoint to initialise the backbone from, or None (random init)."""
    if not cfg.recipe.pretrained or cfg.model.weights is None:
        return None
    if cfg.model.weights == "bundled":
        return bundled_weights(cfg.model.name)
    return Path(cfg.model.weights).expanduser()


def build_model(cfg: FinetuneConfig, num_classes: int) -> ECGModel:
    """The model of ``cfg``: built under ``cfg.seed`` (so its fresh head is the same for every recipe and
    whether or not weights are loaded), then, if the recipe uses them, the pretrained weights without any
    classifier head the file may hold (the head always starts fresh)."""
    seed_everything(cfg.seed)
    model = create_model(cfg.model.name, num_classes=num_classes, **dict(cfg.model.kwargs))
    weights = weights_to_load(cfg)
    if weights is not None:
        load_pretrained(model, cfg.model.name, weights, load_head=False)
    return model


def _drop_reference_factory(cfg: FinetuneConfig, num_classes: int):
    cache: dict[tuple[float, float], object] = {}

    def reference(stage: Stage):
        key = (stage.drop_rate, stage.drop_path_rate)
        if key not in cache:
            cache[key] = reference_model(cfg.model.name, num_classes, *key, overrides=dict(cfg.model.kwargs))
        return cache[key]

    return reference


def run_finetune(
    cfg: FinetuneConfig,
    resume: bool = False,
    overwrite: bool = False,
    callbacks: Sequence[Callback] = (),
    cache: ECGCache | None = None,
) -> Path:
    """Fine-tune ``cfg.model`` with ``cfg.recipe`` on ``cfg.data``; return the run directory.

    ``resume`` continues a killed run from its last completed epoch (the config must match the run's);
    ``overwrite`` replaces an existing run directory. ``callbacks`` receive ``(event, info)`` per batch/epoch.
    A config with a ``tune`` search is not one fit: the search that wraps it is
    :func:`ecgadapt.bench.tune.run_tuned`.
    """
    if cfg.tune:
        raise ConfigError(
            f"the config has a tune search ({', '.join(cfg.tune)}): run it with ecgadapt.bench.tune.run_tuned "
            "(ecgadapt finetune --tune), which fits one run per candidate"
        )
    with contextlib.ExitStack() as held:
        return _run_finetune(cfg, resume, overwrite, callbacks, cache, held)


def _run_finetune(
    cfg: FinetuneConfig,
    resume: bool,
    overwrite: bool,
    callbacks: Sequence[Callback],
    cache: ECGCache | None,
    held: contextlib.ExitStack,
) -> Path:
    """:func:`run_finetune` of a plain config. Every input (data, rate, task, model, weights) is checked before
    the run directory is created (or an old one replaced), so a failed start leaves nothing behind; the run
    directory's lock is held (in ``held``) while it is written."""
    t_start = time.perf_counter()
    cfg = resolve_config(cfg)
    dist = held.enter_context(distributed_session(resolve_device(cfg.training.device)))
    device = dist.device
    run_dir, inputs = dist.on_main(lambda: _check_run_dir(cfg, resume, overwrite))

    d = cfg.data
    if cache is None:
        cache = dist.main_first(
            lambda: load_or_prepare(
                d.root,
                d.rate,
                cache_dir=d.cache_dir,
                progress=cfg.training.progress and dist.is_main,
                source=d.source,
                labels=d.labels,
            )
        )
    _, class_names = cache.labels(d.task)
    model = build_model(cfg, len(class_names))
    spec = model.input_spec
    train_set = ECGDataset(
        cache,
        d.task,
        "train",
        fraction=d.fraction,
        seed=d.seed if d.seed is not None else cfg.seed,
        transform=build_transforms(spec, cache.rate, train=True),
        test_fold=d.test_fold,
        val_fold=d.val_fold,
        segments="random",
        cache_preprocessing=d.cache_preprocessing,
    )
    val_set = eval_dataset(cache, cfg, spec, "val", cfg.training.eval_windows)
    overlap = pretraining_overlap(cache, d, inputs["weights_sha256"], inputs["weights"])
    cfg.notes.extend(overlap_notes(overlap))
    pos_weight = pos_weight_from_labels(train_set.labels) if cfg.training.pos_weight else None
    if cfg.training.head_bias_init == "prior" and pos_weight is None:
        set_head_bias_to_prior(model, train_set.labels)
    check_logger(cfg.training.logger)
    raised = floor_note(run_plans(cfg, len(train_set)), cfg.training.min_steps)
    if raised:
        cfg.notes.append(raised)  # in config.yaml's notes (not hashed) and final.json
    # rank 0 takes the lock and writes the run's first files; if it fails, every rank fails
    loggers: list[Callback] = []
    dist.on_main(lambda: loggers.extend(_open_run_dir(cfg, resume, overwrite, inputs, device, dist, held)))
    callbacks = [*callbacks, *loggers] if dist.is_main else []
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"{'resuming' if resume else 'starting'} {run_dir}: {cfg.model.name} ({n_params / 1e6:.2f} M params), "
        f"recipe {cfg.recipe.name} ({' -> '.join(s.name for s in cfg.recipe.stages)}), task {d.task} "
        f"({len(class_names)} classes), train {len(train_set)} / val {len(val_set.record_ids)} records, seed {cfg.seed}, {device}"
        + (f" x {dist.world_size} processes" if dist.enabled else "")
    )
    print(split_counts_text(cache, d, train_set))
    for note in cfg.notes:
        print(f"  note: {note}")
    meta = {
        "model_name": cfg.model.name,
        "model_kwargs": dict(cfg.model.kwargs),
        "num_classes": len(class_names),
        "class_names": list(class_names),
        "input_spec": spec.to_dict(),
        "task": d.task,
        "recipe": cfg.recipe.name,
        "seed": cfg.seed,
        "config_sha256": inputs["config_sha256"],  # stamps every checkpoint as this run's (checked on resume)
    }
    trainer = Trainer(
        model,
        cfg.recipe,
        train_set,
        val_set,
        run_dir=run_dir,
        settings=cfg.training,
        seed=cfg.seed,
        device=device,
        scorer=score,
        drop_reference=_drop_reference_factory(cfg, len(class_names)),
        pos_weight=pos_weight,
        checkpoint_meta=meta,
        callbacks=callbacks,
        dist=dist,
    )
    print(f"  {trainer.describe_budget()}")
    result = trainer.run(resume=resume)
    if not dist.is_main:
        return run_dir  # rank 0 scores the best checkpoint and writes the results
    final = _final_step(
        cfg, run_dir, cache, model, val_set, train_set, result, device, t_start, inputs, overlap
    )
    for callback in callbacks:
        callback("run_end", {"run_dir": str(run_dir), "final": final})
    return run_dir


def _check_run_dir(cfg: FinetuneConfig, resume: bool, overwrite: bool) -> tuple[Path, dict]:
    """``(run_dir, inputs)``: the run directory checked for this start (on resume: the saved config and initial
    weights must match) and the run's inputs record; nothing is written."""
    run_dir = check_run_dir(cfg.out, resume=resume, overwrite=overwrite)
    files = RunDir(run_dir)
    if resume:
        saved = FinetuneConfig.from_saved(files.config)
        saved_flat, now_flat = flat_config(saved.to_dict()), flat_config(cfg.to_dict())
        check_resume_config(saved_flat, now_flat, _RESUME_FREE, run_dir)
    inputs = run_inputs(cfg.to_dict(), weights_to_load(cfg))
    if resume and files.inputs.is_file():
        check_same_weights(files.read_inputs(), inputs, run_dir)
    return run_dir, inputs


def _open_run_dir(
    cfg: FinetuneConfig,
    resume: bool,
    overwrite: bool,
    inputs: dict,
    device: torch.device,
    dist: Distributed,
    held: contextlib.ExitStack,
) -> list[Callback]:
    """Rank 0, once every input is good: create (or replace) the run directory, hold its lock in ``held``, write
    ``config.yaml``, the inputs and ``env.json``; returns the run's logger, if it has one, as a callback."""
    run_dir = prepare_run_dir(cfg.out, resume=resume, overwrite=overwrite)  # inputs are good: now write
    held.enter_context(RunLock(run_dir))
    files = RunDir(run_dir)
    cfg.to_yaml(files.config)
    files.write_inputs(inputs)
    logger = open_logger(cfg.training.logger, run_dir, flat_config(cfg.to_dict()))
    if logger is not None:
        held.callback(logger.close)
    write_env(run_dir, device, resumed=resume, world_size=dist.world_size)
    return [] if logger is None else [logger]


def run_plans(cfg: FinetuneConfig, n_train: int) -> list[StagePlan]:
    """The optimiser-step budget of every stage, as the fit loop plans it for ``n_train`` training records."""
    t = cfg.training
    steps_per_epoch = batches_per_epoch(n_train, t.batch_size, t.max_train_batches)[0]
    return plan_budget(cfg.recipe.stages, steps_per_epoch, t.min_steps)


def split_counts_text(cache: ECGCache, data: DataConfig, train_set: ECGDataset) -> str:
    """The run header's table: records per split, those dropped for having no label in the task, and the class
    positives of each split (the training split's of the records trained on, a ``fraction`` of it)."""
    subset = train_set.labels if data.fraction != 1.0 else None
    stats = cache_split_stats(
        cache, data.task, test_fold=data.test_fold, val_fold=data.val_fold, train_labels=subset
    )
    lines = format_stats(stats).splitlines()
    if subset is not None:
        lines.insert(1, f"train: fraction {data.fraction:g} of its folds (records and positives trained on)")
    return "\n".join(f"  {line}" for line in lines)


def pretraining_overlap(
    cache: ECGCache, data: DataConfig, weights_sha256: str | None, weights_path: str | Path | None = None
) -> dict[str, Any] | None:
    """Records per split (train folds, validation fold, test fold) whose signals the initial weights were
    pretrained on, and the records of patients they saw (:func:`~ecgadapt.data.identity.pretraining_overlap_counts`),
    on any source whose records carry a PTB-XL identity. The seen ecg_ids are listed beside a bundled
    checkpoint, else in the weights file's metadata (``ecgadapt pretrain`` writes them); their patients come from
    the list beside a bundled checkpoint and from this dataset's own PTB-XL database. None when the weights saw
    no PTB-XL record."""
    seen = seen_ptbxl_ids(weights_sha256) or recorded_ptbxl_ids(weights_path)
    if not seen or (data.source == "ptbxl" and (Path(data.root) / synthetic.MARKER_NAME).is_file()):
        return None  # other weights, or ecgadapt's synthetic data (its ecg_ids are not PTB-XL's)
    identity = record_identities(cache)
    patients = dict(seen_ptbxl_patients(weights_sha256))
    if identity.how == BY_DATABASE:  # this dataset's database lists the patients of the seen records it holds
        t = identity.table[identity.table["patient_id"].notna()]
        patients.update(
            {int(i): int(p) for i, p in zip(t["ptbxl_ecg_id"], t["patient_id"]) if int(i) in seen}
        )
    return pretraining_overlap_counts(identity, seen, patients, data.test_fold, data.val_fold)


def overlap_notes(overlap: dict[str, Any] | None) -> list[str]:
    """The run's notes on a :func:`pretraining_overlap`: seen validation or test records, records of seen
    patients there, and, plainly, what could not be checked."""
    if not overlap:
        return []
    notes = []
    if overlap.get("val") or overlap.get("test"):
        notes.append(
            f"the initial weights were pretrained on the (unlabelled) signals of {overlap['test']} test and "
            f"{overlap['val']} validation records of this dataset, so their scores are optimistic; the ecg_ids are "
            "in ecgadapt/weights/*.seen_ptbxl_ids.txt or the checkpoint's seen_ptbxl_ids metadata, and the "
            "checkpoint's model card says how to leave them out"
        )
    shared = overlap.get("same_patient") or {}
    if shared.get("val") or shared.get("test"):
        notes.append(
            f"{shared['test']} test and {shared['val']} validation records belong to patients whose other records "
            "the initial weights were pretrained on (records of one patient are alike), so their scores may be "
            "optimistic"
        )
    notes += [f"pretraining overlap: {text}" for text in overlap.get("unknown") or []]
    return notes


def check_start(cfg: FinetuneConfig, cache: ECGCache | None = None) -> None:
    """Check a resolved config's inputs (data, rate, task, fraction, model, weights), writing no run directory."""
    d = cfg.data
    if cache is None:
        cache = load_or_prepare(d.root, d.rate, cache_dir=d.cache_dir, progress=cfg.training.progress)
    _, class_names = cache.labels(d.task)
    model = build_model(cfg, len(class_names))
    seed = d.seed if d.seed is not None else cfg.seed
    ECGDataset(
        cache, d.task, "train", fraction=d.fraction, seed=seed, test_fold=d.test_fold, val_fold=d.val_fold
    )
    eval_dataset(cache, cfg, model.input_spec, "val", cfg.training.eval_windows)


def check_same_weights(saved: dict, now: dict, run_dir: Path) -> None:
    """Raise a ConfigError when the initial weights file's content differs from the one the run started from."""
    if saved.get("weights_sha256") != now.get("weights_sha256"):
        raise ConfigError(
            f"{run_dir} started from weights {saved.get('weights')!r} (SHA-256 {str(saved.get('weights_sha256'))[:12]}), "
            f"but {now.get('weights')!r} now has SHA-256 {str(now.get('weights_sha256'))[:12]}: the weights file "
            "changed; start a new run with another --out"
        )


def prior_log_odds(labels, clip: float = 1e-3) -> np.ndarray:
    """Per class, the log-odds of its training prevalence (clipped to ``[clip, 1 - clip]``)."""
    p = np.clip(np.asarray(labels, dtype=np.float64).mean(axis=0), clip, 1 - clip)
    return np.log(p / (1 - p))


def set_head_bias_to_prior(model: ECGModel, labels) -> None:
    """Start a fresh linear head's bias at the class priors, so its first loss is the prevalence loss (a head
    started at 0 spends its first steps, and the backbone's gradients, only on lowering every logit)."""
    head = model.get_classifier()
    if not isinstance(head, torch.nn.Linear) or head.bias is None:
        raise ConfigError(
            f"training.head_bias_init: prior needs a linear head with a bias, {model.__class__.__name__} has "
            f"{head.__class__.__name__}; set training.head_bias_init: zero"
        )
    with torch.no_grad():
        head.bias.copy_(torch.as_tensor(prior_log_odds(labels), dtype=head.bias.dtype))


def prevalence_loss(labels) -> float:
    """Mean BCE of predicting each class's training prevalence for every record: the loss a model must beat."""
    y = np.asarray(labels, dtype=np.float64)
    p = np.clip(y.mean(axis=0), 1e-7, 1 - 1e-7)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def _final_step(
    cfg: FinetuneConfig,
    run_dir: Path,
    cache: ECGCache,
    model: ECGModel,
    val_set: ECGDataset,
    train_set: ECGDataset,
    result: FitResult,
    device: torch.device,
    t_start: float,
    inputs: dict,
    overlap: dict[str, int] | None,
) -> dict:
    """After training: score the best checkpoint on val and, unless it is a tuning candidate, on the test fold.
    ``overlap`` is the run's :func:`pretraining_overlap`."""
    t0 = time.perf_counter()
    model.load_state_dict(load_checkpoint(result.best_path)["model"])
    untrained = class_exclusions(train_set, list(val_set.class_names), cfg.training)
    val_metrics, y_val, p_val = _score_and_save(cfg, run_dir, cache, model, val_set, device, untrained, "val")
    fit_run_calibration(
        run_dir, cfg.training.calibration
    )  # from predictions_val.npz only, never the test fold
    final = {
        "recipe": cfg.recipe.name,
        "stages": [dataclasses.asdict(s) for s in cfg.recipe.stages],
        "seed": cfg.seed,
        "fraction": cfg.data.fraction,
        "task": cfg.data.task,
        "model": cfg.model.name,
        "weights": inputs["weights"],
        "weights_sha256": inputs["weights_sha256"],
        "config_sha256": inputs["config_sha256"],
        "notes": list(cfg.notes),
        "pretraining_overlap": overlap,
        "class_names": list(val_set.class_names),
        "n_records": {"train": len(train_set), "val": len(val_set.record_ids), "test": None},
        "eval_windows": cfg.training.eval_windows,
        "budget": {**result.budget, **requested_budget(run_plans(cfg, len(train_set)))},
        "prevalence_loss": {"train": prevalence_loss(train_set.labels)},
        "untrained_classes": untrained,  # left out of macro metrics (training.exclude_untrained_classes)
        "best": result.best,
        "val": val_metrics,
        "test": None,
        "device": str(device),
        "timings": {
            "train_s": result.train_time_s,
            "stages_s": result.stage_times_s,
            "final_eval_s": time.perf_counter() - t0,
            "this_invocation_s": time.perf_counter() - t_start,
        },
    }
    if cfg.training.score_test:
        final = _score_test(cfg, run_dir, cache, model, device, final)
    else:
        RunDir(run_dir).write_final(final)
        print_score(
            f"{cfg.recipe.name} seed {cfg.seed} (tuning candidate): val ",
            val_metrics,
            y_val,
            p_val,
            f"; the test fold is scored only if it is chosen -> {run_dir}",
            "validation",
        )
    return final


def _score_and_save(
    cfg: FinetuneConfig,
    run_dir: Path,
    cache: ECGCache,
    model: ECGModel,
    dataset: ECGDataset,
    device: torch.device,
    untrained: dict[str, str] | None,
    split: str,
) -> tuple[dict, np.ndarray, np.ndarray]:
    """``(metrics, y_true, y_prob)`` of ``model`` on ``dataset``, saved as ``predictions_<split>.npz`` with each
    record's patient."""
    metrics, y_true, y_prob = score_split(model, dataset, cfg, device, untrained)
    patients = cache_patient_ids(cache, dataset.record_ids)
    RunDir(run_dir).write_predictions(
        split, dataset.record_ids, dataset.class_names, y_true, y_prob, patients
    )
    return metrics, y_true, y_prob


def print_score(
    head: str, metrics: dict, y_true: np.ndarray, y_prob: np.ndarray, tail: str, split: str
) -> None:
    """Print ``head``, the macro figures of ``metrics`` with their bootstrap intervals, ``tail``; then the lines
    under them: what the intervals are, and which averaged classes of ``split`` are rare."""
    intervals = macro_intervals(y_true, y_prob, metrics)
    print(f"{head}{macro_text(metrics, intervals)}{tail}")
    note = interval_note(intervals)
    if note:
        print(f"  {note}")
    warning = rare_class_warning(metrics, split, fix=min_positives_fix())
    if warning:
        print(f"  {warning}")


def _score_test(
    cfg: FinetuneConfig, run_dir: Path, cache: ECGCache, model: ECGModel, device: torch.device, final: dict
) -> dict:
    """Score ``model`` on the test fold (once, at the end), save its predictions and write ``final.json``."""
    t0 = time.perf_counter()
    test_set = eval_dataset(cache, cfg, model.input_spec, "test", cfg.training.eval_windows)
    untrained = final.get("untrained_classes")
    test_metrics, y_test, p_test = _score_and_save(
        cfg, run_dir, cache, model, test_set, device, untrained, "test"
    )
    final = {**final, "test": test_metrics, "class_names": list(test_set.class_names)}
    final["n_records"] = {**final["n_records"], "test": len(test_set.record_ids)}
    final["timings"] = {**final["timings"], "test_eval_s": time.perf_counter() - t0}
    RunDir(run_dir).write_final(final)
    best = final["best"]
    print_score(
        f"{cfg.recipe.name} seed {cfg.seed}: test ",
        test_metrics,
        y_test,
        p_test,
        f"  (best: stage {best['stage_name']!r}, epoch {best['epoch'] + 1}) -> {run_dir}",
        "test",
    )
    return final


def score_test_fold(
    run_dir: str | Path, cache: ECGCache | None = None, device: str = "auto", final: dict | None = None
) -> dict:
    """Score a finished tuning candidate (validated, not yet tested) on the test fold; return its final.json.

    ``final``: the validated record to complete, for a run that has none written yet (default: its final.json).
    """
    run_dir = Path(run_dir)
    final = read_json(RunDir(run_dir).final) if final is None else final
    if final.get("test") is not None:
        return final
    cfg = load_run_config(run_dir)
    dev = resolve_device(device)
    model, _ = load_run_model(run_dir, dev)
    if cache is None:
        d = cfg.data
        cache = load_or_prepare(
            d.root, d.rate, cache_dir=d.cache_dir, progress=False, source=d.source, labels=d.labels
        )
    final = _score_test(cfg, run_dir, cache, model, dev, final)
    logger = open_logger(cfg.training.logger, run_dir)  # the chosen candidate's test scores join its epochs
    if logger is not None:
        logger("run_end", {"run_dir": str(run_dir), "final": final})
    return final
