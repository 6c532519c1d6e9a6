"""``mmchange robustness``: paper Table IV as a command (clean, +noise, +light, +noise+light)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import typer

from mmchange_cli.console import err, out, print_json, progress, table


def _floats(values: list[str]) -> list[float]:
    try:
        return [float(v) for text in values for v in text.split(",") if v.strip()]
    except ValueError:
        raise typer.BadParameter(f"--severity takes numbers, got {values}") from None


def robustness(
    checkpoint: list[Path] = typer.Option(..., "--checkpoint", help="A checkpoint to test (repeat for several)."),
    dataset: str = typer.Option(..., "--dataset", "-d", help="levir, whu, sysu or a dataset folder."),
    split: str = typer.Option("test", "--split", help="Split to evaluate."),
    noise: bool = typer.Option(False, "--noise", help="Gaussian noise on both dates (sigma 10 grey levels)."),
    light: bool = typer.Option(False, "--light", help="Illumination change on date B (gain 0.7, gamma 1.3)."),
    severity: list[str] = typer.Option([], "--severity",
                                       help="Strengths to sweep, e.g. 0.5,1,2 (1 = defaults); writes robustness.png."),
    seed: int = typer.Option(0, "--seed", help="Seed of the noise."),
    threshold: float | None = typer.Option(None, "--threshold", help="Decision threshold (default: the checkpoint's)."),
    batch_size: int = typer.Option(8, "--batch-size", help="Tiles per forward pass."),
    store: str | None = typer.Option(None, "--store", help="The clean caption store (read-only datasets)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    compile: bool = typer.Option(False, "--compile", help="torch.compile the network (GPU; cached on disk)."),
    name: str | None = typer.Option(None, "--name", help="Run folder name under runs/robustness."),
    project: str = typer.Option("runs", "--project", help="Folder that holds the run folders."),
    as_json: bool = typer.Option(False, "--json", help="Print the rows as JSON."),
) -> None:
    """Evaluate checkpoints on clean and perturbed images (no flag: both --noise and --light)."""
    from mmchange_core.evaluation.robustness import RobustnessConfig, run_robustness

    both = not (noise or light)
    config = RobustnessConfig(checkpoints=[str(c) for c in checkpoint], dataset=dataset, split=split,
                              noise=noise or both, light=light or both, severities=_floats(severity) or [1.0],
                              seed=seed, threshold=threshold, batch_size=batch_size, device=device, compile=compile,
                              caption_store=store, name=name, project=project)
    with progress(transient=True) as bar:
        tasks: dict[str, int] = {}

        def on_progress(label: str, done: int, total: int) -> None:
            if label not in tasks:
                tasks[label] = bar.add_task(label, total=total)
            bar.update(tasks[label], completed=done)

        report = run_robustness(config, progress=on_progress, message=err.print)
    if as_json:
        print_json([asdict(r) for r in report.rows])
        return
    rows = [(r.model, r.condition, f"{r.severity:g}", f"{100 * r.iou:.2f}", f"{100 * r.f1:.2f}",
             f"{100 * r.recall:.2f}", f"{100 * r.precision:.2f}",
             "" if r.condition == "clean" else f"{-100 * r.iou_drop:+.2f}",
             "" if r.condition == "clean" else f"{-100 * r.f1_drop:+.2f}") for r in report.rows]
    out.print(table(f"robustness on {dataset} ({split}), percent", ["model", "condition", "severity", "IoU", "F1",
                                                                  "R", "P", "dIoU", "dF1"], rows))
    out.print(f"run folder: {report.run_dir}")
    out.print(f"results: {report.csv_path}, {report.json_path}" + (f", {report.plot_path}" if report.plot_path else ""))


def register(app: typer.Typer) -> None:
    app.command("robustness")(robustness)
