"""``mmchange demo``: synthetic data -> captions -> training -> eval -> predict -> robustness."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from mmchange_cli import options as opt
from rich.text import Text

from mmchange_cli.console import ProgressDisplay, err, out, print_json, report_size, warn

if TYPE_CHECKING:
    from mmchange_core.progress import ProgressEvent


def _make_observer() -> Any:
    from mmchange_core.demo import DemoObserver

    class RichDemoObserver(DemoObserver):
        """Step headers, a progress display per step, a one-line summary per training epoch."""

        def __init__(self) -> None:
            self.display = ProgressDisplay(transient=True)

        def on_step(self, index: int, total: int, title: str) -> None:
            self.close()
            self.display = ProgressDisplay(transient=True).__enter__()
            err.print(Text.assemble((f"[{index}/{total}]", "bold"), " ", title), soft_wrap=True)

        def on_progress(self, event: ProgressEvent) -> None:
            self.display(event)

        def on_epoch_end(self, row: dict[str, Any]) -> None:
            f1 = row.get("val_f1")
            val = f", val F1 {f1:.3f}" if isinstance(f1, float) else ""
            self.display.print(f"  epoch {row.get('epoch')}: loss {row.get('train_loss', float('nan')):.4f}{val}")

        def on_message(self, text: str) -> None:
            self.display.print(f"  {text}")

        def close(self) -> None:
            self.display.__exit__(None, None, None)

    return RichDemoObserver()


def demo(
    output: Path | None = opt.output("Run folder (default: a new runs/demo/expN)."),
    quick: bool = opt.flag("--quick", "Smaller data and fewer iterations (about a minute on 2 cores)."),
    iters: int | None = typer.Option(None, "--iters", help="Training iterations (default 200, quick 72)."),
    batch_size: int | None = opt.batch_size("Training batch size (default 8)."),
    workers: int | None = opt.workers(),
    device: str | None = opt.device(),
    precision: str | None = opt.precision(),
    compile: bool = opt.compile(),
    keep_state: bool = opt.flag("--keep-state", "Keep state.pt (optimizer state, ~3x the model) and "
                                                "last.safetensors to resume training; deleted by default."),
    config: Path | None = opt.config(),
    overrides: list[str] = opt.sets(),
    as_json: bool = opt.as_json(),
) -> None:
    """Run the whole workflow on built-in synthetic data: no data and no weights to download."""
    from mmchange_core.demo import DemoConfig, run_demo

    cfg = opt.resolve(DemoConfig, config, overrides, output=output, quick=quick or None, iters=iters,
                      batch_size=batch_size, keep_state=keep_state or None,
                      detector={k: v for k, v in (("workers", workers), ("device", device), ("precision", precision),
                                                  ("compile", compile or None)) if v is not None})
    observer = _make_observer()
    try:
        report = run_demo(cfg, observer, warn=lambda text: warn(text, indent="  "))
    finally:
        observer.close()
    if as_json:
        print_json(report.to_dict())
        return
    _print_summary(report, report.evaluation.metrics(), report.folder_bytes() / 1e6, cfg.keep_state)


def _print_summary(report: Any, metrics: dict[str, float], size_mb: float, keep_state: bool) -> None:
    """One screen: what was trained on what, the test scores, robustness, and where everything is."""
    from rich import box
    from rich.panel import Panel
    from rich.table import Table

    cfg = report.config
    steps = ", ".join(f"{k} {v:.0f}" for k, v in report.seconds.items() if k != "total")
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    grid.add_row("trained", f"MMChange {cfg.backbone} / full (text: basic captions + hashing encoder), "
                            f"{report.train.iterations} iterations, batch {cfg.batch_size}, {cfg.crop_size} px crops, "
                            f"no pretrained weights")
    grid.add_row("data", f"{cfg.pairs} synthetic pairs of {cfg.size} px (train / val / test) in {report.dataset}")
    grid.add_row("test split", "   ".join(f"{name} {metrics[key]:.3f}" for key, name in
                                         (("f1", "F1"), ("iou", "IoU"), ("precision", "precision"),
                                          ("recall", "recall"), ("kappa", "kappa"))))
    changes = ", ".join(f"{r.condition} {100 * r.delta_f1:+.1f}" for r in report.robustness.rows
                        if r.condition != "clean")
    grid.add_row("robustness", f"dF1 in points (perturbed - clean): {changes}")
    grid.add_row("checkpoint", str(report.checkpoint))
    for kind, path in report.prediction.outputs.items():
        grid.add_row(f"predict {kind}", str(path))
    grid.add_row("report", f"{report_size(report.report_html)}  (open it in a browser)" if report.report_html else
                 "not written")
    kept = "training state kept (--keep-state)" if keep_state else \
        "state.pt and last.safetensors deleted; keep them with --keep-state"
    grid.add_row("folder", f"{report.run_dir}: {size_mb:.1f} MB ({kept})")
    grid.add_row("time", f"{report.seconds.get('total', 0):.0f} s ({steps})")
    out.print(Panel(grid, title="mmchange demo: done", title_align="left", box=box.ROUNDED, expand=False))


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
