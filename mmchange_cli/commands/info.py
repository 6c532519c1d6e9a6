"""``mmchange info``: parameters and GFLOPs of a network, per module, a checkpoint's metadata, the environment."""

from __future__ import annotations

from pathlib import Path

import typer

from mmchange_cli import options as opt
from mmchange_cli.console import out, print_json, table


def info(
    backbone: str = typer.Option("resnet50", "--backbone", help="resnet18, resnet34 or resnet50."),
    variant: str = typer.Option("full", "--variant", "-v",
                                help="full, image-only, no-modules, no-ifr, no-tde or no-itff."),
    size: int | None = typer.Option(None, "--size",
                                    help="Square input size in pixels (multiple of 32); default: the checkpoint's "
                                         "tile size, else 256."),
    text_dim: int = typer.Option(512, "--text-dim", help="Text-embedding width (multiple of 64)."),
    checkpoint: Path | None = opt.checkpoint(),
    as_json: bool = opt.as_json(),
) -> None:
    """Show parameter count (M) and GFLOPs per image pair (text encoder excluded).

    With --checkpoint: show its metadata and measure its network (--backbone, --variant, --text-dim ignored).
    """
    from mmchange_core.info import model_info

    info = model_info(checkpoint, backbone=backbone, variant=variant, size=size, text_dim=text_dim)
    if as_json:
        print_json(info.to_dict())
        return
    if info.model is not None:
        local = str(info.model.path)
        rows = ([("file", local)] if local != info.model.spec else []) + [("backend", info.model.backend.name)]
        out.print(table(f"checkpoint {info.model.spec}", ["item", "value"], rows + list(info.model.meta.summary().items())))
    rows = [(m.name, m.params / 1e6, m.gflops) for m in info.complexity.modules]
    rows.append(("total", info.complexity.params_m, info.complexity.gflops))
    out.print(table(f"MMChange {info.backbone}/{info.variant} at {info.size}x{info.size} (one pair, text encoder "
                    f"excluded)", ["module", "params (M)", "GFLOPs"], rows))
    out.print(table("environment", ["item", "value"], list(info.environment.items())))


def register(app: typer.Typer) -> None:
    app.command("info")(info)
