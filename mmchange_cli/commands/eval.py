"""``mmchange eval``: metrics of a checkpoint on a dataset split (one confusion matrix over all pixels)."""

from __future__ import annotations

from pathlib import Path

import typer

from mmchange_cli import options as opt
from mmchange_cli.console import ProgressDisplay, err, out, print_json, report_size, table


def eval_command(
    checkpoint: Path | None = opt.checkpoint(),
    dataset: str | None = opt.dataset(),
    change_value: int | None = opt.change_value(),
    split: str | None = typer.Option(None, "--split", help="Split to evaluate (default test)."),
    threshold: float | None = typer.Option(None, "--threshold",
                                           help="Change when probability > T (default: the checkpoint's, 0.5 "
                                                "unless tuned)."),
    tune_threshold: bool = opt.flag("--tune-threshold", "Pick the threshold with the best F1 on the val split, "
                                                        "store it in the checkpoint, then evaluate with it."),
    save_vis: bool = opt.flag("--save-vis", "Write error overlays (white TP, black TN, red FP, blue FN) to vis/."),
    save_pred: Path | None = typer.Option(None, "--save-pred",
                                          help="Also write the 0/255 masks into this folder, named as predict names "
                                               "them."),
    gallery: int | None = typer.Option(None, "--gallery", min=0,
                                       help="Worst pairs (by F1) shown with pictures in report.html (default 24, "
                                            "0: none); every pair is in its sortable table."),
    batch_size: int | None = opt.batch_size("Windows per network call."),
    tile_size: int | None = opt.tile_size(),
    overlap: int | None = opt.overlap(),
    workers: int | None = opt.workers(),
    device: str | None = opt.device(),
    precision: str | None = opt.precision(),
    compile: bool = opt.compile(),
    captions: str | None = opt.captions(),
    accept_stale_captions: bool = opt.accept_stale_captions(),
    name: str | None = opt.name(),
    project: str | None = opt.project(),
    config: Path | None = opt.config(),
    overrides: list[str] = opt.sets(),
    as_json: bool = opt.as_json(),
) -> None:
    """Evaluate a checkpoint: precision, recall, F1, IoU (change class), OA and kappa over all pixels."""
    from mmchange_core.evaluation.metrics import METRIC_NAMES
    from mmchange_core.evaluation.run import EvalOptions, run_evaluation
    from mmchange_core.reporting.report import report_fields

    options = opt.resolve(EvalOptions, config, overrides, checkpoint=checkpoint, dataset=dataset, split=split,
                          change_value=change_value,
                          threshold=threshold, tune_threshold=tune_threshold or None, save_vis=save_vis or None,
                          save_pred=save_pred, gallery=gallery, batch_size=batch_size, tile_size=tile_size,
                          overlap=overlap,
                          workers=workers, device=device, precision=precision, compile=compile or None,
                          captions=captions, accept_stale_captions=accept_stale_captions or None, name=name,
                          project=project)
    with ProgressDisplay() as display:
        report = run_evaluation(options, progress=display, message=display.print)
    metrics = report.metrics()
    if as_json:
        data = dict(metrics)
        data.update({"split": options.split, "pairs": len(report.result.per_image),
                     "threshold": report.result.threshold, "tile_size": report.tile_size,
                     "overlap": report.overlap, "run_dir": str(report.run_dir),
                     "checkpoint": str(options.checkpoint), **report_fields(report.report)})
        if report.tuned:
            data["threshold_tuning"] = report.tuned
        print_json(data)
        return
    rows = [(k, float(metrics[k])) for k in METRIC_NAMES]
    rows += [(k, int(metrics[k])) for k in ("tp", "fp", "fn", "tn")]
    out.print(table(f"{options.split} split, {len(report.result.per_image)} pairs, "
                    f"threshold {report.result.threshold:.3f}", ["metric", "value"], rows))
    err.print("precision, recall, F1 and IoU are for the change class, from one confusion matrix over all pixels",
              soft_wrap=True)
    out.print(f"results: {report.run_dir}")
    if report.report is not None:
        out.print(f"report: {report_size(report.report)}")


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)
