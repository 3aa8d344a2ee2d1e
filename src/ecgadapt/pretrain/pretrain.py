"""``run_pretrain``: masked-ECG pretraining of an ``ecg_vit`` encoder on unlabelled corpora, to a run directory.

Layout: ``config.yaml`` (resolved), ``env.json``, ``metrics.csv`` (per epoch: train loss, held-out masked-patch
loss on the corpora and, with ``real_val``, on a real held-out set, throughput), ``checkpoints/last.pt`` (after
every epoch), and when finished ``encoder.safetensors`` (the encoder's ``state_dict()`` without head, loadable
by ``create_model(name, pretrained=path)``; its metadata lists the PTB-XL ecg_ids the corpora held, as does
``seen_ptbxl_ids.txt``) and ``final.json``. Each epoch reseeds every RNG from
``(seed, epoch)``, so a killed run resumed with ``resume=True`` ends exactly where the uninterrupted one would
(on CPU).

Under ``torchrun`` every process runs :func:`run_pretrain` (:mod:`ecgadapt.engine.distributed`): each trains on
its share of every global batch through DistributedDataParallel and scores the whole held-out sets; rank 0 alone
reads and writes the run directory. Masks are drawn per process, so a distributed run is not the one-process
run's equal, only its like.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import functools
import hashlib
import io
import json
import math
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import nn
from torch.utils.data import ConcatDataset, Dataset, Subset
from tqdm.auto import tqdm

from ecgadapt.data.transforms import build_transforms
from ecgadapt.engine.checkpoints import load_checkpoint, save_checkpoint
from ecgadapt.engine.device import autocast, resolve_device
from ecgadapt.engine.distributed import (
    Distributed,
    ShardedBatches,
    distributed_session,
    epoch_order,
    global_batches,
)
from ecgadapt.engine.environment import write_env
from ecgadapt.engine.loop import Callback, make_batch_loader, make_loader
from ecgadapt.engine.optim import cosine_schedule_with_warmup, create_optimizer
from ecgadapt.engine.seeding import derive_seed, epoch_generator, seed_epoch, seed_everything
from ecgadapt.errors import ConfigError, DataError
from ecgadapt.fileio import atomic_write_text, write_json
from ecgadapt.locks import RunLock
from ecgadapt.models import create_model, model_info
from ecgadapt.models.base import ECGModel
from ecgadapt.pretrain.config import OBJECTIVES, PRESETS, PretrainConfig
from ecgadapt.pretrain.corpus import Corpus, check_corpus_input, open_corpus
from ecgadapt.pretrain.encoder_file import save_encoder, sort_safetensors_metadata  # noqa: F401 - re-exported
from ecgadapt.pretrain.folds import CorpusUse, format_folds, select_rows, with_folds_from
from ecgadapt.pretrain.mae import MaskedECGModel
from ecgadapt.pretrain.masked_segment import MaskedSegmentModel
from ecgadapt.runs.creation import check_run_dir, prepare_run_dir
from ecgadapt.runs.hashing import check_resume_config
from ecgadapt.runs.rundir import RunDir

CHECKPOINTS, CONFIG, FINAL, METRICS = RunDir.CHECKPOINTS, RunDir.CONFIG, RunDir.FINAL, RunDir.METRICS

ENCODER_FILE = RunDir.ENCODER
SEEN_IDS_FILE = RunDir.SEEN_IDS
"""The PTB-XL ecg_ids of every record in the run's corpora (training and held-out rows), one per line."""
ORIGINS = ("generated", "synthetic", "real")
"""Corpus origins with a held-out loss column each (``val_loss_<origin>``)."""
METRIC_COLUMNS = (
    "epoch",
    "train_loss",
    "val_loss",
    *(f"val_loss_{o}" for o in ORIGINS),
    "real_val_loss",
    "lr",
    "samples_per_s",
    "time_s",
)
_RESUME_FREE = {"num_workers", "device", "progress", "cache_dir", "allow_eval_folds"}
"""Fields that may change between a run and its resume (they do not change what it computes)."""


class CorpusDataset(Dataset):
    """Rows of one corpus through a transform: items are float32 tensors (leads, length)."""

    def __init__(self, corpus: Corpus, rows: np.ndarray, transform) -> None:
        self.corpus, self.rows, self.transform = corpus, np.asarray(rows, dtype=np.int64), transform

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(self.transform(np.asarray(self.corpus.signals[self.rows[i]])))


