"""Throughput benchmark of the network: pairs/s, latency, peak memory, parameters and GFLOPs.

Inference goes through :class:`~mmchange_core.inference.runner.InferenceRunner` (the same fast path
that eval, predict and robustness use) and, with the ``onnx`` backend, through onnxruntime
(:class:`~mmchange_core.inference.onnx_runner.OnnxRunner`) on the CPU, measured in the same run so
the rows compare. On a GPU, time is measured with CUDA events after warm-up, and each figure is the
median of several timed runs.
"""

from __future__ import annotations

import contextlib
import resource
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mmchange_core.config import (
    DEVICE,
    PRECISION,
    SIZE,
    choice,
    non_negative,
    positive,
    required,
    setting,
    validate,
)
from mmchange_core.device import resolve_device, resolve_precision
from mmchange_core.errors import InputError
from mmchange_core.inference.onnx_runner import OnnxRunner
from mmchange_core.inference.runner import InferenceRunner
from mmchange_core.models.checkpoint import CheckpointMeta
from mmchange_core.models.complexity import measure_complexity
from mmchange_core.models.config import BACKBONES, VARIANTS, ModelConfig
from mmchange_core.inference.backends import ModelFile, open_model
from mmchange_core.models.export import export_model
from mmchange_core.models.mmchange import MMChange
from mmchange_core.progress import ProgressCallback
from mmchange_core.progress import report as report_progress


@dataclass
class BenchmarkConfig:
    """What to measure. Lists produce one row per combination."""

    backbone: str = setting("resnet50", choice(*BACKBONES))
    variant: str = setting("full", choice(*VARIANTS))
    size: int = setting(256, SIZE)
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
    # an mmchange checkpoint or exported .onnx: its architecture replaces backbone/variant, and an .onnx is
    # what the onnx rows run (the torch rows run the same architecture; speed does not depend on the weights)
    checkpoint: str | None = None
    # torch and/or onnx (onnxruntime on the CPU); None: torch, plus onnx when the checkpoint is an .onnx file
    backend: list[str] | None = setting(None, choice("torch", "onnx"))


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
    backend: str = "torch"


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


def benchmark_backends(cfg: BenchmarkConfig, model: ModelFile | None = None) -> list[str]:
    """The backends ``cfg`` times: its ``backend`` list, else torch (plus onnx for an ``.onnx`` checkpoint)."""
    if cfg.backend:
        return list(dict.fromkeys(cfg.backend))
    return ["torch", "onnx"] if model is not None and model.backend.name == "onnxruntime" else ["torch"]


def _benchmark_model(cfg: BenchmarkConfig, model: ModelFile | None) -> MMChange:
    """The torch network to time: the checkpoint's (random weights for an ``.onnx``), else backbone/variant."""
    torch.manual_seed(0)
    if model is None:
        return MMChange(ModelConfig(backbone=cfg.backbone, variant=cfg.variant)).eval()
    if model.backend.name == "onnxruntime":
        return MMChange(model.meta.model).eval()
    return model.network()[0]


@contextlib.contextmanager
def _onnx_model(cfg: BenchmarkConfig, model: ModelFile | None, network: MMChange) -> Iterator[Path]:
    """The ``.onnx`` file the onnx rows run: the checkpoint itself, else ``network`` exported to a temporary file."""
    if model is not None and model.backend.name == "onnxruntime":
        yield model.path
        return
    with tempfile.TemporaryDirectory(prefix="mmchange-benchmark-") as tmp:
        path = Path(tmp) / "model.onnx"
        export_model(network, CheckpointMeta(model=network.config, tile_size=cfg.size), path)
        yield path


