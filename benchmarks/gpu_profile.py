"""Where one inference batch spends its time: per network stage, and per kernel category.

Two tables for the configuration given (same runner as ``mmchange benchmark``, CUDA graphs off so
that every kernel is visible):

* stages: device time of trunk, projections, NAM, IFR, TDE, ITFF, decoder and the rest (final
  upsampling, casts), timed with CUDA events at the stage boundaries of the eager network;
* kernels: ``torch.profiler`` device time of the network as it runs (compiled with ``--compile``),
  grouped into convolutions, matrix products, Triton fused element-wise/reduction kernels, copies
  and the rest, plus the most expensive kernels.

Usage (repository root): ``python benchmarks/gpu_profile.py --batch 32 --compile --json-out prof.json``.
On a CPU it profiles CPU operators instead of kernels (useful as a smoke test).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import defaultdict
from collections.abc import Callable

import torch

from mmchange_core.inference.runner import InferenceRunner
from mmchange_core.models.config import ModelConfig
from mmchange_core.models.mmchange import MMChange

#: Stage name -> attribute path in the runner's network.
STAGES = {
    "trunk (ResNet, both dates)": "encoder.trunk",  # conv1 .. layer4 (its forward is not called)
    "projections": "encoder.proj",
    "NAM": "encoder.aggregation",
    "IFR": "ifr",
    "TDE": "tde",
    "ITFF": "itff",
    "decoder": "decoder",
}
#: Kernel-name fragments -> category (first match wins; names lower-cased).
#: Triton kernels come first: inductor names them after the ops they absorb ("..._convolution_relu").
CATEGORIES = (
    ("Triton fused element-wise", ("triton_poi",)),
    ("Triton reductions", ("triton_red", "triton_per")),
    ("convolution (cuDNN / CUTLASS)", ("conv", "fprop", "implicit", "xmma_fprop", "nhwckrsc", "dgrad", "wgrad")),
    ("matrix product (cuBLAS)", ("gemm", "nvjet", "cublas", "matmul")),
    ("layout copies / casts", ("copy", "nchwtonhwc", "nhwctonchw", "transpose", "cast")),
)


def _category(name: str) -> str:
    low = name.lower()
    for label, parts in CATEGORIES:
        if any(p in low for p in parts):
            return label
    return "other (eager element-wise, interpolation, ...)"


def _module(root: torch.nn.Module, path: str) -> torch.nn.Module | None:
    module: torch.nn.Module | None = root
    for part in path.split("."):
        module = getattr(module, part, None)
        if module is None:
            return None
    return module


class _StageClock:
    """Records device time between each stage module's pre- and post-forward hooks."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.open: dict[str, object] = {}
        self.spans: dict[str, list[tuple[object, object]]] = defaultdict(list)

    def _mark(self) -> object:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def attach(self, name: str, first: torch.nn.Module, last: torch.nn.Module | None = None) -> None:
        """Time from ``first``'s start to ``last``'s end (``last`` defaults to ``first``)."""
        first.register_forward_pre_hook(lambda *_: self.open.__setitem__(name, self._mark()))
        (last or first).register_forward_hook(
            lambda *_: self.spans[name].append((self.open.pop(name), self._mark())))

    def elapsed_ms(self, span: tuple[object, object]) -> float:
        start, end = span
        if self.cuda:
            return start.elapsed_time(end)  # type: ignore[attr-defined]
        return (end - start) * 1000.0  # type: ignore[operator]


def _time_calls(fn: Callable[[], object], device: torch.device, iters: int) -> list[float]:
    times = []
    for _ in range(iters):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1000.0)
    return times


def _runner(model: MMChange, args: argparse.Namespace, compile: bool) -> InferenceRunner:
    """The runner as ``mmchange benchmark`` builds it, with CUDA graphs off so that kernels show."""
    return InferenceRunner(model, args.device, args.precision, cuda_graphs=False, compile=compile,
                           fused_convs=args.fused_convs, exhaustive_autotune=args.exhaustive_autotune)