def mixture_indices(
    sizes: Sequence[int], weights: Sequence[float], n: int, generator: torch.Generator
) -> np.ndarray:
    """``n`` indices into the concatenation of parts of ``sizes``: part k drawn with probability ``weights[k]``
    (normalised), rows uniformly within it, with replacement."""
    sizes = np.asarray(sizes, dtype=np.int64)
    w = np.asarray(weights, dtype=np.float64) * (sizes > 0)
    if w.sum() <= 0:
        raise DataError(f"no corpus with a positive weight holds training ECGs (sizes {sizes.tolist()})")
    per_row = torch.from_numpy(np.repeat(w / w.sum() / np.maximum(sizes, 1), sizes))
    return torch.multinomial(per_row, n, replacement=True, generator=generator).numpy()


def split_rows(n: int, val_fraction: float, max_val: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(train_rows, val_rows)``: a seeded random ``val_fraction`` of ``n`` rows (at most ``max_val``) held out."""
    n_val = max(1, min(max_val, round(n * val_fraction))) if val_fraction > 0 and n > 1 else 0
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def build_encoder(cfg: PretrainConfig) -> ECGModel:
    """The encoder to pretrain: ``create_model(cfg.model, num_classes=0, ...)`` under ``cfg.seed``."""
    seed_everything(cfg.seed)
    return create_model(cfg.model, num_classes=0, drop_path_rate=cfg.drop_path_rate, **dict(cfg.model_kwargs))


def build_masked_model(cfg: PretrainConfig, encoder: ECGModel) -> MaskedECGModel | MaskedSegmentModel:
    """The pretraining model of ``cfg`` around ``encoder``: masked ECG modelling for ecg_vit, masked-segment
    reconstruction for xresnet1d (see ``OBJECTIVES``)."""
    cfg = cfg.with_preset()
    if OBJECTIVES[model_info(cfg.model).family] == "masked-segment":
        return MaskedSegmentModel(
            encoder,
            segment_size=cfg.segment_size,
            mask_ratio=cfg.mask_ratio,
            decoder_width=cfg.decoder_width,
            norm_target=cfg.norm_target,
        )
    return MaskedECGModel(
        encoder,
        decoder_width=cfg.decoder_width,
        decoder_depth=cfg.decoder_depth,
        decoder_heads=cfg.decoder_heads,
        mask_ratio=cfg.mask_ratio,
        norm_target=cfg.norm_target,
    )


def open_corpora(cfg: PretrainConfig, rate: int) -> list[Corpus]:
    """Open (preparing once) every corpus of ``cfg`` for a model at ``rate`` Hz, with the folds of array corpora's
    ecg_ids from ``cfg.corpus_folds_from``."""
    corpora = [open_corpus(c, rate=rate, cache_dir=cfg.cache_dir, progress=cfg.progress) for c in cfg.corpora]
    if cfg.corpus_folds_from is None:
        return corpora
    if not any(c.ecg_ids is not None and c.folds is None for c in corpora):
        raise ConfigError(
            f"--corpus-folds-from {cfg.corpus_folds_from} gives the folds of array corpora's ecg_ids "
            "(npy:FILE with ecg_ids.csv beside it), and no such corpus was given"
        )
    return [with_folds_from(c, cfg.corpus_folds_from) for c in corpora]


def corpus_uses(cfg: PretrainConfig, corpora: Sequence[Corpus]) -> list[CorpusUse]:
    """The rows each corpus contributes under ``cfg``'s fold filter and guard, each said in one line."""
    uses = [select_rows(c, cfg.corpus_folds, cfg.allow_eval_folds) for c in corpora]
    if cfg.corpus_folds is not None and all(u.folds is None for u in uses):
        raise ConfigError(
            f"--corpus-folds {format_folds(cfg.corpus_folds)} selects PTB-XL folds, and none of the corpora "
            f"{cfg.corpora} holds PTB-XL records with known folds"
        )
    for source, use in zip(cfg.corpora, uses):
        print(f"  corpus {source}: {use.summary}")
    return uses


def seen_ptbxl_ids(uses: Sequence[CorpusUse]) -> list[int]:
    """Sorted PTB-XL ecg_ids of every row the corpora contribute, held-out rows included (the ``real_val`` set
    is only scored, never trained on, and is not among them)."""
    ids = np.concatenate([np.zeros(0, dtype=np.int64), *(u.ptbxl_ids for u in uses)])
    return sorted(set(ids.tolist()))


def _write_metrics(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=METRIC_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in METRIC_COLUMNS})
    atomic_write_text(path, buf.getvalue())


