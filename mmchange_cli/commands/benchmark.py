"""``mmchange benchmark``: pairs/s, latency, peak memory, parameters and GFLOPs of the network."""

from __future__ import annotations

from pathlib import Path

import typer

from mmchange_cli import options as opt
from mmchange_cli.console import ProgressDisplay, out, print_json, table


def benchmark(
    backbone: str | None = typer.Option(None, "--backbone", help="resnet18, resnet34 or resnet50 (default)."),
    variant: str | None = typer.Option(None, "--variant", "-v", help="Model variant (default full)."),
    size: int | None = typer.Option(None, "--size", help="Square input size (multiple of 32)."),
    batch_size: str | None = opt.batch_size("Comma-separated batch sizes, e.g. 1,32."),
    precision: str | None = opt.precision("Comma-separated: fp32, bf16, fp16 (default fp32,bf16)."),
    compile: bool = opt.compile(),
    cuda_graphs: bool | None = typer.Option(None, "--cuda-graphs/--no-cuda-graphs",
                                            help="Replay CUDA graphs (default: on for GPUs)."),
    channels_last: bool | None = typer.Option(None, "--channels-last/--no-channels-last",
                                              help="NHWC memory format (default: on for inference; training: GPUs only)."),
    fused_convs: str | None = typer.Option(None, "--fused-convs", help="Fuse conv+bias(+residual)+ReLU into one "
                                                                      "cuDNN kernel: auto, off, trunk or all."),
    exhaustive_autotune: bool = opt.flag("--exhaustive-autotune",
                                         "cuDNN times every convolution engine (slower first call)."),
    with_text: bool = opt.flag("--with-text", "Include CLIP text encoding of fresh captions."),
    train: bool = opt.flag("--train", "Also time training steps (AMP, fused Adam)."),
    checkpoint: str | None = opt.checkpoint(help="A checkpoint or an exported .onnx: its architecture replaces "
                                                 "--backbone/--variant; an .onnx adds onnxruntime rows."),
    backend: str | None = typer.Option(None, "--backend", help="Comma-separated: torch, onnx (onnxruntime on the "
                                                               "CPU). Default torch, plus onnx for an .onnx checkpoint."),
    repeats: int | None = typer.Option(None, "--repeats", help="Timed runs per row; the median is reported."),
    device: str | None = opt.device(),
    config: Path | None = opt.config(),
    overrides: list[str] = opt.sets(),
    as_json: bool = opt.as_json(),
) -> None:
    """Measure inference throughput (text encoder excluded unless --with-text)."""
    from mmchange_core.benchmark import BenchmarkConfig, run_benchmark
    from mmchange_core.config import to_dict

    cfg = opt.resolve(BenchmarkConfig, config, overrides, backbone=backbone, variant=variant, size=size,
                      batch_size=batch_size, precision=precision, compile=compile or None,
                      fused_convs=fused_convs,
                      exhaustive_autotune=exhaustive_autotune or None, cuda_graphs=cuda_graphs,
                      channels_last=channels_last, with_text=with_text or None, train=train or None,
                      repeats=repeats, device=device,
                      checkpoint=None if checkpoint is None else str(checkpoint), backend=backend)
    with ProgressDisplay() as display:
        def show(event):  # noqa: ANN001, ANN202 - a ProgressEvent; each finished row stays on screen
            display(event)
            display.print(event.message)

        report = run_benchmark(cfg, progress=show)
    if as_json:
        print_json(to_dict(report))
        return
    rows = [(r.backend, r.mode, r.batch, r.precision, "yes" if r.compile else "no", "yes" if r.cuda_graphs else "no",
             r.fused_convs, r.pairs_per_s, r.per_pair_ms, r.latency_ms, r.peak_memory_mb, r.warmup_s) for r in report.rows]
    out.print(table(
        f"MMChange {report.backbone}/{report.variant} at {report.size}x{report.size} on {report.device} "
        f"({report.params_m:.2f} M params, {report.gflops:.1f} GFLOPs/pair)",
        ["backend", "mode", "batch", "precision", "compile", "graphs", "fused", "pairs/s", "ms/pair", "ms/batch", "peak MB",
         "warm-up s"], rows))


def register(app: typer.Typer) -> None:
    app.command("benchmark")(benchmark)
