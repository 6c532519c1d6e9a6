"""``mmchange export``: a checkpoint as an ONNX model for onnxruntime (optionally int8), checked against fp32."""

from __future__ import annotations

from pathlib import Path

import typer

from mmchange_cli import options as opt
from mmchange_cli.console import out, print_json, table, warn


def export_command(
    checkpoint: str = typer.Argument(..., help="mmchange checkpoint (.safetensors, hf://OWNER/NAME\\[@REV] or an authors' "
                                               ".pth), or an fp32 .onnx export to quantise.",
                                     parser=opt.checkpoint_spec, metavar="CHECKPOINT"),
    output: Path = typer.Option(..., "--output", "-o", help="The .onnx file to write."),
    opset: int | None = typer.Option(None, "--opset", help="ONNX opset (default 18, the exporter's; newer ones "
                                                           "are converted)."),
    quantize: str | None = typer.Option(None, "--quantize", help="int8 (static, calibrated with --calibrate; "
                                                                 "onnxruntime's fast int8 kernels) or int8-dynamic "
                                                                 "(no calibration; slower than fp32 on CPUs)."),
    calibrate: str | None = typer.Option(None, "--calibrate", metavar="DATASET",
                                         help="Dataset whose pairs calibrate --quantize int8 (its train split, "
                                              "or all pairs of an unsplit folder)."),
    check: str | None = typer.Option(None, "--check", metavar="DATASET",
                                     help="Labelled dataset to compare the export with the fp32 torch network on: "
                                          "mask agreement, F1 of both, seconds per pair of both."),
    check_split: str | None = typer.Option(None, "--check-split", help="Split of --check (default test)."),
    captions: str | None = opt.captions("Caption store of --calibrate/--check for text models "
                                        "(default: the dataset's)."),
    config: Path | None = opt.config(),
    overrides: list[str] = opt.sets(),
    as_json: bool = opt.as_json(),
) -> None:
    """Export a checkpoint to ONNX: dynamic batch and size, the checkpoint's metadata inside the file."""
    from mmchange_core.evaluation.export_check import ExportOptions, run_export

    options = opt.resolve(ExportOptions, config, overrides, checkpoint=str(checkpoint), output=str(output),
                          opset=opset, quantize=quantize, calibrate=calibrate, check=check, check_split=check_split,
                          captions=captions)
    report = run_export(options)
    result = report.export
    if as_json:
        print_json(report.to_dict())
        return
    out.print(f"wrote {result.path} ({result.size_mb:.1f} MB, opset {result.opset}, {result.quantization}, "
              f"inputs {', '.join(result.inputs)}) in {result.seconds:.0f} s with {result.exporter}")
    out.print(f"onnxruntime vs torch fp32 on a random {result.check_size}x{result.check_size} pair: max |logit "
              f"difference| {result.max_abs_logit_diff:.2g}")
    if result.speedup is not None:
        out.print(f"{result.quantization} vs fp32 onnxruntime, 4 windows of {result.check_size}: "
                  f"{result.seconds_per_batch:.3f} s vs {result.fp32_seconds_per_batch:.3f} s "
                  f"({result.speedup:.2f}x)")
        if result.speedup < 1:
            warn(f"{result.quantization} is {1 / result.speedup:.1f}x slower than fp32 on this CPU; keep the fp32 "
                 f"export for speed")
    if report.calibration_windows:
        out.print(f"calibrated on {report.calibration_windows} windows of {report.calibration_pairs} pairs")
    if report.certificate is not None:
        from mmchange_core.models.int8_record import record_of

        verdict = "within the bound" if report.certificate.within_bound else \
            f"below the bound ({report.certificate.problem()}): runs only with --accept-int8-drift"
        out.print(f"certificate ({record_of(result.path).name}): {report.certificate.figures()}; {verdict}")
    if report.check is not None:
        c = report.check
        out.print(table(f"check on {c.pairs} pairs ({c.pixels:,} pixels): fp32 torch vs {result.path.name}",
                        ["measure", "value"],
                        [("mask agreement", f"{c.agreement:.4%}"), ("F1 fp32 torch", f"{c.f1_reference:.4f}"),
                         ("F1 export", f"{c.f1_fast:.4f}"), ("F1 change (points)", f"{(c.f1_fast - c.f1_reference) * 100:+.2f}"),
                         ("max |probability difference|", f"{c.max_abs_prob_diff:.2g}"),
                         ("s/pair fp32 torch (plain)", f"{c.seconds_reference:.3f}"),
                         ("s/pair export", f"{c.seconds_fast:.3f}")]))


def register(app: typer.Typer) -> None:
    app.command("export")(export_command)