def stage_table(model: MMChange, args: argparse.Namespace, inputs: list[torch.Tensor]) -> dict:
    """Per-stage device time of the eager network (same precision, layout and fusion as the runner)."""
    runner = _runner(model, args, compile=False)
    clock = _StageClock(runner.device)
    for name, path in STAGES.items():
        module = _module(runner.network, path)
        if name.startswith("trunk"):
            clock.attach(name, module.conv1, module.layer4)
            continue
        if isinstance(module, torch.nn.ModuleDict):  # projections: time the four as one stage
            for sub in module.values():
                clock.attach(name, sub)
            continue
        if module is not None:
            clock.attach(name, module)
    step = lambda: runner.logits(*inputs)  # noqa: E731
    for _ in range(3):
        step()
    clock.spans.clear()
    totals = _time_calls(step, runner.device, args.iters)
    total = statistics.median(totals)
    rows = []
    for name, spans in clock.spans.items():
        per_call = sum(clock.elapsed_ms(s) for s in spans) / args.iters
        rows.append({"stage": name, "ms": per_call, "share": per_call / total})
    rest = total - sum(r["ms"] for r in rows)
    rows.append({"stage": "rest (upsampling, casts, copies)", "ms": rest, "share": rest / total})
    return {"total_ms": total, "rows": rows}


def kernel_table(model: MMChange, args: argparse.Namespace, inputs: list[torch.Tensor]) -> dict:
    """torch.profiler device time per kernel category and the top kernels (CPU: operators)."""
    runner = _runner(model, args, compile=args.compile)
    on_gpu = runner.device.type == "cuda"
    step = lambda: runner.logits(*inputs)  # noqa: E731
    t0 = time.perf_counter()
    for _ in range(3):
        step()
    if on_gpu:
        torch.cuda.synchronize()
    warmup = time.perf_counter() - t0
    total = statistics.median(_time_calls(step, runner.device, args.iters))
    activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if on_gpu else [])
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(args.iters):
            step()
        if on_gpu:
            torch.cuda.synchronize()
    by_name: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    for evt in prof.key_averages():
        if on_gpu:
            if evt.device_type != torch.autograd.DeviceType.CUDA:
                continue
            us = getattr(evt, "self_device_time_total", None) or getattr(evt, "self_cuda_time_total", 0.0)
        else:
            if evt.key.startswith(("ProfilerStep", "Torch-Compiled", "CompiledFunction")):
                continue
            us = evt.self_cpu_time_total
        by_name[evt.key] += us / 1000.0 / args.iters
        counts[evt.key] += evt.count // args.iters
    measured = sum(by_name.values())
    categories: dict[str, float] = defaultdict(float)
    for name, ms in by_name.items():
        categories[_category(name) if on_gpu else "CPU operators"] += ms
    top = sorted(by_name.items(), key=lambda kv: -kv[1])[: args.top]
    return {
        "wall_ms_per_batch": total,
        "profiled_ms_per_batch": measured,
        "warmup_s": warmup,
        "categories": [{"category": k, "ms": v, "share": v / measured} for k, v in
                       sorted(categories.items(), key=lambda kv: -kv[1])],
        "top": [{"kernel": k[:140], "ms": v, "share": v / measured, "calls": counts[k]} for k, v in top],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--variant", default="full")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--fused-convs", default="auto")
    parser.add_argument("--exhaustive-autotune", action="store_true")
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--skip-stages", action="store_true")
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args()

    torch.manual_seed(0)
    model = MMChange(ModelConfig(backbone=args.backbone, variant=args.variant)).eval()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    inputs = [torch.randn(args.batch, 3, args.size, args.size, device=device),
              torch.randn(args.batch, 3, args.size, args.size, device=device)]
    if model.uses_text:
        inputs += [torch.randn(args.batch, model.config.text_dim, device=device)] * 2
    report = {"config": vars(args), "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
              "torch": torch.__version__}
    if not args.skip_stages:
        report["stages"] = stage_table(model, args, inputs)
    report["kernels"] = kernel_table(model, args, inputs)
    if args.json_out:
        with open(args.json_out, "w") as fh:
            json.dump(report, fh, indent=1)
    label = f"{args.backbone}/{args.variant} {args.size}px batch {args.batch} {args.precision}" + \
        (" compiled" if args.compile else "") + f" fused={args.fused_convs}"
    if "stages" in report:
        print(f"\nStages ({label}, eager, CUDA graphs off): {report['stages']['total_ms']:.2f} ms per batch")
        for row in report["stages"]["rows"]:
            print(f"  {row['stage']:<36} {row['ms']:9.3f} ms  {100 * row['share']:5.1f}%")
    k = report["kernels"]
    print(f"\nKernels ({label}): wall {k['wall_ms_per_batch']:.2f} ms per batch, kernels "
          f"{k['profiled_ms_per_batch']:.2f} ms, warm-up {k['warmup_s']:.1f} s")
    for row in k["categories"]:
        print(f"  {row['category']:<48} {row['ms']:9.3f} ms  {100 * row['share']:5.1f}%")
    for row in k["top"]:
        print(f"  {row['ms']:8.3f} ms {100 * row['share']:5.1f}% x{row['calls']:<3} {row['kernel'][:100]}")


if __name__ == "__main__":
    main()
