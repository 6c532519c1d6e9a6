"""One place that runs a trained network on batches: device, precision, memory format and graphs.

Evaluation, prediction, robustness and benchmarks all go through :class:`InferenceRunner`, so the
fast path reaches every command. On a GPU the defaults are: BatchNorm folded into the convolutions,
bf16 autocast, channels_last, fused trunk convolutions, cuDNN autotuning and CUDA graphs captured per
input shape (optionally ``torch.compile`` with a persistent cache). On the CPU the defaults are fp32
with folded BatchNorm, channels_last and three rewrites of slow CPU kernels (see ``_rewrite_for_cpu``).
Outputs differ from the plain fp32 network only by floating-point rounding (bounded by a test).
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from mmchange_core.device import resolve_device, resolve_precision
from mmchange_core.environment import cache_home
from mmchange_core.errors import MMChangeError
from mmchange_core.models.fused_conv import fuse_conv_activations
from mmchange_core.models.fusion import fold_batchnorm
from mmchange_core.models.ifr import ContextualAttention
from mmchange_core.models.itff import PixelAttention
from mmchange_core.models.tapwise_conv import use_tapwise_convs
from mmchange_core.models.mmchange import MMChange

#: Where convolutions run fused with their bias, residual and ReLU (``off``: nowhere; ``auto``:
#: :data:`GPU_FUSION` on GPUs, ``off`` on CPUs, where the fused op is the plain ops anyway).
FUSION_SCOPES = ("auto", "off", "trunk", "all")
GPU_FUSION = "trunk"


def precision_dtype(precision: str) -> torch.dtype:
    """The torch dtype of a resolved precision name."""
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def autocast_context(precision: str, device: torch.device, cache_enabled: bool = True) -> contextlib.AbstractContextManager:
    """An autocast context for bf16/fp16, or a no-op for fp32.

    CUDA graph capture needs ``cache_enabled=False`` (cached weight casts would be freed after capture).
    """
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=precision_dtype(precision), cache_enabled=cache_enabled)


def compile_cache_dir() -> Path:
    """Persistent torch.compile cache (``$MMCHANGE_CACHE/inductor``, default ``~/.cache/mmchange``)."""
    return cache_home() / "inductor"


def enable_compile_cache() -> Path:
    """Point TorchInductor's on-disk caches at mmchange's cache folder (unless the user set one)."""
    cache = compile_cache_dir()
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache))
    cache.mkdir(parents=True, exist_ok=True)
    try:
        import torch._inductor.config as inductor_config

        inductor_config.fx_graph_cache = True
        if hasattr(inductor_config, "autotune_local_cache"):
            inductor_config.autotune_local_cache = True
    except ImportError:  # pragma: no cover - very old torch
        pass
    return Path(os.environ["TORCHINDUCTOR_CACHE_DIR"])


def _rewrite_for_cpu(net: torch.nn.Module, channels_last: bool) -> None:
    """CPU-only inference rewrites (same function up to rounding; the GPU path was measured without them).

    CoT attention's mean over its 3x3 taps is folded into the preceding 1x1 conv, ITFF's grouped
    pixel-attention conv runs as two depthwise convs, and on channels_last input the wide strided
    c4 projection runs as one GEMM per kernel tap.
    """
    for module in net.modules():
        if isinstance(module, ContextualAttention):
            module.fold_tap_mean()
        elif isinstance(module, PixelAttention):
            module.split_depthwise()
    if channels_last:
        use_tapwise_convs(net)


@dataclass
class _Graph:
    graph: torch.cuda.CUDAGraph
    inputs: list[torch.Tensor]
    output: torch.Tensor


class InferenceRunner:
    """Runs an MMChange model in eval mode and returns the main change logits in float32.

    Args:
        model: the network (its weights are not modified; a folded copy is used).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        precision: ``auto`` (bf16 on GPU, fp32 on CPU), ``fp32``, ``bf16`` or ``fp16``.
        channels_last: NHWC memory format (default on: faster for inference on GPUs and on CPUs too).
        fold_bn: fold BatchNorm into convolutions (default on).
        cuda_graphs: capture one CUDA graph per input shape and replay it (default: on for GPUs).
        compile: ``torch.compile`` the network (cached on disk under :func:`compile_cache_dir`).
        fused_convs: run conv + bias (+ residual) + ReLU as one cuDNN kernel (see
            :mod:`~mmchange_core.models.fused_conv`): ``trunk``, ``all``, ``off`` or ``auto``
            (:data:`GPU_FUSION` on GPUs, off on CPUs). Needs folded BatchNorm.
        exhaustive_autotune: let cuDNN's autotuner time every convolution engine instead of the
            heuristics' top 10 (``torch.backends.cudnn.benchmark_limit = 0``; longer first call).
    """

    def __init__(self, model: MMChange, device: str | torch.device = "auto", precision: str = "auto", *,
                 channels_last: bool | None = None, fold_bn: bool = True, cuda_graphs: bool | None = None,
                 compile: bool = False, fused_convs: str = "auto",
                 exhaustive_autotune: bool = False) -> None:
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        on_gpu = self.device.type == "cuda"
        self.channels_last = True if channels_last is None else channels_last
        self.cuda_graphs = on_gpu if cuda_graphs is None else (cuda_graphs and on_gpu)
        self.compiled = compile
        self.config = model.config
        net = fold_batchnorm(model) if fold_bn else model.eval()
        net = net.to(self.device).eval()
        if fused_convs not in FUSION_SCOPES:
            raise MMChangeError(f"unknown fused_convs '{fused_convs}'; choose one of {', '.join(FUSION_SCOPES)}")
        if fused_convs == "auto":
            fused_convs = GPU_FUSION if on_gpu else "off"
        self.fused_convs = fused_convs if fold_bn else "off"
        # Both rewrites below need folded BatchNorm, so ``net`` is already fold_batchnorm's copy.
        if self.fused_convs != "off":
            fuse_conv_activations(net, self.fused_convs)
        if not on_gpu and fold_bn:
            _rewrite_for_cpu(net, self.channels_last)
        if self.precision != "fp32":
            # Weights are stored in the autocast dtype once, so no per-call weight casts are needed
            # (and CUDA graphs, which forbid autocast's weight cache, stay cheap).
            net = net.to(precision_dtype(self.precision))
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)
        if on_gpu:
            torch.backends.cudnn.benchmark = True
            if exhaustive_autotune:
                torch.backends.cudnn.benchmark_limit = 0
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        #: The network as given (eval mode; its weights are not modified).
        self.model = model.eval()
        #: The optimised copy that actually runs (folded BatchNorm, dtype, memory format).
        self.network = net
        self._forward = net
        if compile:
            enable_compile_cache()
            self._forward = torch.compile(net, dynamic=False)
        self._graphs: dict[tuple, _Graph] = {}
        #: (map sizes, text_a, text_b, text maps) of the last eager call (see ``_run_eager``).
        self._text_cache: tuple | None = None
        #: Seconds spent in the first call of each new input shape (compilation / graph capture).
        self.warmup_seconds: dict[tuple, float] = {}

    @property
    def uses_text(self) -> bool:
        """Whether the model needs text embeddings."""
        return self.network.uses_text

    def _prepare(self, img_a: torch.Tensor, img_b: torch.Tensor, text_a: torch.Tensor | None,
                 text_b: torch.Tensor | None) -> list[torch.Tensor]:
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        tensors = [img_a.to(self.device, non_blocking=True).float().contiguous(memory_format=fmt),
                   img_b.to(self.device, non_blocking=True).float().contiguous(memory_format=fmt)]
        if self.network.uses_text:
            if text_a is None or text_b is None:
                raise MMChangeError(f"this {self.config.variant} model needs text embeddings for both dates")
            tensors += [text_a.to(self.device, non_blocking=True).float(),
                        text_b.to(self.device, non_blocking=True).float()]
        return tensors

    def _run(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        with autocast_context(self.precision, self.device, cache_enabled=False):
            return self._forward(*tensors)[0]

    def _run_eager(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        """The uncompiled, ungraphed path: text maps are reused while the text stays the same (the
        windows of one scene), and only the main logits are upsampled."""
        img_a, img_b, *text = tensors
        with autocast_context(self.precision, self.device, cache_enabled=False):
            maps = self._cached_text_maps(img_a, text[0], text[1]) if text else None
            return self.network(img_a, img_b, *text, text_maps=maps, main_only=True)[0]

    def _cached_text_maps(self, img: torch.Tensor, text_a: torch.Tensor, text_b: torch.Tensor) -> list[torch.Tensor]:
        dtype = precision_dtype(self.precision)
        text_a, text_b = text_a.to(dtype), text_b.to(dtype)
        sizes = MMChange.fused_sizes(*img.shape[-2:])
        cached = self._text_cache
        if cached is not None and cached[0] == sizes and torch.equal(cached[1], text_a) and torch.equal(cached[2], text_b):
            return cached[3]
        maps = self.network.text_maps(text_a, text_b, sizes)
        self._text_cache = (sizes, text_a, text_b, maps)
        return maps

    def _graphed(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        key = tuple((tuple(t.shape), t.dtype) for t in tensors)
        entry = self._graphs.get(key)
        if entry is None:
            start = time.perf_counter()
            static = [t.clone() for t in tensors]
            stream = torch.cuda.Stream(self.device)
            stream.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(stream):
                for _ in range(3):  # warm-up: cuDNN autotuning, lazy init, compilation
                    self._run(static)
            torch.cuda.current_stream(self.device).wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                output = self._run(static)
            entry = self._graphs[key] = _Graph(graph, static, output)
            torch.cuda.synchronize(self.device)
            self.warmup_seconds[key] = time.perf_counter() - start
        for dst, src in zip(entry.inputs, tensors):
            dst.copy_(src, non_blocking=True)
        entry.graph.replay()
        return entry.output.float().clone()

    @torch.no_grad()
    def logits(self, img_a: torch.Tensor, img_b: torch.Tensor, text_a: torch.Tensor | None = None,
               text_b: torch.Tensor | None = None) -> torch.Tensor:
        """Main change logits ``[B, O, H, W]`` (float32, on the runner's device; O = 1, or K classes)."""
        tensors = self._prepare(img_a, img_b, text_a, text_b)
        if self.cuda_graphs:
            return self._graphed(tensors)
        run = self._run if self.compiled else self._run_eager
        key = tuple(tuple(t.shape) for t in tensors)
        if key not in self.warmup_seconds:
            start = time.perf_counter()
            out = run(tensors).float()
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.warmup_seconds[key] = time.perf_counter() - start
            return out
        return run(tensors).float()

    def probabilities(self, img_a: torch.Tensor, img_b: torch.Tensor, text_a: torch.Tensor | None = None,
                      text_b: torch.Tensor | None = None) -> torch.Tensor:
        """Change probabilities ``[B, 1, H, W]`` (K-class models: class probabilities ``[B, K, H, W]``)."""
        logits = self.logits(img_a, img_b, text_a, text_b)
        return torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)
