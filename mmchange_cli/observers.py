"""Rich renderings of long library runs: the training observer (set-up lines, progress, one table per epoch)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mmchange_cli.console import ProgressDisplay, err

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


def train_observer(show: bool) -> Any:
    """The observer that renders a training run on stderr (``show``: this process shows progress)."""
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
