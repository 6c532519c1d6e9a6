"""Training with the paper's protocol: ``mmchange train`` as a library call.

Defaults follow architecture.md section (c): Adam (betas 0.9/0.99, eps 1e-8, weight decay 1e-4,
lr 5e-4), 200-iteration warm-up then poly(0.9) decay over 40,000 iterations rounded up to whole
epochs, batch 32, seed 2333, border crop-resize / flips / temporal swap, BCE + Dice on all four
outputs, validation every epoch from epoch 1 (and always after the last), best checkpoint by
validation F1 (ties go to the later epoch).

A run lives in ``<project>/train/<name>``: ``config.yaml`` (resolved), ``metrics.csv`` (a row per
logged step and per validation), ``curves.png`` (loss, validation F1/IoU and learning rate against
the iteration), ``tensorboard/`` (event files, with the ``tensorboard`` extra; see
:mod:`~mmchange_core.training.metrics_log`), ``best.safetensors`` and ``last.safetensors`` (mmchange
checkpoints), ``state.pt`` (everything needed to resume bit-for-bit) and, for text models,
``caption_store.json``. Every file is written atomically. SIGINT/SIGTERM save a resumable state at
the end of the current iteration (see :mod:`~mmchange_core.training.interrupt`); on resume,
``config.yaml`` must still match the config recorded in ``state.pt`` (except :data:`RESUMABLE_CHANGES`).

Fine-tuning (``weights``, ``freeze``; see :mod:`~mmchange_core.training.finetune`): a new run starts from the
weights of a checkpoint instead of the ImageNet trunk, after checking that they fit its config, and its
checkpoints record the parent; a resumed run restores its own weights and never reads ``weights`` again.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from mmchange_core.config import ConfigError, Override, load_config, save_config, to_dict
from mmchange_core.data.dataset import ChangeDetectionDataset, EpochSampler, check_label_set
from mmchange_core.data.layouts import DatasetLayout, detect_layout, resolve_dataset_root
from mmchange_core.data.transforms import paper_augmentation
from mmchange_core.device import resolve_precision
from mmchange_core.distributed import DistributedContext, distributed_session
from mmchange_core.evaluation.evaluate import evaluate
from mmchange_core.inference.detector import ChangeDetector
from mmchange_core.inference.runner import autocast_context, enable_compile_cache
from mmchange_core.training.config import TrainConfig, cache_settings, validate_config
from mmchange_core.training.finetune import (
    PARENT_KEY,
    ParentWeights,
    check_weights,
    freeze_model,
    hold_frozen,
    open_weights,
    load_parent_weights,
    trainable_parameters,
)
from mmchange_core.training.interrupt import StopSignal, ignore_stop_signals
from mmchange_core.data.loader_errors import unwrap_worker_error
from mmchange_core.training.losses import deep_supervision_loss
from mmchange_core.training.metrics_log import MetricsLog
from mmchange_core.training.report import write_train_report
from mmchange_core.training.optimization import build_optimizer, optimizer_step
from mmchange_core.training.schedule import WarmupPolyLR, run_length
from mmchange_core.text.features import open_caption_store, pair_embeddings, verify_pair_captions
from mmchange_core.text.store import caption_command
from mmchange_core.training.state import (
    TrainState,
    load_train_state,
    progress_from,
    restore_rng_state,
    save_train_state,
)
from mmchange_core.errors import InputError, MMChangeError
from mmchange_core.io.atomic import atomic_write_text
from mmchange_core.metrics import METRIC_NAMES
from mmchange_core.models import CheckpointMeta, ModelConfig, build_model, save_checkpoint
from mmchange_core.models.checkpoint import Normalization, read_checkpoint_meta
from mmchange_core.io.classes import ClassScheme, load_class_file
from mmchange_core.io.imagery import Imagery
from mmchange_core.io.raster import read_band_plan
from mmchange_core.data.band_stats import band_statistics
from mmchange_core.models.mmchange import MMChange
from mmchange_core.progress import ProgressEvent
from mmchange_core.runs import BEST_CHECKPOINT, RunBusyError, lock_run, next_run_dir

CONFIG_FILE = "config.yaml"
STATE_FILE = "state.pt"
BEST_FILE = BEST_CHECKPOINT
LAST_FILE = "last.safetensors"
CAPTION_STORE_FILE = "caption_store.json"


#: Keys that may differ when a run is resumed (they do not change the result).
RESUMABLE_CHANGES = frozenset({"device", "workers", "compile", "project", "name", "accept_stale_captions",
                               "log_every", "decoded_cache", "cache_dir", "cache_limit_gb"})


class TrainingDivergedError(MMChangeError):
    """The loss became NaN or infinite."""


@dataclass
class TrainInfo:
    """What a run is about to do (sent to the observer once)."""

    run_dir: Path
    layout: str
    datasets: list[str]
    device: str
    precision: str
    world_size: int
    epochs: int
    iters_per_epoch: int
    total_iters: int
    start_iteration: int
    text: dict | None
    resumed: bool


@dataclass
class TrainResult:
    """Outcome of :func:`train`."""

    run_dir: Path
    best_checkpoint: Path | None
    last_checkpoint: Path | None
    best_epoch: int
    best_f1: float | None
    iterations: int
    total_iters: int
    completed: bool
    history: list[dict[str, Any]]
    #: ``"SIGINT"``/``"SIGTERM"`` when a signal asked the run to stop (set even when the signal came so
    #: late that the run completed), ``"stop_after"`` for ``stop_after``, None otherwise.
    stopped_by: str | None = None
    report: Path | None = None  # report.html (None when it could not be written, and on processes other than 0)
    #: The certified int8 export of the best checkpoint made at the end (``best.int8.onnx``), and its certificate.
    int8: Path | None = None
    int8_certificate: dict[str, Any] | None = None

    def files(self) -> dict[str, Path]:
        """The run's metrics log, curves and TensorBoard folder (whether or not they exist yet)."""
        from mmchange_core.training.metrics_log import CURVES_FILE, METRICS_FILE, TENSORBOARD_DIR

        return {"metrics_csv": self.run_dir / METRICS_FILE, "curves": self.run_dir / CURVES_FILE,
                "tensorboard": self.run_dir / TENSORBOARD_DIR}

    def to_dict(self) -> dict[str, Any]:
        """The result as ``mmchange train --json`` prints it."""
        from mmchange_core.reporting.report import report_fields

        return {
            "run_dir": str(self.run_dir),
            "best_checkpoint": str(self.best_checkpoint) if self.best_checkpoint else None,
            "last_checkpoint": str(self.last_checkpoint) if self.last_checkpoint else None,
            "best_epoch": self.best_epoch if self.best_epoch >= 0 else None,
            "best_val_f1": self.best_f1,
            "iterations": self.iterations,
            "total_iterations": self.total_iters,
            "completed": self.completed,
            "stopped_by": self.stopped_by,
            **{name: str(path) if path.exists() else None for name, path in self.files().items()},
            "int8": str(self.int8) if self.int8 else None,
            "int8_certificate": self.int8_certificate,
            **report_fields(self.report),
        }


