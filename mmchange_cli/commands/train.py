"""``mmchange train``: train a network with the paper's protocol (single process or torchrun DDP)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer

from mmchange_cli.console import err, out, print_json, progress


def _overrides(options: dict[str, Any]) -> list[str]:
    """Options given on the command line as ``key=value`` overrides (None = not given)."""
    items = []
    for key, value in options.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        items.append(f"{key}={value}")
    return items


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
    from rich.progress import TextColumn

    from mmchange_core.training.loop import TrainInfo, TrainObserver

    class RichObserver(TrainObserver):
        """Renders a run on stderr: set-up lines, a progress bar (it/s, loss, lr, ETA), epoch tables."""

        def __init__(self) -> None:
            self.bar = progress(TextColumn("{task.fields[rate]}"), TextColumn("loss {task.fields[loss]}"),
                                TextColumn("lr {task.fields[lr]}"))
            self.task = None
            self.epochs = 0
            self.started = 0.0
            self.first = 0

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
                self.bar.start()
                self.task = self.bar.add_task("train", total=info.total_iters, completed=info.start_iteration,
                                              rate="", loss="-", lr="-")
            self.started = time.perf_counter()
            self.first = info.start_iteration

        def on_iteration(self, iteration: int, total: int, loss: float, lr: float) -> None:
            if self.task is None:
                return
            elapsed = time.perf_counter() - self.started
            rate = (iteration - self.first) / elapsed if elapsed > 0 else 0.0
            self.bar.update(self.task, completed=iteration, rate=f"{rate:.2f} it/s", loss=f"{loss:.4f}",
                            lr=f"{lr:.2e}")

        def on_validation(self, epoch: int) -> None:
            if self.task is not None:
                self.bar.update(self.task, description="validate")

        def on_epoch_end(self, row: dict[str, Any]) -> None:
            if self.task is not None:
                self.bar.update(self.task, description="train")
            self.bar.console.print(_epoch_table(row, self.epochs))

        def on_message(self, text: str) -> None:
            self.bar.console.print(text, soft_wrap=True)

        def close(self) -> None:
            if self.task is not None:
                self.bar.stop()

    return RichObserver()


def train(
    dataset: str | None = typer.Option(None, "--dataset", "-d", help="levir, whu, sysu or a dataset folder."),
    backbone: str | None = typer.Option(None, "--backbone", "-b", help="resnet18, resnet34 or resnet50 (default)."),
    variant: str | None = typer.Option(None, "--variant", "-v",
                                       help="full (default), image-only, no-modules, no-ifr, no-tde or no-itff."),
    iters: int | None = typer.Option(None, "--iters", help="Training iterations, rounded up to whole epochs "
                                                            "(default 40000)."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Batch size over all processes (default 32)."),
    crop_size: int | None = typer.Option(None, "--crop-size", help="Crop size; larger images are tiled (default 256)."),
    no_pretrained: bool = typer.Option(False, "--no-pretrained", help="Start the trunk from random weights."),
    precision: str | None = typer.Option(None, "--precision", help="fp32 (default), bf16 or fp16 (autocast)."),
    device: str | None = typer.Option(None, "--device", help="auto (default), cpu, cuda or cuda:N."),
    seed: int | None = typer.Option(None, "--seed", help="Random seed (default 2333)."),
    workers: int | None = typer.Option(None, "--workers", help="DataLoader worker processes (default 4)."),
    caption_store: str | None = typer.Option(None, "--caption-store",
                                             help="Caption store file (default: the one in the dataset folder)."),
    name: str | None = typer.Option(None, "--name", help="Run name (default exp; auto-incremented)."),
    project: str | None = typer.Option(None, "--project", help="Folder for run folders (default runs)."),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML config file (see examples/configs)."),
    overrides: list[str] = typer.Option([], "--set", help="Override a config key: --set lr=0.001 (repeatable)."),
    resume: str | None = typer.Option(None, "--resume", help="Continue a run (its folder, or its name in "
                                                             "<project>/train)."),
    stop_after: int | None = typer.Option(None, "--stop-after",
                                          help="Stop after this many iterations in total, keeping a resumable state."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
) -> None:
    """Train MMChange on a change-detection dataset; prints the run folder and the best checkpoint."""
    from mmchange_core.config import ConfigError, load_config
    from mmchange_core.distributed import launch_position
    from mmchange_core.training.config import TrainConfig
    from mmchange_core.training.loop import find_run, resume_config
    from mmchange_core.training.loop import train as run_training

    given = _overrides({
        "dataset": dataset, "backbone": backbone, "variant": variant, "iters": iters, "batch_size": batch_size,
        "crop_size": crop_size, "pretrained": False if no_pretrained else None, "precision": precision,
        "device": device, "seed": seed, "num_workers": workers, "caption_store": caption_store, "name": name,
        "project": project,
    }) + list(overrides)
    resume_dir = None
    if resume is not None:
        if config is not None:
            raise ConfigError("--resume continues a run with its own config; leave out -c")
        resume_dir = find_run(resume, project or "runs")
        cfg = resume_config(resume_dir, given)
    else:
        cfg = load_config(TrainConfig, config, given)
    main_process = launch_position()[0] == 0
    observer = _make_observer(show=main_process)
    try:
        result = run_training(cfg, resume_dir=resume_dir, stop_after=stop_after, observer=observer)
    finally:
        observer.close()
    if not main_process:
        return
    data = {
        "run_dir": str(result.run_dir),
        "best_checkpoint": str(result.best_checkpoint) if result.best_checkpoint else None,
        "last_checkpoint": str(result.last_checkpoint) if result.last_checkpoint else None,
        "best_epoch": result.best_epoch if result.best_epoch >= 0 else None,
        "best_val_f1": result.best_f1,
        "iterations": result.iterations,
        "total_iterations": result.total_iters,
        "completed": result.completed,
    }
    if as_json:
        print_json(data)
        return
    if result.best_f1 is not None:
        err.print(f"best epoch {result.best_epoch} (val F1 {result.best_f1:.4f})")
    out.print(f"run folder: {result.run_dir}")
    out.print(f"best checkpoint: {result.best_checkpoint if result.best_checkpoint else 'none yet'}")


def register(app: typer.Typer) -> None:
    app.command("train")(train)
