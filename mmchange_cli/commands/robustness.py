"""``mmchange robustness``: paper Table IV as a command (clean, +noise, +light, +noise+light)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from mmchange_cli import options as opt
from mmchange_cli.console import ProgressDisplay, out, print_json, report_size, table


@opt.detector_options(captions_help="The clean caption store (default: the one in the dataset folder); perturbed "
                                    "captions go beside it.")
def robustness(
    checkpoint: list[str] = typer.Option([], "--checkpoint", "-c",
                                         help="A checkpoint to test, a file or hf://OWNER/NAME (repeat for several; "
                                              "default: the best of the most recent training run under --project)."),
    dataset: str | None = opt.dataset("Default: the dataset the checkpoint was trained on."),
    change_value: int | None = opt.change_value(),
    split: str | None = typer.Option(None, "--split", help="Split to evaluate (default test)."),
    noise: bool = opt.flag("--noise", "Gaussian noise on both dates (sigma 10 grey levels)."),
    light: bool = opt.flag("--light", "Illumination change on date B (gain 0.7, gamma 1.3)."),
    severity: list[str] = typer.Option([], "--severity",
                                        help="Strengths to sweep, e.g. 0.5,1,2 (1 = defaults); writes robustness.png."),
    seed: int | None = typer.Option(None, "--seed", help="Seed of the noise."),
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
    """Evaluate checkpoints on clean and perturbed images (no --noise/--light flag: both)."""
    from mmchange_core.evaluation.robustness import RobustnessConfig, run_robustness

    conditions = {"noise": noise, "light": light} if noise != light else {}
    cfg = opt.resolve(RobustnessConfig, config, overrides, detector=detector,
                      checkpoints=[str(c) for c in checkpoint] or None, dataset=dataset, change_value=change_value,
                      split=split, **conditions, severities=",".join(severity) or None, seed=seed,
                      accept_stale_captions=accept_stale_captions or None, name=name, project=project)
    with ProgressDisplay(transient=True) as display:
        report = run_robustness(cfg, progress=display, message=display.print)
    if as_json:
        print_json(report.to_dict())
        return
    rows = [(r.model, r.condition, f"{r.severity:g}", f"{100 * r.iou:.2f}", f"{100 * r.f1:.2f}",
             f"{100 * r.recall:.2f}", f"{100 * r.precision:.2f}",
             "" if r.condition == "clean" else f"{100 * r.delta_iou:+.2f}",
             "" if r.condition == "clean" else f"{100 * r.delta_f1:+.2f}") for r in report.rows]
    out.print(table(f"robustness on {report.dataset} ({cfg.split}), percent; d = perturbed - clean (negative = worse)",
                    ["model", "condition", "severity", "IoU", "F1", "R", "P", "dIoU", "dF1"], rows))
    for model in dict.fromkeys(r.model for r in report.rows if r.per_class is not None):  # K-class models
        model_rows = [r for r in report.rows if r.model == model]
        names = [c["name"] for c in model_rows[0].per_class or ()]
        out.print(table(f"{model}: F1 per change class, percent (mean over the change classes present)",
                        ["condition", "severity", "mean F1", "dmean F1", *names],
                        [(r.condition, f"{r.severity:g}", f"{100 * (r.mean_f1 or 0.0):.2f}",
                          "" if r.condition == "clean" else f"{100 * (r.delta_mean_f1 or 0.0):+.2f}",
                          *(f"{100 * c['f1']:.2f}" for c in r.per_class or ())) for r in model_rows]))
    out.print(f"run folder: {report.run_dir}")
    out.print(f"results: {report.csv_path}, {report.json_path}" + (f", {report.plot_path}" if report.plot_path else ""))
    if report.report is not None and report.report.is_file():
        out.print(f"report: {report_size(report.report)}")


def register(app: typer.Typer) -> None:
    app.command("robustness")(robustness)