class TrainObserver:
    """Progress events of a run (only process 0 gets them). Subclass and override what you need."""

    def on_start(self, info: TrainInfo) -> None:
        """The run is set up and about to train."""

    def on_progress(self, event: ProgressEvent) -> None:
        """Task ``train``: one optimizer step is done (``done`` counts from 1; fields ``loss`` and ``lr``).
        Task ``validate``: validation pairs done after an epoch."""

    def on_epoch_end(self, row: dict[str, Any]) -> None:
        """An epoch is done and saved; ``row`` is its summary (epoch, iterations, lr, train_loss, the val_*
        metrics when it was validated, seconds, best); metrics.csv has the per-step rows."""

    def on_message(self, text: str) -> None:
        """A one-line note for the user."""


# --------------------------------------------------------------------------------------------------
# configuration


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"augment": {"flip_p": 0.5}}`` as ``{"augment.flip_p": 0.5}`` (the ``--set`` spelling)."""
    items: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            items.update(_flat(value, f"{prefix}{key}."))
        else:
            items[f"{prefix}{key}"] = value
    return items


def config_changes(before: dict[str, Any], after: dict[str, Any]) -> str:
    """The keys (other than :data:`RESUMABLE_CHANGES`) whose values differ, as ``"lr 0.0005 -> 0.1, ..."``;
    empty when a run may resume with ``after``. A key ``before`` lacks (a run started by an older version,
    before the key existed) counts as its default."""
    new = _flat(after)
    old = {**{k: v for k, v in _flat(to_dict(TrainConfig())).items() if k in new}, **_flat(before)}
    keys = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k) and k not in RESUMABLE_CHANGES)
    return ", ".join(f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in keys)


def _resumable_keys() -> str:
    return ", ".join(sorted(RESUMABLE_CHANGES))


def resume_config(run_dir: Path, overrides: Sequence[Override] = ()) -> TrainConfig:
    """The stored config of ``run_dir`` with ``overrides``; only device/worker settings may change."""
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise InputError(f"{run_dir} is not a training run (no {CONFIG_FILE}); pass the folder printed by "
                         f"'mmchange train'")
    stored = load_config(TrainConfig, path)
    config = load_config(TrainConfig, path, overrides)
    changed = config_changes(to_dict(stored), to_dict(config))
    if changed:
        raise ConfigError(f"cannot change {changed} when resuming {run_dir}; start a new run instead (only "
                          f"{_resumable_keys()} may change on resume)")
    return config


def _check_recorded_config(recorded: dict[str, Any] | None, config: TrainConfig, run_dir: Path) -> None:
    """``config`` (normally ``<run>/config.yaml``) must match what the run recorded at its start."""
    changed = config_changes(recorded, to_dict(config)) if recorded is not None else ""
    if changed:
        raise ConfigError(f"{run_dir / CONFIG_FILE} differs from the config the run was started with ({changed}); "
                          f"revert the edit to resume, or start a new run with it (mmchange train --config "
                          f"{run_dir / CONFIG_FILE}); only {_resumable_keys()} may change on resume, also as options")


def find_run(spec: str | Path, project: str | Path = "runs") -> Path:
    """A run folder given as a path or as a name under ``<project>/train``."""
    path = Path(spec)
    if path.is_dir():
        return path
    candidate = Path(project) / "train" / str(spec)
    if candidate.is_dir():
        return candidate
    raise InputError(f"run not found: {spec} (looked for the folder and for {candidate})")


# --------------------------------------------------------------------------------------------------
# helpers


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class _TextSetup:
    description: dict | None = None
    identity: dict | None = None
    train: tuple[np.ndarray, np.ndarray] | None = None
    val: tuple[np.ndarray, np.ndarray] | None = None


def _load_text(config: TrainConfig, layout: DatasetLayout, train_pairs: Sequence[Any], val_pairs: Sequence[Any],
               description: dict | None, observer: TrainObserver, parent: ParentWeights | None) -> _TextSetup:
    """The caption settings, store identity and embeddings of both splits; ``parent``'s weights are checked
    against the run (text pipeline included) before any image is hashed."""
    store = open_caption_store(layout.root, config.captions)
    description = description or store.text_description()
    if parent is not None:
        theirs = parent.meta.text_description
        hint = caption_command(layout.root, store.path, theirs) if theirs is not None else None
        _check_parent(parent, config, description, hint, observer)
    verify_pair_captions(store, layout.root, [*train_pairs, *val_pairs], description,
                         accept_stale=config.accept_stale_captions, warn=observer.on_message)
    setup = _TextSetup(description=description, identity=store.identity())
    setup.train = pair_embeddings(store, layout.root, train_pairs, description)
    if val_pairs:
        setup.val = pair_embeddings(store, layout.root, val_pairs, description)
    return setup


def _rgb_positions(pair: Any, imagery: Imagery) -> tuple[int, int, int]:
    """Where red, green and blue are among the bands read (for the pretrained first convolution), from the
    first training image's colour interpretation; reading its header also checks that it has the bands."""
    return read_band_plan(pair.image_a, imagery).rgb


