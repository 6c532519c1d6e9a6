"""``mmchange train``: train a network with the paper's protocol (single process or torchrun DDP)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from mmchange_cli import options as opt
from mmchange_cli.console import ProgressDisplay, err, out, print_json, report_size

if TYPE_CHECKING:
    from mmchange_core.progress import ProgressEvent


def _epoch_table(row: dict[str, Any], epochs: int) -> Any:
    """One compact table per epoch (fits 80 columns)."""
    from rich import box
    from rich.table import Table

    def num(key: str) -> str:
        value = row.get(key)
        return "-" if value is None else f"{value:.4f}"

    tbl = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, collapse_padding=True)
    for col in ("epoch", "iter", "lr", "loss", "P", "R", "F1", "IoU", "sec", "best"):
        tbl.add_column(col, justify="right", no_wrap=True)
    tbl.add_row(f"{row['epoch']}/{epochs - 1}", str(row["iterations"]), f"{row['lr']:.2e}", num("train_loss"),
                num("val_precision"), num("val_recall"), num("val_f1"), num("val_iou"), f"{row['seconds']:.1f}",
                "*" if row.get("best") else "")
    return tbl


def _make_observer(show: bool) -> Any:
    from mmchange_core.training.loop import TrainInfo, TrainObserver

    class RichObserver(TrainObserver):
        """Renders a run on stderr: set-up lines, a progress display (loss, lr, ETA), epoch tables."""

        def __init__(self) -> None:
            self.display = ProgressDisplay()
            self.epochs = 0

        def on_start(self, info: TrainInfo) -> None:
            self.epochs = info.epochs
            text = "image only" if info.text is None else (
                f"captions {info.text.get('captioner', {}).get('name', '?')} + "
                f"encoder {info.text.get('encoder', {}).get('name', '?')}")
            err.print(f"run folder {info.run_dir}{' (resumed)' if info.resumed else ''}", soft_wrap=True)
            for line in info.datasets:
                err.print(f"  {line}", soft_wrap=True)
            err.print("  epoch tables: train loss; P, R, F1, IoU of the change class on the validation split",
                      soft_wrap=True)
            err.print(f"  {info.epochs} epochs (0-{info.epochs - 1}) x {info.iters_per_epoch} iterations = "
                      f"{info.total_iters}; {info.device}, {info.precision}, {info.world_size} process(es); "
                      f"text: {text}", soft_wrap=True)
            if show:
                self.display.__enter__()

        def on_progress(self, event: ProgressEvent) -> None:
            if show:
                self.display(event)

        def on_epoch_end(self, row: dict[str, Any]) -> None:
            self.display.print(_epoch_table(row, self.epochs))

        def on_message(self, text: str) -> None:
            self.display.print(text)

        def close(self) -> None:
            self.display.__exit__(None, None, None)

    return RichObserver()


def train(
    dataset: str | None = opt.dataset(),
    change_value: int | None = opt.change_value(),
    backbone: str | None = typer.Option(None, "--backbone", help="resnet18, resnet34 or resnet50 (default)."),
    variant: str | None = typer.Option(None, "--variant", "-v",
                                       help="full (default), image-only, no-modules, no-ifr, no-tde or no-itff."),
    iters: int | None = typer.Option(None, "--iters", help="Training iterations, rounded up to whole epochs."),
    batch_size: int | None = opt.batch_size("Batch size over all processes."),
    crop_size: int | None = typer.Option(None, "--crop-size", help="Crop size; larger images are tiled."),
    no_pretrained: bool = opt.flag("--no-pretrained", "Start the trunk from random weights."),
    precision: str | None = opt.precision("fp32 (default, the paper's), auto, bf16 or fp16 (autocast)."),
    compile: bool = opt.compile(),
    device: str | None = opt.device(),
    seed: int | None = typer.Option(None, "--seed", help="Random seed."),
    workers: int | None = opt.workers(),
    captions: str | None = opt.captions(),
    accept_stale_captions: bool = opt.accept_stale_captions(),
    name: str | None = opt.name(),
    project: str | None = opt.project(),
    config: Path | None = opt.config(),
    overrides: list[str] = opt.sets(),
    resume: str | None = typer.Option(None, "--resume", help="Continue a run (its folder, or its name in "
                                                             "<project>/train)."),
    stop_after: int | None = typer.Option(None, "--stop-after",
                                          help="Stop after this many iterations in total, keeping a resumable state."),
    as_json: bool = opt.as_json(),
) -> None:
    """Train MMChange on a change-detection dataset; prints the run folder and the best checkpoint."""
    from mmchange_core.config import ConfigError
    from mmchange_core.distributed import launch_position
    from mmchange_core.training.config import TrainConfig, validate_config
    from mmchange_core.training.interrupt import signal_exit_code
    from mmchange_core.training.loop import find_run, resume_config
    from mmchange_core.training.loop import train as run_training

    flags = {"dataset": dataset, "backbone": backbone, "variant": variant, "iters": iters, "batch_size": batch_size,
             "crop_size": crop_size, "pretrained": False if no_pretrained else None, "precision": precision,
             "compile": compile or None, "device": device, "seed": seed, "workers": workers, "captions": captions,
             "accept_stale_captions": accept_stale_captions or None,
             "name": name, "project": project, "change_value": change_value}
    resume_dir = None
    if resume is not None:
        if config is not None:
            raise ConfigError("--resume continues a run with its own config; leave out --config")
        resume_dir = find_run(resume, project or "runs")
        cfg = resume_config(resume_dir, [*overrides, *((k, v) for k, v in flags.items() if v is not None)])
    else:
        cfg = opt.resolve(TrainConfig, config, overrides, **flags)
    validate_config(cfg)
    main_process = launch_position()[0] == 0
    observer = _make_observer(show=main_process)
    try:
        result = run_training(cfg, resume_dir=resume_dir, stop_after=stop_after, observer=observer)
    finally:
        observer.close()
    if main_process:
        _print_result(result, as_json)
    if result.stopped_by in ("SIGINT", "SIGTERM"):  # as a shell reports a process the signal ended: 130, 143
        raise typer.Exit(signal_exit_code(result.stopped_by))


def _print_result(result: Any, as_json: bool) -> None:
    """The run folder, best checkpoint, curves and logs (or the whole result as JSON) on stdout."""
    from mmchange_core.reporting.report import report_fields
    from mmchange_core.training.metrics_log import CURVES_FILE, METRICS_FILE, TENSORBOARD_DIR

    files = {name: result.run_dir / file for name, file in (("metrics_csv", METRICS_FILE), ("curves", CURVES_FILE),
                                                             ("tensorboard", TENSORBOARD_DIR))}
    data = {
        "run_dir": str(result.run_dir),
        "best_checkpoint": str(result.best_checkpoint) if result.best_checkpoint else None,
        "last_checkpoint": str(result.last_checkpoint) if result.last_checkpoint else None,
        "best_epoch": result.best_epoch if result.best_epoch >= 0 else None,
        "best_val_f1": result.best_f1,
        "iterations": result.iterations,
        "total_iterations": result.total_iters,
        "completed": result.completed,
        "stopped_by": result.stopped_by,
        **{name: str(path) if path.exists() else None for name, path in files.items()},
        **report_fields(result.report),
    }
    if as_json:
        print_json(data)
        return
    if result.best_f1 is not None:
        err.print(f"best epoch {result.best_epoch} (val F1 {result.best_f1:.4f})")
    out.print(f"run folder: {result.run_dir}")
    out.print(f"best checkpoint: {result.best_checkpoint if result.best_checkpoint else 'none yet'}")
    if files["curves"].exists():
        out.print(f"curves: {files['curves']} (values in {files['metrics_csv'].name})")
    if files["tensorboard"].exists():
        out.print(f"tensorboard: tensorboard --logdir {files['tensorboard']}")
    if result.report is not None and result.report.is_file():
        out.print(f"report: {report_size(result.report)}")


def register(app: typer.Typer) -> None:
    app.command("train")(train)