def _read_metrics(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


@torch.no_grad()
def masked_loss(
    model: MaskedECGModel | MaskedSegmentModel,
    dataset: Dataset,
    batch_size: int,
    device: torch.device,
    seed: int,
    amp: bool,
) -> float | None:
    """Mean masked-patch loss over ``dataset`` with masks fixed by ``seed`` (the same every epoch)."""
    if len(dataset) == 0:
        return None
    model.eval()
    generator = torch.Generator(device=device).manual_seed(seed)
    total, count = 0.0, 0
    for x in make_loader(dataset, batch_size, num_workers=0):
        with autocast(device, amp):
            loss, _, _ = model(x.to(device), generator=generator)
        total += float(loss) * len(x)
        count += len(x)
    return total / count


def _train_epoch(
    model: nn.Module,
    loader: Iterable[torch.Tensor],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    batches: ShardedBatches,
    cfg: PretrainConfig,
    dist: Distributed,
    epoch: int,
) -> tuple[float, int]:
    """One optimiser step per batch of ``batches`` (this rank's share of each global batch, through ``loader``);
    returns the mean training loss and the samples seen, over all ranks."""
    model.train()
    t0 = time.perf_counter()
    loss_sum, n_seen = 0.0, 0
    bar = tqdm(
        total=len(batches),
        desc=f"pretrain epoch {epoch + 1}/{cfg.epochs}",
        disable=not cfg.progress or not dist.is_main,
        leave=False,
    )
    for step, (x, global_size) in enumerate(zip(loader, batches.global_sizes())):
        x = x.to(dist.device, non_blocking=True)
        with autocast(dist.device, cfg.amp):
            loss, _, _ = model(x)
        loss_value = loss.item()
        if dist.enabled:  # the global batch's mean loss, the same on every rank
            (loss_value,) = dist.sum([loss_value * len(x) / global_size])
            loss = loss * dist.loss_weight(len(x), global_size)
        if not math.isfinite(loss_value):
            raise DataError(
                f"pretraining loss became {loss_value} at epoch {epoch + 1}, step {step + 1}; "
                "lower --lr or check the corpus for flat or corrupt records"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        scheduler.step()
        loss_sum += loss_value * global_size
        n_seen += global_size
        bar.update(1)
        bar.set_postfix(loss=f"{loss_sum / n_seen:.4f}", sps=f"{n_seen / (time.perf_counter() - t0):.0f}")
    bar.close()
    return loss_sum / max(n_seen, 1), n_seen


def run_pretrain(
    cfg: PretrainConfig,
    out_dir: str | Path,
    resume: bool = False,
    force: bool = False,
    callbacks: Sequence[Callback] = (),
) -> Path:
    """Pretrain ``cfg.model`` by masked ECG modelling on ``cfg.corpora``; return the run directory.

    An existing non-empty ``out_dir`` is an error unless ``resume`` (continue it; the config must match) or
    ``force`` (replace it). ``callbacks`` receive ``("epoch_end", row)`` after every epoch. The run directory's
    lock is held while it is written: a second process on the same directory is refused, never interleaved.
    """
    with contextlib.ExitStack() as held:
        return _run_pretrain(cfg, out_dir, resume, force, callbacks, held)


def _run_pretrain(
    cfg: PretrainConfig,
    out_dir: str | Path,
    resume: bool,
    force: bool,
    callbacks: Sequence[Callback],
    held: contextlib.ExitStack,
) -> Path:
    """:func:`run_pretrain`, its run directory's lock held in ``held``."""
    t_start = time.perf_counter()
    unset = [k for k in PRESETS.get(model_info(cfg.model).family, {}) if getattr(cfg, k) is None]
    cfg = dataclasses.replace(cfg, corpora=[str(c) for c in cfg.corpora]).with_preset()
    cfg.validate()
    if unset:
        family = model_info(cfg.model).family
        print(
            f"  {family} preset: " + ", ".join(f"{k} {getattr(cfg, k)}" for k in unset) + " (flags override)"
        )
    dist = held.enter_context(distributed_session(resolve_device(cfg.device)))
    device = dist.device
    # writes nothing: the corpora are checked first
    run_dir = dist.on_main(lambda: check_run_dir(out_dir, resume=resume, overwrite=force))
    encoder = build_encoder(cfg)
    spec = encoder.input_spec
    cfg.input_spec = json.loads(json.dumps(spec.to_dict()))  # plain lists, as read back from YAML
    corpora = dist.main_first(lambda: open_corpora(cfg, spec.sampling_rate))
    uses = corpus_uses(cfg, corpora)
    seen = seen_ptbxl_ids(uses)
    dist.on_main(lambda: _open_run_dir(cfg, out_dir, resume, force, device, dist, seen, held))

    train_parts, val_parts = [], []
    for k, (corpus, use) in enumerate(zip(corpora, uses)):
        check_corpus_input(corpus, spec, cfg.model)
        train_pos, val_pos = split_rows(
            len(use.rows), cfg.val_fraction, cfg.max_val_samples, derive_seed(cfg.seed, k)
        )
        train_rows, val_rows = use.rows[train_pos], use.rows[val_pos]
        train_parts.append(CorpusDataset(corpus, train_rows, build_transforms(spec, corpus.rate, train=True)))
        val_parts.append(CorpusDataset(corpus, val_rows, build_transforms(spec, corpus.rate, train=False)))
    train_set, val_set = ConcatDataset(train_parts), ConcatDataset(val_parts)
    val_by_origin = {
        o: ConcatDataset([v for v, c in zip(val_parts, corpora) if c.origin == o])
        for o in ORIGINS
        if any(c.origin == o and len(v) for v, c in zip(val_parts, corpora))
    }
    if len(train_set) == 0:
        raise DataError(
            f"the pretraining corpora {cfg.corpora} hold no training ECGs after the held-out split"
        )
    real_set = None
    if cfg.real_val is not None:
        real = dist.main_first(
            lambda: open_corpus(
                cfg.real_val, rate=spec.sampling_rate, cache_dir=cfg.cache_dir, progress=cfg.progress
            )
        )
        check_corpus_input(real, spec, cfg.model)
        rows = np.random.default_rng(derive_seed(cfg.seed, 1000)).permutation(len(real))[
            : cfg.max_val_samples
        ]
        real_set = CorpusDataset(real, np.sort(rows), build_transforms(spec, real.rate, train=False))

    model = build_masked_model(cfg, encoder).to(device)
    if dist.enabled and device.type == "cuda":  # batch statistics of the global batch, as in one process
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    drop_last = len(train_set) >= cfg.batch_size
    n_batches = len(train_set) // cfg.batch_size if drop_last else 1
    steps = min(n_batches, cfg.steps_per_epoch or n_batches)
    if cfg.steps_per_epoch and cfg.steps_per_epoch > steps:
        print(
            f"  note: steps_per_epoch {cfg.steps_per_epoch} is capped at {steps}, one pass over the "
            f"{len(train_set)} training ECGs (an epoch never repeats a record)"
        )
    total_steps = steps * cfg.epochs
    optimizer = create_optimizer(model, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.95))
    warmup = min(total_steps, round(cfg.warmup_epochs * steps))
    scheduler = cosine_schedule_with_warmup(optimizer, warmup, total_steps, cfg.min_lr_ratio)

    stamp = config_stamp(cfg)
    state, finished = dist.on_main(lambda: _resume_point(run_dir, resume, stamp))
    start_epoch, rows = 0, []
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch = int(state["epoch"])
        rows = state["rows"]
    if start_epoch >= cfg.epochs and finished:
        print(f"{run_dir} is already finished ({cfg.epochs} epochs); nothing to do")
        return run_dir
    n_params = sum(p.numel() for p in encoder.parameters())
    print(
        f"{'resuming' if start_epoch else 'starting'} {run_dir}: {OBJECTIVES[model_info(cfg.model).family]} pretraining of {cfg.model} "
        f"({n_params / 1e6:.2f} M params), {len(train_set)} train / {len(val_set)} held-out ECGs from "
        f"{len(corpora)} corpus(es){f', real held-out {len(real_set)}' if real_set is not None else ''}, "
        f"{steps} steps x {cfg.epochs} epochs, batch {cfg.batch_size}, mask {cfg.mask_ratio}, {device}"
        + (f" x {dist.world_size} processes" if dist.enabled else "")
    )
    ddp_model = dist.wrap(model)

    for epoch in range(start_epoch, cfg.epochs):
        seed_epoch(cfg.seed, 0, epoch, dist.rank)
        epoch_set, batches = epoch_batches(cfg, train_set, train_parts, epoch, steps, drop_last, dist)
        loader = make_batch_loader(
            epoch_set,
            batches,
            cfg.num_workers,
            generator=epoch_generator(cfg.seed, 0, epoch),  # the workers' seeds of a one-process loader
            pin_memory=device.type == "cuda",
        )
        t0 = time.perf_counter()
        train_loss, n_seen = _train_epoch(ddp_model, loader, optimizer, scheduler, batches, cfg, dist, epoch)
        train_time = time.perf_counter() - t0
        val_seed = derive_seed(cfg.seed, 7)
        by_origin = {
            o: masked_loss(model, v, cfg.batch_size, device, val_seed, cfg.amp)
            for o, v in val_by_origin.items()
        }
        row = {
            "epoch": epoch + 1,
            "train_loss": train_loss,
            "val_loss": (
                sum(loss * len(val_by_origin[o]) for o, loss in by_origin.items()) / len(val_set)
                if by_origin
                else None
            ),
            **{f"val_loss_{o}": by_origin.get(o) for o in ORIGINS},
            "real_val_loss": (
                masked_loss(model, real_set, cfg.batch_size, device, val_seed, cfg.amp)
                if real_set is not None
                else None
            ),
            "lr": optimizer.param_groups[0]["lr"],
            "samples_per_s": n_seen / train_time,
            "time_s": time.perf_counter() - t0,
        }
        rows.append(row)
        checkpoint = {
            "epoch": epoch + 1,
            "config_sha256": stamp,  # stamps last.pt as this run's (checked on resume)
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
        }
        dist.on_main(functools.partial(_write_epoch, run_dir, checkpoint, rows))
        fmt = {k: f"{v:.4f}" if isinstance(v, float) else v for k, v in row.items()}
        print(
            f"epoch {epoch + 1}/{cfg.epochs}: train {fmt['train_loss']}  held-out {fmt['val_loss']} ("
            + ", ".join(f"{o} {fmt[f'val_loss_{o}']}" for o in by_origin)
            + f")  real-val {fmt['real_val_loss']}  {row['samples_per_s']:.0f} samples/s"
        )
        for callback in callbacks if dist.is_main else ():
            callback("epoch_end", row)

    if not dist.is_main:
        return run_dir  # rank 0 writes the encoder and final.json
    save_encoder(
        encoder,
        run_dir / ENCODER_FILE,
        cfg.model,
        extra={
            "model_kwargs": dict(cfg.model_kwargs),
            "pretrain": OBJECTIVES[model_info(cfg.model).family],
            "epochs": cfg.epochs,
            "mask_ratio": cfg.mask_ratio,
            "seed": cfg.seed,
            "corpora": list(cfg.corpora),
            "corpus_weights": list(cfg.corpus_weights),
            "corpus_folds": cfg.corpus_folds,
            "seen_ptbxl_ids": seen,
        },
    )
    final = {
        "model": cfg.model,
        "model_kwargs": dict(cfg.model_kwargs),
        "encoder": ENCODER_FILE,
        "input_spec": spec.to_dict(),
        "epochs": cfg.epochs,
        "steps_per_epoch": steps,
        "n_train": len(train_set),
        "n_val": len(val_set),
        "n_real_val": len(real_set) if real_set is not None else None,
        "corpora": [
            {
                "source": s,
                "path": str(c.path),
                "kind": c.kind,
                "origin": c.origin,
                "rate": c.rate,
                "n": len(c),
                "normalisation": c.normalisation,
                "weight": cfg.corpus_weights[k] if cfg.corpus_weights else None,
                "n_used": len(u.rows),
                "ptbxl_folds": u.folds,
                "n_ptbxl_ids": len(u.ptbxl_ids),
            }
            for k, (s, c, u) in enumerate(zip(cfg.corpora, corpora, uses))
        ],
        "seen_ptbxl_ids": {"file": SEEN_IDS_FILE, "n": len(seen)},
        "last": {k: rows[-1].get(k) for k in METRIC_COLUMNS} if rows else None,
        "device": str(device),
        "this_invocation_s": time.perf_counter() - t_start,
    }
    write_json(run_dir / FINAL, final)
    print(f"pretrained encoder -> {run_dir / ENCODER_FILE}")
    return run_dir


def _open_run_dir(
    cfg: PretrainConfig,
    out_dir: str | Path,
    resume: bool,
    force: bool,
    device: torch.device,
    dist: Distributed,
    seen: Sequence[int],
    held: contextlib.ExitStack,
) -> None:
    """Rank 0, once the corpora are good: create (or replace) the run directory, hold its lock in ``held``, check
    a resumed run's config, write ``config.yaml``, ``env.json`` and the seen PTB-XL ecg_ids."""
    # refuses a directory another process holds
    run_dir = prepare_run_dir(out_dir, resume=resume, overwrite=force)
    held.enter_context(RunLock(run_dir))
    if resume:
        saved = yaml.safe_load((run_dir / CONFIG).read_text())
        check_resume_config(saved, cfg.to_dict(), _RESUME_FREE, run_dir)
    atomic_write_text(run_dir / CONFIG, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    write_env(run_dir, device, resumed=resume, world_size=dist.world_size)
    atomic_write_text(run_dir / SEEN_IDS_FILE, "".join(f"{i}\n" for i in seen))


def config_stamp(cfg: PretrainConfig) -> str:
    """SHA-256 of what a pretraining run computes: its config without the fields a resume may change."""
    fields = {k: v for k, v in cfg.to_dict().items() if k not in _RESUME_FREE}
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()


def _resume_point(run_dir: Path, resume: bool, stamp: str) -> tuple[dict | None, bool]:
    """Rank 0: ``(last.pt with the metrics rows of its epochs, or None when the run starts, whether the encoder is
    written)``; a ``last.pt`` stamped by another run's config is refused."""
    last = run_dir / CHECKPOINTS / "last.pt"
    finished = (run_dir / ENCODER_FILE).is_file()
    if not (resume and last.is_file()):
        return None, finished
    state = load_checkpoint(last)
    theirs = state.get("config_sha256")
    if theirs is not None and theirs != stamp:
        raise ConfigError(
            f"cannot resume {run_dir}: {last} belongs to another run (config hash {theirs[:12]}, this run's is "
            f"{stamp[:12]}): it was copied from another run directory; restore this run's own checkpoint, or start "
            "over with --force"
        )
    return {**state, "rows": _read_metrics(run_dir / METRICS)[: int(state["epoch"])]}, finished


def _write_epoch(run_dir: Path, checkpoint: dict, rows: list[dict]) -> None:
    """Rank 0, after every epoch: ``last.pt`` and ``metrics.csv``."""
    save_checkpoint(run_dir / CHECKPOINTS / "last.pt", checkpoint)
    _write_metrics(run_dir / METRICS, rows)


def epoch_batches(
    cfg: PretrainConfig,
    train_set: Dataset,
    train_parts: Sequence[Dataset],
    epoch: int,
    steps: int,
    drop_last: bool,
    dist: Distributed,
) -> tuple[Dataset, ShardedBatches]:
    """The epoch's dataset and this rank's share of its ``steps`` global batches: the training ECGs shuffled, or
    with ``corpus_weights`` the mixture's rows drawn up front, in order."""
    if cfg.corpus_weights:
        drawn = mixture_indices(
            [len(p) for p in train_parts],  # type: ignore[arg-type]
            cfg.corpus_weights,
            steps * cfg.batch_size,
            epoch_generator(cfg.seed, 1, epoch),
        )
        epoch_set, order = Subset(train_set, drawn.tolist()), list(range(len(drawn)))
    else:
        epoch_set, order = train_set, epoch_order(len(train_set), epoch_generator(cfg.seed, 0, epoch))  # type: ignore[arg-type]
    batches = global_batches(order, cfg.batch_size, drop_last)[:steps]
    return epoch_set, ShardedBatches(batches, dist.rank, dist.world_size)