def _normalization(config: TrainConfig, train_pairs: Sequence[Any], parent: ParentWeights | None,
                   resume_dir: Path | None, observer: TrainObserver) -> Normalization:
    """The input statistics: a resumed run's own, a parent's (its weights learned them), ImageNet's for 3 bands,
    else the training split's per-band mean and std (measured once by strips, cached)."""
    if resume_dir is not None and (resume_dir / LAST_FILE).is_file():
        return read_checkpoint_meta(resume_dir / LAST_FILE).normalization
    if parent is not None and len(parent.meta.normalization.mean) == config.imagery.channels:
        return parent.meta.normalization
    if config.normalization == "imagenet" or (config.normalization == "auto" and config.imagery.channels == 3):
        return Normalization()
    mean, std, cached = band_statistics(train_pairs, config.imagery)
    observer.on_message(f"band statistics of {len(train_pairs)} training pairs{' (cached)' if cached else ''}: "
                        f"mean {[round(v, 3) for v in mean]}, std {[round(v, 3) for v in std]}")
    return Normalization(mean, std)


def _class_scheme(config: TrainConfig, parent: ParentWeights | None, resume_dir: Path | None,
                  observer: TrainObserver) -> ClassScheme | None:
    """The run's classes: the class file's, else the parent's (fine-tuning), else None (binary); a resumed run
    must keep the classes it started with."""
    classes = load_class_file(config.classes) if config.classes else None
    if classes is None and parent is not None and parent.meta.classes is not None:
        classes = parent.meta.classes
        observer.on_message(f"classes of {parent.name}: {', '.join(classes.names)}")
    if resume_dir is not None and (resume_dir / LAST_FILE).is_file():
        before = read_checkpoint_meta(resume_dir / LAST_FILE).classes
        if before != classes:
            show = lambda s: "binary" if s is None else ", ".join(s.names)  # noqa: E731
            raise InputError(f"{resume_dir} was trained with classes {show(before)}, the class file now gives "
                             f"{show(classes)}; restore the class file or start a new run")
    return classes


