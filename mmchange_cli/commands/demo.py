"""``mmchange demo``: synthetic data -> captions -> training -> eval -> predict -> robustness."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from mmchange_cli import options as opt
from mmchange_cli.console import ProgressDisplay, err, out, print_json, table

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
            err.print(f"[bold][{index}/{total}][/bold] {title}", soft_wrap=True)

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
    batch_size: int | None = opt.batch_size("Training batch size and windows per network call."),
    workers: int | None = opt.workers(),
    device: str | None = opt.device(),
    precision: str | None = opt.precision(),
    compile: bool = opt.compile(),
    config: Path | None = opt.config(),
    overrides: list[str] = opt.sets(),
    as_json: bool = opt.as_json(),
) -> None:
    """Run the whole workflow on built-in synthetic data: no data and no weights to download."""
    from mmchange_core.demo import DemoConfig, run_demo
    from mmchange_core.evaluation.metrics import METRIC_NAMES

    cfg = opt.resolve(DemoConfig, config, overrides, output=output, quick=quick or None, iters=iters,
                      batch_size=batch_size, workers=workers, device=device, precision=precision,
                      compile=compile or None)
    observer = _make_observer()
    try:
        report = run_demo(cfg, observer, warn=lambda text: err.print(f"  warning: {text}", soft_wrap=True))
    finally:
        observer.close()
    metrics = report.evaluation.metrics()
    summary = {
        "run_dir": str(report.run_dir),
        "checkpoint": str(report.checkpoint),
        "dataset": str(report.dataset),
        "eval": {k: metrics[k] for k in METRIC_NAMES},
        "eval_dir": str(report.evaluation.run_dir),
        "prediction": report.prediction.outputs,
        "robustness": [{"condition": r.condition, "iou": r.iou, "f1": r.f1, "recall": r.recall,
                        "precision": r.precision} for r in report.robustness.rows],
        "robustness_dir": str(report.robustness.run_dir),
        "seconds": report.seconds,
    }
    if as_json:
        print_json(summary)
        return
    out.print(table("evaluation on the held-out test split (fractions)",
                    ["precision", "recall", "F1", "IoU", "OA", "kappa"],
                    [[metrics[k] for k in METRIC_NAMES]]))
    out.print(table("robustness on the test split (percent; d = change against clean)",
                    ["condition", "IoU", "F1", "R", "P", "dF1"],
                    [(r.condition, f"{100 * r.iou:.2f}", f"{100 * r.f1:.2f}", f"{100 * r.recall:.2f}",
                      f"{100 * r.precision:.2f}", "" if r.condition == "clean" else f"{-100 * r.f1_drop:+.2f}")
                     for r in report.robustness.rows]))
    out.print(table("time per step (s)", list(report.seconds), [[f"{s:.1f}" for s in report.seconds.values()]]))
    out.print(f"run folder: {report.run_dir}")
    out.print(f"trained checkpoint: {report.checkpoint}")
    for kind, path in report.prediction.outputs.items():
        out.print(f"prediction {kind}: {path}")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
