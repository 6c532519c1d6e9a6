"""Throughput benchmark of the network: pairs/s, latency, peak memory, parameters and GFLOPs.

Inference goes through :class:`~mmchange_core.inference.runner.InferenceRunner` (the same fast path
that eval, predict and robustness use). On a GPU, time is measured with CUDA events after warm-up,
and each figure is the median of several timed runs.
"""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from mmchange_core.config import (
    DEVICE,
    PRECISION,
    choice,
    multiple_of,
    non_negative,
    positive,
    required,
    setting,
    validate,
)
from mmchange_core.device import resolve_device, resolve_precision
from mmchange_core.inference.runner import InferenceRunner
from mmchange_core.models.complexity import measure_complexity
from mmchange_core.models.config import BACKBONES, VARIANTS, ModelConfig
from mmchange_core.models.mmchange import MMChange
from mmchange_core.progress import ProgressCallback
from mmchange_core.progress import report as report_progress


@dataclass
class BenchmarkConfig:
    """What to measure. Lists produce one row per combination."""

    backbone: str = setting("resnet50", choice(*BACKBONES))
    variant: str = setting("full", choice(*VARIANTS))
    size: int = setting(256, multiple_of(32))
    batch_size: list[int] = setting([1, 32], required("give at least one batch size, e.g. --batch-size 1,32"),
                                    positive(), renamed_from=["batches"])
    precision: list[str] = setting(["fp32", "bf16"], required("give at least one precision, e.g. --precision fp32"),
                                   PRECISION, renamed_from=["precisions"])
    compile: bool = False
    # conv+bias(+residual)+ReLU fused by cuDNN
    fused_convs: str = setting("auto", choice("auto", "off", "trunk", "all"))
    exhaustive_autotune: bool = False  # cuDNN times every engine, not only the heuristics' top 10
    cuda_graphs: bool | None = None
    channels_last: bool | None = None
    device: str = setting("auto", DEVICE)
    warmup: int = setting(5, non_negative())
    repeats: int = setting(5, positive())
    min_run_seconds: float = setting(0.5, non_negative())
    with_text: bool = False
    train: bool = False  # also time training steps (forward, loss, backward, fused Adam)


@dataclass
class BenchmarkRow:
    """One measured configuration."""

    mode: str
    batch: int
    precision: str
    compile: bool
    cuda_graphs: bool
    channels_last: bool
    fused_convs: str
    pairs_per_s: float
    latency_ms: float
    per_pair_ms: float
    peak_memory_mb: float
    warmup_s: float


@dataclass
class BenchmarkReport:
    """Rows plus the network's size and the machine it ran on."""

    backbone: str
    variant: str
    size: int
    device: str
    params_m: float
    gflops: float
    rows: list[BenchmarkRow] = field(default_factory=list)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