def _check_parent(parent: ParentWeights, config: TrainConfig, description: dict | None, caption_hint: str | None,
                  observer: TrainObserver) -> None:
    """Stop with one line when ``parent``'s weights do not fit the run; note a text pipeline they do not record."""
    check_weights(parent, config, description, caption_hint)
    if description is not None and parent.meta.text_description is None:
        observer.on_message(f"weights {parent.spec} do not record the captioner and text encoder they were trained "
                            f"with; fine-tuning them with this run's captions")


def _checkpoint_meta(inputs: CheckpointMeta, config: TrainConfig, run_dir: Path, layout: DatasetLayout,
                     text: _TextSetup, state: TrainState, epoch: int, total_iters: int,
                     parent: dict[str, str] | None = None) -> CheckpointMeta:
    """The metadata of a checkpoint of this run: ``inputs`` (model, crop, bands, radiometry, normalisation),
    threshold 0.5 until tuned; ``parent``: the name and sha256 of the weights a fine-tuning run started from."""
    extra: dict[str, Any] = {}
    if parent is not None:
        extra[PARENT_KEY] = parent
    if config.freeze != "none":
        extra["freeze"] = config.freeze
    return replace(
        inputs,
        text_description=text.description,
        training={
            "run_dir": str(run_dir),
            "dataset": str(layout.root),
            "layout": layout.kind,
            "epoch": epoch,
            "iterations": state.iteration,
            "total_iters": total_iters,
            "best_epoch": state.best_epoch,
            "best_val_f1": state.best_f1 if state.best_epoch >= 0 else None,
            "seed": config.seed,
            "batch_size": config.batch_size,
            "pretrained": config.pretrained if config.weights is None else None,  # the weights replace it
            "caption_store": text.identity,
            **extra,
        },
    )


# --------------------------------------------------------------------------------------------------
# the run


def train(config: TrainConfig, *, resume_dir: str | Path | None = None, stop_after: int | None = None,
          observer: TrainObserver | None = None) -> TrainResult:
    """Train a network as ``config`` says, or continue the run in ``resume_dir``.

    ``stop_after`` stops once that many iterations (in total) are done, writing a resumable state:
    a time-boxed job continues with ``resume_dir``. Ctrl-C/SIGTERM does the same at the end of the
    current iteration. Under torchrun, every process calls this; process 0 writes the files.
    """
    started = time.perf_counter()
    validate_config(config)
    with distributed_session(config.device) as ctx, StopSignal() as stop, contextlib.ExitStack() as held:
        if resume_dir is not None:  # one process at a time trains a run: locked before its state is read
            _hold_run(ctx, Path(resume_dir), held)
        session = _Session.start(config, ctx, Path(resume_dir) if resume_dir else None,
                                 observer if (observer is not None and ctx.is_main) else TrainObserver(), stop)
        if resume_dir is None:
            _hold_run(ctx, session.run_dir, held)
        if session.log is not None:
            held.callback(session.log.close)
        result = session.run(stop_after)
        if session.log is not None:  # the last curves.png, before the report shows it
            session.log.close()
        if ctx.is_main and result.completed and config.int8 and result.best_checkpoint is not None:
            _make_run_int8(result, config, session.layout, session.observer.on_message)
        if ctx.is_main:  # report.html: curves and metrics; a failure only warns (the run's files are written)
            result.report = write_train_report(
                session.run_dir, to_dict(config), result.history, result.best_epoch, iterations=result.iterations,
                total_iters=result.total_iters, completed=result.completed, stopped_by=result.stopped_by,
                device=str(ctx.device), seconds=time.perf_counter() - started, warn=session.observer.on_message)
        return result


def _make_run_int8(result: TrainResult, config: TrainConfig, layout: DatasetLayout, say: Callable[[str], None]) -> None:
    """The certified int8 export of the best checkpoint beside it (``best.int8.onnx``), calibrated on the training
    split and measured on the validation split; a failure only says why (the run's checkpoints are written)."""
    from mmchange_core.inference.backends import open_model
    from mmchange_core.inference.int8 import Calibration, make_int8, onnxruntime_available
    from mmchange_core.models.int8_record import int8_files

    if not onnxruntime_available():
        say("no int8 export: it needs onnxruntime (pip install 'mmchange[onnx]'); turn it off with --no-int8")
        return
    output, _ = int8_files(result.best_checkpoint)
    try:
        made = make_int8(open_model(result.best_checkpoint), Calibration(layout.origin, config.train_split,
                                                                         captions=config.captions), output, say=say)
    except MMChangeError as exc:
        say(f"no int8 export of {result.best_checkpoint.name}: {exc}")
        return
    result.int8, result.int8_certificate = made.path, made.certificate.to_dict()
    verdict = "within the bound: --precision auto uses it on CPUs" if made.certificate.within_bound else \
        f"below the bound ({made.certificate.problem()}): used only with --accept-int8-drift"
    say(f"int8 export {made.path.name}: {made.certificate.figures()}; {verdict}")


