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
    from mmchange_core.config import to_dict
    from mmchange_core.environment import environment_report
    from mmchange_core.models.checkpoint import read_checkpoint_meta
    from mmchange_core.models.complexity import describe_model
    from mmchange_core.models.hub import resolve_checkpoint

    local = resolve_checkpoint(checkpoint) if checkpoint is not None else None  # hf://... -> the cached file
    meta = read_checkpoint_meta(local) if local is not None else None
    if meta is not None:
        backbone, variant, text_dim = meta.model.backbone, meta.model.variant, meta.model.text_dim
    size = size if size is not None else (meta.tile_size if meta is not None else 256)
    report = describe_model(backbone, variant, size, text_dim)
    env = environment_report()
    if as_json:
        data = to_dict(report)
        data["params_m"] = round(report.params_m, 4)
        if meta is not None:
            data["checkpoint"] = {"path": str(checkpoint), **meta.to_json_dict()}
            data["checkpoint_file"] = str(local)  # the local file (for hf://..., in the Hugging Face cache)
        data["environment"] = env
        print_json(data)
        return
    if meta is not None:
        rows = ([("file", str(local))] if str(local) != str(checkpoint) else []) + list(meta.summary().items())
        out.print(table(f"checkpoint {checkpoint}", ["item", "value"], rows))
    rows = [(m.name, m.params / 1e6, m.gflops) for m in report.modules]
    rows.append(("total", report.params_m, report.gflops))
    out.print(table(f"MMChange {backbone}/{variant} at {size}x{size} (one pair, text encoder excluded)",
                    ["module", "params (M)", "GFLOPs"], rows))
    out.print(table("environment", ["item", "value"], list(env.items())))


def register(app: typer.Typer) -> None:
    app.command("info")(info)
