"""``mmchange eval``: metrics of a checkpoint on a dataset split (one confusion matrix over all pixels)."""

from __future__ import annotations

from pathlib import Path

import typer

from mmchange_cli.console import err, out, print_json, progress, table


def eval_command(
    checkpoint: Path = typer.Option(..., "--checkpoint", "-w", help="mmchange checkpoint (.safetensors)."),
    dataset: str = typer.Option(..., "--dataset", "-d", help="levir, whu, sysu or a dataset folder."),
    split: str = typer.Option("test", "--split", help="Split to evaluate."),
    threshold: float | None = typer.Option(None, "--threshold",
                                           help="Change when probability > T (default: the checkpoint's, 0.5 "
                                                "unless tuned)."),
    tune_threshold: bool = typer.Option(False, "--tune-threshold",
                                        help="Pick the threshold with the best F1 on the val split, store it in the "
                                             "checkpoint, then evaluate with it."),
    save_vis: bool = typer.Option(False, "--save-vis",
                                  help="Write error overlays (white TP, black TN, red FP, blue FN) to vis/."),
    batch_size: int = typer.Option(8, "--batch-size", help="Tiles per forward pass."),
    tile_size: int | None = typer.Option(None, "--tile-size",
                                         help="Tile side for large images (default: the training crop size)."),
    workers: int = typer.Option(2, "--workers", help="DataLoader worker processes."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    precision: str = typer.Option("auto", "--precision", help="auto (bf16 on GPU, fp32 on CPU), fp32, bf16, fp16."),
    compile: bool = typer.Option(False, "--compile", help="torch.compile the network (GPU; cached on disk)."),
    caption_store: str | None = typer.Option(None, "--caption-store",
                                             help="Caption store file (default: the one in the dataset folder)."),
    name: str | None = typer.Option(None, "--name", help="Run name (default exp; auto-incremented)."),
    project: str = typer.Option("runs", "--project", help="Folder for run folders."),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON on stdout."),
) -> None:
    """Evaluate a checkpoint: precision, recall, F1, IoU (change class), OA and kappa over all pixels."""
    from mmchange_core.evaluation.run import EvalOptions, run_evaluation
    from mmchange_core.evaluation.metrics import METRIC_NAMES

    options = EvalOptions(checkpoint=checkpoint, dataset=dataset, split=split, threshold=threshold,
                          tune_threshold=tune_threshold, save_vis=save_vis, batch_size=batch_size,
                          tile_size=tile_size, num_workers=workers, device=device, precision=precision, compile=compile,
                          caption_store=caption_store, name=name, project=project)
    with progress() as bar:
        task = bar.add_task("eval", total=None)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        report = run_evaluation(options, progress=advance,
                                message=lambda text: bar.console.print(text, soft_wrap=True))
    metrics = report.metrics()
    if as_json:
        data = dict(metrics)
        data.update({"split": split, "pairs": len(report.result.per_image), "threshold": report.result.threshold,
                     "run_dir": str(report.run_dir), "checkpoint": str(checkpoint)})
        if report.tuned:
            data["threshold_tuning"] = report.tuned
        print_json(data)
        return
    rows = [(k, float(metrics[k])) for k in METRIC_NAMES]
    rows += [(k, int(metrics[k])) for k in ("tp", "fp", "fn", "tn")]
    out.print(table(f"{split} split, {len(report.result.per_image)} pairs, threshold {report.result.threshold:.3f}",
                    ["metric", "value"], rows))
    err.print("precision, recall, F1 and IoU are for the change class, from one confusion matrix over all pixels",
              soft_wrap=True)
    out.print(f"results: {report.run_dir}")


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)