class _Timer:
    """Times ``fn`` with CUDA events on GPU, ``perf_counter`` on CPU; returns seconds per call."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def per_call(self, fn: Callable[[], object], iters: int) -> float:
        if self.device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(iters):
                fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1000.0 / iters
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        return (time.perf_counter() - t0) / iters


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _measure(fn: Callable[[], object], device: torch.device, cfg: BenchmarkConfig) -> tuple[float, float]:
    """(warm-up seconds, median seconds per call)."""
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    first = time.perf_counter() - t0
    for _ in range(max(0, cfg.warmup - 1)):
        fn()
    timer = _Timer(device)
    single = timer.per_call(fn, 1)
    iters = max(1, min(200, int(cfg.min_run_seconds / max(single, 1e-6))))
    runs = [timer.per_call(fn, iters) for _ in range(cfg.repeats)]
    return first, statistics.median(runs)


def _fresh_captions(n: int, offset: int) -> list[str]:
    return [f"These are buildings, roads and trees, scene {offset + i}." for i in range(n)]


def run_benchmark(cfg: BenchmarkConfig, progress: ProgressCallback | None = None) -> BenchmarkReport:
    """Measure every (batch, precision) combination of ``cfg``.

    ``progress`` gets one ``benchmark`` event per finished row, its summary as the message and the
    row itself in ``fields["row"]``.
    """
    validate(cfg)
    device = resolve_device(cfg.device)
    config = ModelConfig(backbone=cfg.backbone, variant=cfg.variant)
    total = len(cfg.batch_size) * len(cfg.precision) * (2 if cfg.train else 1)

    def finished(row: BenchmarkRow) -> None:
        report.rows.append(row)
        summary = f"{row.mode} batch {row.batch} {row.precision}: {row.pairs_per_s:,.1f} pairs/s " \
                  f"(warm-up {row.warmup_s:.1f} s)"
        report_progress(progress, "benchmark", len(report.rows), total, summary, row=row)

    torch.manual_seed(0)
    model = MMChange(config).eval()
    complexity = measure_complexity(model, cfg.size)
    report = BenchmarkReport(cfg.backbone, cfg.variant, cfg.size, _device_name(device),
                             complexity.params_m, complexity.gflops)
    encoder = None
    if cfg.with_text and model.uses_text:
        from mmchange_core.text import CaptionerConfig, TextEncoderConfig, TextPipeline

        encoder = TextPipeline(CaptionerConfig(name="basic"), TextEncoderConfig(), device=str(device))
    for precision in cfg.precision:
        resolved = resolve_precision(precision, device)
        runner = InferenceRunner(model, device, resolved, channels_last=cfg.channels_last,
                                 cuda_graphs=cfg.cuda_graphs, compile=cfg.compile, fused_convs=cfg.fused_convs,
                                 exhaustive_autotune=cfg.exhaustive_autotune)
        for batch in cfg.batch_size:
            if device.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(device)
            img_a = torch.randn(batch, 3, cfg.size, cfg.size, device=device)
            img_b = torch.randn(batch, 3, cfg.size, cfg.size, device=device)
            text = torch.randn(batch, config.text_dim, device=device) if model.uses_text else None
            counter = [0]

            def step() -> torch.Tensor:
                text_a = text_b = text
                if encoder is not None:
                    captions = _fresh_captions(2 * batch, counter[0])
                    counter[0] += 2 * batch
                    emb = encoder.encode(captions).to(device)
                    text_a, text_b = emb[:batch], emb[batch:]
                return runner.logits(img_a, img_b, text_a, text_b)

            warm, per_call = _measure(step, device, cfg)
            mode = "inference" + ("+exhaustive" if cfg.exhaustive_autotune else "") + \
                ("+text" if encoder is not None else "")
            row = BenchmarkRow(mode, batch, resolved,
                               cfg.compile, runner.cuda_graphs, runner.channels_last, runner.fused_convs,
                               batch / per_call,
                               per_call * 1000, per_call * 1000 / batch, _peak_memory_mb(device), warm)
            finished(row)
        if cfg.train:
            for batch in cfg.batch_size:
                finished(_train_row(config, device, resolved, batch, cfg))
    return report


def _train_row(config: ModelConfig, device: torch.device, precision: str, batch: int,
               cfg: BenchmarkConfig) -> BenchmarkRow:
    """Training throughput as ``mmchange train`` runs it: autocast forward, deep-supervision loss,
    backward and a fused Adam step, channels_last on GPUs."""
    from mmchange_core.inference.runner import autocast_context
    from mmchange_core.training.losses import deep_supervision_loss
    from mmchange_core.training.optimization import build_optimizer, optimizer_step
    from mmchange_core.training.config import TrainConfig

    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    torch.manual_seed(0)
    channels_last = device.type == "cuda" if cfg.channels_last is None else cfg.channels_last
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = MMChange(config).to(device).train()
    model.to(memory_format=fmt)
    optimizer = build_optimizer(model.parameters(), TrainConfig(), device)  # the paper's settings
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    img_a = torch.randn(batch, 3, cfg.size, cfg.size, device=device).contiguous(memory_format=fmt)
    img_b = torch.randn(batch, 3, cfg.size, cfg.size, device=device).contiguous(memory_format=fmt)
    target = (torch.rand(batch, 1, cfg.size, cfg.size, device=device) > 0.9).float()
    text = torch.randn(batch, config.text_dim, device=device) if config.uses_text else None

    def step() -> None:
        with autocast_context(precision, device):
            outputs = model(img_a, img_b, text, text)
        optimizer_step(deep_supervision_loss(outputs, target), optimizer, scaler)

    warm, per_call = _measure(step, device, cfg)
    return BenchmarkRow("train", batch, precision, False, False, channels_last, "off", batch / per_call,
                        per_call * 1000, per_call * 1000 / batch, _peak_memory_mb(device), warm)