def _hold_run(ctx: DistributedContext, run_dir: Path, held: contextlib.ExitStack) -> None:
    """Process 0 locks ``run_dir`` until ``held`` closes; every process stops if another process holds it."""
    busy = None
    if ctx.is_main:
        try:
            held.enter_context(lock_run(run_dir))
        except RunBusyError as exc:
            busy = str(exc)
    busy = ctx.broadcast(busy)
    if busy is not None:
        raise RunBusyError(busy)


@dataclass
class _Session:
    """One process's view of a run: data, model, optimisation state and the run folder."""

    config: TrainConfig
    ctx: DistributedContext
    observer: TrainObserver
    layout: DatasetLayout
    text: _TextSetup
    train_set: ChangeDetectionDataset
    val_pairs: list[Any]
    sampler: EpochSampler
    per_rank_batch: int
    epochs: int
    total_iters: int
    precision: str
    model: MMChange
    net: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: WarmupPolyLR
    scaler: torch.amp.GradScaler
    state: TrainState
    run_dir: Path
    stop: StopSignal
    log: MetricsLog | None = None  # metrics.csv, curves.png, TensorBoard: process 0 of a run with iterations left
    parent: dict[str, str] | None = None  # fine-tuning: name and sha256 of the starting weights, for checkpoints
    normalization: Normalization = Normalization()  # the input statistics (ImageNet's, the parent's or measured)
    classes: ClassScheme | None = None  # the class file's classes (None: binary change without names)

    def checkpoint_meta(self) -> CheckpointMeta:
        """What the network needs to read images as training does: its window, bands, radiometry, statistics,
        classes."""
        return CheckpointMeta(model=self.model.config, tile_size=self.config.crop_size,
                              imagery=self.config.imagery, normalization=self.normalization, classes=self.classes)

    @classmethod
    def start(cls, config: TrainConfig, ctx: DistributedContext, resume_dir: Path | None,
              observer: TrainObserver, stop: StopSignal) -> _Session:
        """Check the data and captions, build the model and optimiser, restore or create the run folder.

        Everything that can fail on user input happens before a new run folder is created.
        """
        payload = None
        if resume_dir is not None:
            payload = load_train_state(resume_dir / STATE_FILE)
            _check_recorded_config(payload.get("config"), config, resume_dir)
        # fine-tuning a new run: the weights are read (metadata) before anything else; a resumed run has its own
        parent = open_weights(config.weights) if config.weights and payload is None else None
        if parent is not None and config.imagery == Imagery() and parent.meta.imagery != Imagery():
            config = replace(config, imagery=parent.meta.imagery)  # recorded in the run's config.yaml
            observer.on_message(f"reading {config.imagery.describe()}, as {parent.name} was trained")
        device = ctx.device
        precision = resolve_precision(config.precision, device)
        if config.batch_size % ctx.world_size:
            raise ConfigError(f"batch_size {config.batch_size} must be divisible by the number of processes "
                              f"({ctx.world_size})")
        per_rank_batch = config.batch_size // ctx.world_size
        seed_everything(config.seed)

        root = resolve_dataset_root(config.dataset)
        layout = detect_layout(root, config.change_value)
        observer.on_message(f"dataset {layout.describe()}")
        if list(layout.splits) == ["all"] and config.val_split:
            observer.on_message(f"layout '{layout.kind}' has no splits: training and validation use the same pairs")
        train_pairs = layout.require_labels(config.train_split)
        try:
            val_pairs = layout.require_labels(config.val_split) if config.val_split else []
        except InputError as exc:
            raise InputError(f"{exc}; validate on another split with --set val_split=NAME, or train without "
                             f"validation with --set val_split=null") from None
        rgb = _rgb_positions(train_pairs[0], config.imagery)  # the first pair has the bands (else one line)
        classes = _class_scheme(config, parent, resume_dir, observer)
        check_label_set(train_pairs, classes, f"split '{config.train_split}' of {root}")
        if val_pairs:
            check_label_set(val_pairs, classes, f"split '{config.val_split}' of {root}")
        normalization = _normalization(config, train_pairs, parent, resume_dir, observer)
        text = _TextSetup()
        if ModelConfig(config.backbone, config.variant).uses_text:
            stored = None
            if resume_dir and (resume_dir / CAPTION_STORE_FILE).is_file():
                stored = json.loads((resume_dir / CAPTION_STORE_FILE).read_text(encoding="utf-8")).get("text")
            text = _load_text(config, layout, train_pairs, val_pairs, stored, observer, parent)
        elif parent is not None:
            _check_parent(parent, config, None, None, observer)

        augmentation = paper_augmentation(config.augment.crop_border, config.augment.flip_p,
                                          config.augment.swap_p, config.augment.crop_p)
        train_set = ChangeDetectionDataset(layout, config.train_split, config.crop_size, text=text.train,
                                           transform=augmentation, seed=config.seed, cache=cache_settings(config),
                                           imagery=config.imagery, classes=classes,
                                           normalization=(normalization.mean, normalization.std))
        descriptions = [train_set.describe()]
        if val_pairs:
            val_set = ChangeDetectionDataset(layout, config.val_split, config.crop_size)  # checks sizes only
            descriptions.append(val_set.describe() + " (validation)")
        sampler = EpochSampler(train_set, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True,
                               seed=config.seed)
        iters_per_epoch = sampler.num_samples // per_rank_batch
        if iters_per_epoch == 0:
            raise InputError(f"split '{config.train_split}' of {root} has {len(train_set)} training tiles, fewer "
                             f"than the batch size {config.batch_size}; lower --batch-size or add data")
        epochs, total_iters = run_length(config.iters, iters_per_epoch)

        text_dim = text.train[0].shape[1] if text.train is not None else 512
        model = build_model(config.backbone, config.variant, text_dim=text_dim,
                            pretrained_backbone=config.pretrained and payload is None and parent is None,
                            in_channels=config.imagery.channels, rgb=rgb,
                            num_classes=2 if classes is None else len(classes))
        parent_record = payload.get("parent") if payload is not None else None
        if parent is not None:  # --weights replaces the ImageNet trunk
            fresh = load_parent_weights(model, parent.state_dict())
            if fresh and ctx.is_main:
                observer.on_message(f"{parent.name} predicts {parent.meta.model.num_classes} classes, this run "
                                    f"{model.config.num_classes}: its class heads start afresh ({len(fresh)} tensors)")
            parent_record = parent.record() if ctx.is_main else None
            if ctx.is_main:
                observer.on_message(f"fine-tuning from {parent.name} (sha256 {parent_record['sha256'][:12]})")
        model.to(device)
        if config.channels_last and device.type == "cuda":
            model.to(memory_format=torch.channels_last)
        frozen = freeze_model(model, config.freeze)  # before the optimiser: frozen weights are not given to it
        if frozen:
            observer.on_message(f"freeze {config.freeze}: {frozen:,} weights stay fixed (BatchNorm statistics too)")
        optimizer = build_optimizer(trainable_parameters(model), config, device)
        scheduler = WarmupPolyLR(optimizer, iters_per_epoch, total_iters, warmup_iters=config.warmup_iters,
                                 power=config.poly_power)
        scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")

        state = TrainState(iters_per_epoch=iters_per_epoch)
        if payload is not None and resume_dir is not None:
            state = progress_from(payload)
            if state.iters_per_epoch != iters_per_epoch:
                raise InputError(f"the dataset or batch size changed since {resume_dir} started "
                                 f"({state.iters_per_epoch} iterations per epoch then, {iters_per_epoch} now); "
                                 f"start a new run")
            model.load_state_dict(payload["model"])
            optimizer.load_state_dict(payload["optimizer"])
            scheduler.load_state_dict(payload["scheduler"])
            scaler.load_state_dict(payload["scaler"])
            restore_rng_state(payload["rng"])
            run_dir = resume_dir
        else:
            created = str(next_run_dir(config.project, "train", config.name)) if ctx.is_main else None
            run_dir = Path(ctx.broadcast(created))
            if ctx.is_main:
                save_config(config, run_dir / CONFIG_FILE)
                if text.description is not None:
                    atomic_write_text(run_dir / CAPTION_STORE_FILE,
                                      json.dumps({"text": text.description, "identity": text.identity}, indent=2))
        log = None
        if ctx.is_main and state.epoch < epochs:
            log = MetricsLog(run_dir, config.log_every, total_iters, start_iteration=state.iteration,
                                 message=observer.on_message)
        net: torch.nn.Module = model
        if ctx.enabled:
            net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        if config.compile:
            enable_compile_cache()
            net = torch.compile(net)  # type: ignore[assignment]
        observer.on_start(TrainInfo(run_dir, layout.describe(), descriptions, str(device), precision,
                                    ctx.world_size, epochs, iters_per_epoch, total_iters, state.iteration,
                                    text.description, payload is not None))
        return cls(config, ctx, observer, layout, text, train_set, val_pairs, sampler, per_rank_batch, epochs,
                   total_iters, precision, model, net, optimizer, scheduler, scaler, state, run_dir, stop, log,
                   parent_record, normalization, classes)

    # ------------------------------------------------------------------------------------------
    def run(self, stop_after: int | None) -> TrainResult:
        """Train the remaining epochs; returns early (resumable) on a stop request or ``stop_after``."""
        if self.state.epoch >= self.epochs:
            self.observer.on_message(f"{self.run_dir} is already complete ({self.state.iteration} iterations)")
            return self.result(True)
        for epoch in range(self.state.epoch, self.epochs):
            started = time.perf_counter()
            if self._train_epoch(epoch, stop_after):
                self._save(None, False)
                return self._stopped()
            self._end_epoch(epoch, started)
            requested = self.stop.agree(float(self.ctx.all_reduce_sum(torch.tensor([self.stop.code]))[0]))
            if (requested or self._limit_hit(stop_after)) and epoch < self.epochs - 1:
                return self._stopped()
        return self.result(True)

    def result(self, completed: bool) -> TrainResult:
        """The run's outcome as it stands."""
        best, last = self.run_dir / BEST_FILE, self.run_dir / LAST_FILE
        s = self.state
        stopped_by = self.stop.name or (None if completed else "stop_after")
        return TrainResult(self.run_dir, best if best.is_file() else None, last if last.is_file() else None,
                           s.best_epoch, s.best_f1 if s.best_epoch >= 0 else None, s.iteration, self.total_iters,
                           completed, list(s.history), stopped_by)

    def _limit_hit(self, stop_after: int | None) -> bool:
        return stop_after is not None and self.state.iteration >= stop_after

    def _stopped(self) -> TrainResult:
        reason = f"{self.stop.name} received" if self.stop.requested else \
            f"stopped at iteration {self.state.iteration} (--stop-after)"
        self.observer.on_message(f"{reason}; state saved, continue with: mmchange train --resume {self.run_dir}")
        return self.result(False)

    def _train_epoch(self, epoch: int, stop_after: int | None) -> bool:
        """Train the rest of ``epoch``; True when it stopped early (stop request or ``stop_after``)."""
        config, state, device = self.config, self.state, self.ctx.device
        self._train_mode()
        self.sampler.set_position(epoch, state.batch * self.per_rank_batch)
        # workers' base seed comes from this generator, not from the global RNG the model's dropout uses
        generator = torch.Generator().manual_seed(config.seed + epoch)
        loader = DataLoader(self.train_set, batch_size=self.per_rank_batch, sampler=self.sampler, drop_last=True,
                            num_workers=config.workers, pin_memory=device.type == "cuda", generator=generator,
                            worker_init_fn=ignore_stop_signals)
        try:
            for batch in loader:
                loss = _forward_loss(self.net, batch, device, self.precision, config)
                # every process learns the mean loss and any stop request before the backward pass
                flags = torch.tensor([float(loss.detach()), self.stop.code], dtype=torch.float64)
                flags = self.ctx.all_reduce_sum(flags).cpu()
                mean_loss = float(flags[0]) / self.ctx.world_size
                if not math.isfinite(mean_loss):
                    last = self.run_dir / LAST_FILE
                    kept = f"the last good checkpoint is {last}" if last.is_file() else "no checkpoint was written yet"
                    raise TrainingDivergedError(
                        f"the loss became {mean_loss} at iteration {state.iteration + 1} (epoch {epoch}); "
                        f"stopped, {kept}; lower the learning rate (--set lr=...) or use --precision fp32")
                lr = self.optimizer.param_groups[0]["lr"]
                optimizer_step(loss, self.optimizer, self.scaler)
                self.scheduler.step()
                state.iteration += 1
                state.batch += 1
                state.loss_sum += mean_loss
                state.loss_count += 1
                self.observer.on_progress(ProgressEvent("train", state.iteration, self.total_iters,
                                                        fields={"loss": mean_loss, "lr": lr}))
                if self.log is not None:
                    self.log.step(state.iteration, epoch, mean_loss, lr, state.history, state.best_epoch)
                mid_epoch = state.batch < self.sampler.num_samples // self.per_rank_batch
                # decided on the shared flags: a signal that arrived after they were taken counts next time
                if (self.stop.agree(float(flags[1])) or self._limit_hit(stop_after)) and mid_epoch:
                    return True
        except MMChangeError as exc:
            raise unwrap_worker_error(exc) from None
        return False

    def _end_epoch(self, epoch: int, started: float) -> None:
        """Validate (process 0), pick the best epoch, write checkpoints, state and metrics.csv."""
        config, state = self.config, self.state
        row: dict[str, Any] = {"epoch": epoch, "iterations": state.iteration,
                               "lr": self.scheduler.base_lrs[0] * self.scheduler.factor(state.iteration - 1),
                               "train_loss": state.loss_sum / max(1, state.loss_count)}
        metrics = None
        if self.val_pairs and (epoch >= config.val_start_epoch or epoch == self.epochs - 1):
            metrics = self.ctx.broadcast(self._validate() if self.ctx.is_main else None)
            self._train_mode()
            row.update({f"val_{k}": metrics[k] for k in METRIC_NAMES})
            if "mean_f1" in metrics:  # K classes: the mean F1 of the change classes picks the best epoch
                row["val_mean_f1"] = metrics["mean_f1"]
            if self.log is not None:
                self.log.validation(state.iteration, epoch, metrics)
        # ties go to the later epoch; without validation the latest epoch is the best we know
        score = None if metrics is None else metrics.get("mean_f1", metrics["f1"])
        is_best = (score >= state.best_f1) if score is not None else not self.val_pairs
        if is_best:
            state.best_f1 = score if score is not None else state.best_f1
            state.best_epoch = epoch
        row["best"] = is_best
        row["seconds"] = round(time.perf_counter() - started, 3)
        state.history.append(row)
        state.epoch, state.batch = epoch + 1, 0
        state.loss_sum, state.loss_count = 0.0, 0
        self._save(epoch, is_best)
        self.observer.on_epoch_end(row)

    def _train_mode(self) -> None:
        """The network in training mode, except a frozen part (``freeze``), whose BatchNorm statistics stay fixed."""
        self.net.train()
        hold_frozen(self.model, self.config.freeze)

    def _validate(self) -> dict[str, float | int]:
        provider = None
        if self.text.val is not None:
            val_text = self.text.val
            provider = lambda _pairs: val_text  # noqa: E731 - embeddings are in split order
        detector = ChangeDetector(self.model, self.checkpoint_meta(), device=self.ctx.device,
                                  precision=self.precision, tile_size=self.config.crop_size,
                                  batch_size=self.per_rank_batch)
        result = evaluate(detector, self.layout, self.config.val_split or "val", pairs=self.val_pairs,
                          workers=self.config.workers, text_provider=provider,
                          progress=lambda event: self.observer.on_progress(replace(event, task="validate")))
        return result.metrics()

    def _save(self, epoch_done: int | None, is_best: bool) -> None:
        """Process 0 writes best (if improved), last and the resumable state, in that order, then metrics.csv,
        curves.png and the TensorBoard events."""
        if not self.ctx.is_main:
            return
        epoch = epoch_done if epoch_done is not None else self.state.epoch
        meta = _checkpoint_meta(self.checkpoint_meta(), self.config, self.run_dir, self.layout, self.text,
                                self.state, epoch, self.total_iters, self.parent)
        with self.stop.saving():
            if is_best:
                save_checkpoint(self.run_dir / BEST_FILE, self.model, meta)
            save_checkpoint(self.run_dir / LAST_FILE, self.model, meta)
            save_train_state(self.run_dir / STATE_FILE, self.state, config=to_dict(self.config), model=self.model,
                             optimizer=self.optimizer, scheduler=self.scheduler, scaler=self.scaler,
                             parent=self.parent)
        if self.log is not None:
            self.log.save(self.state.history, self.state.best_epoch)


def _forward_loss(net: torch.nn.Module, batch: dict[str, torch.Tensor], device: torch.device, precision: str,
                  config: TrainConfig) -> torch.Tensor:
    """Forward pass (under autocast) and the deep-supervision loss (float32) of one batch."""
    memory_format = torch.channels_last if (config.channels_last and device.type == "cuda") else torch.contiguous_format
    img_a = batch["image_a"].to(device, non_blocking=True).contiguous(memory_format=memory_format)
    img_b = batch["image_b"].to(device, non_blocking=True).contiguous(memory_format=memory_format)
    label = batch["label"].to(device, non_blocking=True)
    text_a = batch["text_a"].to(device, non_blocking=True) if "text_a" in batch else None
    text_b = batch["text_b"].to(device, non_blocking=True) if "text_b" in batch else None
    with autocast_context(precision, device):
        outputs = net(img_a, img_b, text_a, text_b)
    return deep_supervision_loss(outputs, label)
