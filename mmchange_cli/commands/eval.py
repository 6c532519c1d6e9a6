"""``mmchange eval``: metrics of a checkpoint on a dataset split (one confusion matrix over all pixels)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from mmchange_cli import options as opt
from mmchange_cli.console import ProgressDisplay, err, out, print_json, report_size, table


@opt.detector_options()
def eval_command(
    checkpoint: Path | None = opt.checkpoint(help=opt.CHECKPOINT_DEFAULT_HELP),
    dataset: str | None = opt.dataset("Default: the dataset the checkpoint was trained on."),
    change_value: int | None = opt.change_value(),
    split: str | None = typer.Option(None, "--split", help="Split to evaluate (default test)."),
    tune_threshold: bool = opt.flag("--tune-threshold", "Pick the threshold with the best F1 on the val split, "
                                                        "store it in the checkpoint, then evaluate with it."),
    save_vis: bool = opt.flag("--save-vis", "Write error overlays (white TP, black TN, red FP, blue FN) to vis/."),
    save_pred: Path | None = typer.Option(None, "--save-pred",
                                          help="Also write the 0/255 masks into this folder, named as predict names "
                                               "them."),
    gallery: int | None = typer.Option(None, "--gallery", min=0,
                                       help="Worst pairs (by F1) shown with pictures in report.html (default 24, "
                                            "0: none); every pair is in its sortable table."),
    # duplicates (deliberate): the options every run command shares are declared once in options.py; typer reads
    # each command's own signature, so the calls repeat here
    accept_stale_captions: bool = opt.accept_stale_captions(),
    name: str | None = opt.name(),
    project: str | None = opt.project(),
    config: Path | None = opt.config(),
    overrides: list[str] = opt.sets(),
    as_json: bool = opt.as_json(),
    detector: dict[str, Any] | None = None,
) -> None:
    """Evaluate a checkpoint: precision, recall, F1, IoU (change class), OA and kappa over all pixels."""
    from mmchange_core.metrics import METRIC_NAMES
    from mmchange_core.evaluation.run import EvalOptions, run_evaluation
    from mmchange_core.reporting.report import runtime_text

    options = opt.resolve(EvalOptions, config, overrides, detector=detector,
                          checkpoint=str(checkpoint) if checkpoint is not None else None, dataset=dataset,
                          split=split, change_value=change_value, tune_threshold=tune_threshold or None,
                          save_vis=save_vis or None, save_pred=save_pred, gallery=gallery,
                          accept_stale_captions=accept_stale_captions or None, name=name, project=project)
    with ProgressDisplay() as display:
        report = run_evaluation(options, progress=display, message=display.print)
    if as_json:
        print_json(report.to_dict())
        return
    metrics = report.metrics()
    rows = [(k, float(metrics[k])) for k in METRIC_NAMES]
    rows += [(k, int(metrics[k])) for k in ("tp", "fp", "fn", "tn")]
    out.print(table(f"{options.split} split, {len(report.result.per_image)} pairs, "
                    f"threshold {report.result.threshold:.3f}", ["metric", "value"], rows))
    if "per_class" in metrics:  # a K-class checkpoint: the classes, then what the binary metrics above mean
        out.print(table(f"per class (mean F1 {metrics['mean_f1']:.4f}, mIoU {metrics['miou']:.4f} over the change "
                        f"classes; class OA {metrics['class_oa']:.4f})",
                        ["class", "value", "precision", "recall", "F1", "IoU", "label px", "predicted px"],
                        [(r["name"], r["value"], float(r["precision"]), float(r["recall"]), float(r["f1"]),
                          float(r["iou"]), int(r["support"]), int(r["predicted"])) for r in metrics["per_class"]]))
        err.print("precision, recall, F1 and IoU of the first table are for any change against no change; per class: "
                  "one class against the rest, from one confusion matrix over all pixels", soft_wrap=True)
    else:
        err.print("precision, recall, F1 and IoU are for the change class, from one confusion matrix over all pixels",
                  soft_wrap=True)
    if report.summary and report.summary.get("detector"):
        out.print(f"runtime: {runtime_text(report.summary['detector'])}")
    out.print(f"results: {report.run_dir}")
    if report.report is not None:
        out.print(f"report: {report_size(report.report)}")


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)
