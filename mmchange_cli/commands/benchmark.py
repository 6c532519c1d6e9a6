"""``mmchange benchmark``: pairs/s, latency, peak memory, parameters and GFLOPs of the network."""

from __future__ import annotations

import typer

from mmchange_cli.console import err, out, print_json, table


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated integers, got '{text}'") from None


def benchmark(
    backbone: str = typer.Option("resnet50", "--backbone", "-b", help="resnet18, resnet34 or resnet50."),
    variant: str = typer.Option("full", "--variant", "-v", help="Model variant."),
    size: int = typer.Option(256, "--size", help="Square input size (multiple of 32)."),
    batch: str = typer.Option("1,32", "--batch", help="Comma-separated batch sizes."),
    precision: str = typer.Option("fp32,bf16", "--precision", help="Comma-separated: fp32, bf16, fp16."),
    compile: bool = typer.Option(False, "--compile", help="torch.compile the network (cached on disk)."),
    cuda_graphs: bool | None = typer.Option(None, "--cuda-graphs/--no-cuda-graphs",
                                            help="Replay CUDA graphs (default: on for GPUs)."),
    channels_last: bool | None = typer.Option(None, "--channels-last/--no-channels-last",
                                              help="NHWC memory format (default: on for inference; training: GPUs only)."),
    subgrid_trunk: bool = typer.Option(False, "--subgrid-trunk",
                                       help="Run dilated trunk blocks as undilated convs on sub-grids."),
    fused_convs: str = typer.Option("auto", "--fused-convs",
                                    help="Fuse conv+bias(+residual)+ReLU into one cuDNN kernel: auto, off, trunk or all."),
    exhaustive_autotune: bool = typer.Option(False, "--exhaustive-autotune",
                                             help="cuDNN times every convolution engine (slower first call)."),
    with_text: bool = typer.Option(False, "--with-text", help="Include CLIP text encoding of fresh captions."),
    train: bool = typer.Option(False, "--train", help="Also time training steps (AMP, fused Adam)."),
    repeats: int = typer.Option(5, "--repeats", help="Timed runs per row; the median is reported."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Measure inference throughput (text encoder excluded unless --with-text)."""
    from mmchange_core.config import to_dict
    from mmchange_core.benchmark import BenchmarkConfig, run_benchmark

    cfg = BenchmarkConfig(backbone=backbone, variant=variant, size=size, batches=_int_list(batch),
                          precisions=[p.strip() for p in precision.split(",") if p.strip()],
                          compile=compile, subgrid_trunk=subgrid_trunk, fused_convs=fused_convs,
                          exhaustive_autotune=exhaustive_autotune, cuda_graphs=cuda_graphs, channels_last=channels_last,
                          with_text=with_text, train=train, repeats=repeats, device=device)
    report = run_benchmark(cfg, on_row=lambda r: err.print(
        f"{r.mode} batch {r.batch} {r.precision}: {r.pairs_per_s:,.1f} pairs/s (warm-up {r.warmup_s:.1f} s)"))
    if as_json:
        print_json(to_dict(report))
        return
    rows = [(r.mode, r.batch, r.precision, "yes" if r.compile else "no", "yes" if r.cuda_graphs else "no",
             r.fused_convs, r.pairs_per_s, r.per_pair_ms, r.latency_ms, r.peak_memory_mb, r.warmup_s) for r in report.rows]
    out.print(table(
        f"MMChange {report.backbone}/{report.variant} at {report.size}x{report.size} on {report.device} "
        f"({report.params_m:.2f} M params, {report.gflops:.1f} GFLOPs/pair)",
        ["mode", "batch", "precision", "compile", "graphs", "fused", "pairs/s", "ms/pair", "ms/batch", "peak MB",
         "warm-up s"], rows))


def register(app: typer.Typer) -> None:
    app.command("benchmark")(benchmark)