def run_benchmark(cfg: BenchmarkConfig, progress: ProgressCallback | None = None) -> BenchmarkReport:
    """Measure every (backend, batch, precision) combination of ``cfg``.

    ``progress`` gets one ``benchmark`` event per finished row, its summary as the message and the
    row itself in ``fields["row"]``. onnx rows run at the graph's own precision (fp32, or int8 for a
    quantised export), once per batch size.
    """
    validate(cfg)
    device = resolve_device(cfg.device)
    model_file = open_model(cfg.checkpoint) if cfg.checkpoint is not None else None  # resolved once
    backends = benchmark_backends(cfg, model_file)
    if "onnx" in backends and device.type != "cpu":
        raise InputError(f"the onnx backend runs onnxruntime on the CPU; add --device cpu to time it beside torch "
                         f"(got device {device})")
    per_backend = {"torch": len(cfg.precision), "onnx": 1}
    total = len(cfg.batch_size) * (sum(per_backend[b] for b in backends) + (len(cfg.precision) if cfg.train else 0))

    def finished(row: BenchmarkRow) -> None:
        report.rows.append(row)
        summary = f"{row.backend} {row.mode} batch {row.batch} {row.precision}: {row.pairs_per_s:,.1f} pairs/s " \
                  f"(warm-up {row.warmup_s:.1f} s)"
        report_progress(progress, "benchmark", len(report.rows), total, summary, row=row)

    model = _benchmark_model(cfg, model_file)
    config = model.config
    complexity = measure_complexity(model, cfg.size)
    report = BenchmarkReport(config.backbone, config.variant, cfg.size, _device_name(device),
                             complexity.params_m, complexity.gflops)
    encoder = None
    if cfg.with_text and model.uses_text:
        from mmchange_core.text import CaptionerConfig, TextEncoderConfig, TextPipeline

        encoder = TextPipeline(CaptionerConfig(name="basic"), TextEncoderConfig(), device=str(device))
    runners: list[tuple[str, str, InferenceRunner | OnnxRunner]] = []
    with contextlib.ExitStack() as stack:
        for backend in backends:
            if backend == "onnx":
                runner = OnnxRunner(stack.enter_context(_onnx_model(cfg, model_file, model)), device)
                runners.append(("onnx", runner.precision, runner))
                continue
            for precision in cfg.precision:
                resolved = resolve_precision(precision, device)
                runners.append(("torch", resolved, InferenceRunner(
                    model, device, resolved, channels_last=cfg.channels_last, cuda_graphs=cfg.cuda_graphs,
                    compile=cfg.compile, fused_convs=cfg.fused_convs, exhaustive_autotune=cfg.exhaustive_autotune)))
        for backend, resolved, runner in runners:
            for batch in cfg.batch_size:
                finished(_inference_row(backend, runner, resolved, batch, device, cfg, encoder))
    if cfg.train:
        for precision in cfg.precision:
            for batch in cfg.batch_size:
                finished(_train_row(config, device, resolve_precision(precision, device), batch, cfg))
    return report


def _inference_row(backend: str, runner: InferenceRunner | OnnxRunner, precision: str, batch: int,
                   device: torch.device, cfg: BenchmarkConfig, encoder: object | None) -> BenchmarkRow:
    """Time ``runner.logits`` on random normalised batches (text models: one text embedding per pair, as training and
    a batch of different pairs give; torch and onnxruntime alike)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    config = runner.config
    img_a = torch.randn(batch, 3, cfg.size, cfg.size, device=device)
    img_b = torch.randn(batch, 3, cfg.size, cfg.size, device=device)
    text_rows = batch
    text = torch.randn(text_rows, config.text_dim, device=device) if runner.uses_text else None
    counter = [0]

    def step() -> torch.Tensor:
        text_a = text_b = text
        if encoder is not None:
            captions = _fresh_captions(2 * text_rows, counter[0])
            counter[0] += 2 * text_rows
            emb = encoder.encode(captions).to(device)  # type: ignore[attr-defined]
            text_a, text_b = emb[:text_rows], emb[text_rows:]
        return runner.logits(img_a, img_b, text_a, text_b)

    warm, per_call = _measure(step, device, cfg)
    mode = "inference" + ("+exhaustive" if cfg.exhaustive_autotune and backend == "torch" else "") + \
        ("+text" if encoder is not None else "")
    return BenchmarkRow(mode, batch, precision, runner.compiled, runner.cuda_graphs, runner.channels_last,
                        runner.fused_convs, batch / per_call, per_call * 1000, per_call * 1000 / batch,
                        _peak_memory_mb(device), warm, backend)


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

