"""``mmchange info``: parameters and GFLOPs of a network, per module, plus the environment."""

from __future__ import annotations

import typer

from mmchange_cli.console import out, print_json, table


def info(
    backbone: str = typer.Option("resnet50", "--backbone", "-b", help="resnet18, resnet34 or resnet50."),
    variant: str = typer.Option("full", "--variant", "-v",
                                help="full, image-only, no-modules, no-ifr, no-tde or no-itff."),
    size: int = typer.Option(256, "--size", help="Square input size in pixels (multiple of 32)."),
    text_dim: int = typer.Option(512, "--text-dim", help="Text-embedding width (multiple of 64)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Show parameter count (M) and GFLOPs per image pair (text encoder excluded)."""
    from mmchange_core.config import to_dict
    from mmchange_core.environment import environment_report
    from mmchange_core.models.complexity import describe_model

    report = describe_model(backbone, variant, size, text_dim)
    env = environment_report()
    if as_json:
        data = to_dict(report)
        data["params_m"] = round(report.params_m, 4)
        data["environment"] = env
        print_json(data)
        return
    rows = [(m.name, m.params / 1e6, m.gflops) for m in report.modules]
    rows.append(("total", report.params_m, report.gflops))
    out.print(table(f"MMChange {backbone}/{variant} at {size}x{size} (one pair, text encoder excluded)",
                    ["module", "params (M)", "GFLOPs"], rows))
    out.print(table("environment", ["item", "value"], list(env.items())))


def register(app: typer.Typer) -> None:
    app.command("info")(info)
