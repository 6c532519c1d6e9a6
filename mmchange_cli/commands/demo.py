"""``mmchange demo``: synthetic data -> captions -> training -> eval -> predict -> robustness."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer

from mmchange_cli.console import err, out, print_json, progress, table


def _make_observer() -> Any:
    from rich.progress import TextColumn

    from mmchange_core.demo import DemoObserver
    from mmchange_core.training.loop import TrainInfo

    class RichDemoObserver(DemoObserver):
        """Step headers, one progress bar per step, a one-line summary per training epoch."""

        def __init__(self) -> None:
            self.bar = progress(TextColumn("{task.fields[note]}"), transient=True)
            self.tasks: dict[str, Any] = {}
            self.started = 0.0

        def on_step(self, index: int, total: int, title: str) -> None:
            self.close()
            self.bar = progress(TextColumn("{task.fields[note]}"), transient=True)
            self.bar.start()
            self.tasks = {}
            err.print(f"[bold][{index}/{total}][/bold] {title}")

        def on_progress(self, label: str, done: int, total: int) -> None:
            if label not in self.tasks:
                self.tasks[label] = self.bar.add_task(label, total=max(total, 1), note="")
            self.bar.update(self.tasks[label], completed=done, total=max(total, 1))

        def on_start(self, info: TrainInfo) -> None:
            self.started = time.perf_counter()
            self.tasks["train"] = self.bar.add_task("train", total=info.total_iters, note="")

        def on_iteration(self, iteration: int, total: int, loss: float, lr: float) -> None:
            rate = iteration / max(time.perf_counter() - self.started, 1e-9)
            self.bar.update(self.tasks["train"], completed=iteration, note=f"{rate:.2f} it/s loss {loss:.4f}")

        def on_epoch_end(self, row: dict[str, Any]) -> None:
            f1 = row.get("val_f1")
            val = f", val F1 {f1:.3f}" if isinstance(f1, float) else ""
            self.bar.console.print(f"  epoch {row.get('epoch')}: loss {row.get('train_loss', float('nan')):.4f}{val}")

        def on_message(self, text: str) -> None:
            self.bar.console.print(f"  {text}")

        def close(self) -> None:
            self.bar.stop()

    return RichDemoObserver()


def demo(
    out_dir: Path | None = typer.Option(None, "--out", help="Run folder (default: a new runs/demo/expN)."),
    quick: bool = typer.Option(False, "--quick", help="Smaller data and fewer iterations (about a minute on 2 cores)."),
    iters: int | None = typer.Option(None, "--iters", help="Training iterations (default 200, quick 72)."),
    device: str = typer.Option("cpu", "--device", help="cpu, auto, cuda or cuda:N."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary."),
) -> None:
    """Run the whole workflow on built-in synthetic data: no data and no weights to download."""
    from mmchange_core.demo import DemoConfig, run_demo
    from mmchange_core.evaluation.metrics import METRIC_NAMES

    config = DemoConfig(out=str(out_dir) if out_dir else None, quick=quick, device=device)
    if iters is not None:
        config.iters = iters
    observer = _make_observer()
    try:
        report = run_demo(config, observer, warn=lambda text: err.print(f"  warning: {text}"))
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
