"""``mmchange synth``: write a synthetic bitemporal change-detection dataset (for tests and demos)."""

from __future__ import annotations

from pathlib import Path

import typer

from mmchange_cli import options as opt
from mmchange_cli.console import ProgressDisplay, out, print_json, table


def synth(
    output: Path = typer.Argument(..., help="Folder to create (train/val/test with A, B and label)."),
    pairs: int = typer.Option(200, "--pairs", "-n", help="Number of image pairs over all splits."),
    size: int = typer.Option(256, "--size", help="Image side in pixels."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives the same dataset."),
    text_signal: bool = opt.flag("--text-signal", "Couple the land-cover mix to the labelled change (new buildings "
                                                  "clear vegetation, demolitions leave bare soil), so captions carry "
                                                  "change information."),
    as_json: bool = opt.as_json(),
) -> None:
    """Generate pairs with buildings appearing/vanishing (labelled) and nuisance changes (not labelled)."""
    from mmchange_core.data.synth import SynthConfig, make_synthetic_dataset

    config = SynthConfig(pairs=pairs, size=size, seed=seed, text_signal=text_signal)
    with ProgressDisplay() as display:
        report = make_synthetic_dataset(output, config, progress=display)
    if as_json:
        print_json({"root": str(report.root), "splits": report.counts, "written": report.written,
                    "skipped": report.skipped, "change_fraction": report.change_fraction,
                    "text_signal": text_signal})
        return
    rows = [(split, count) for split, count in report.counts.items()]
    out.print(table(f"synthetic dataset {report.root}", ["split", "pairs"], rows))
    note = f", {report.skipped} already there" if report.skipped else ""
    out.print(f"wrote {report.written} pairs{note}; changed pixels {100 * report.change_fraction:.1f}%")


def register(app: typer.Typer) -> None:
    app.command("synth")(synth)
