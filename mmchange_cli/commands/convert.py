"""``mmchange convert``: turn an authors' MMChange checkpoint into an mmchange checkpoint."""

from __future__ import annotations

from pathlib import Path

import typer

from mmchange_cli import options as opt
from mmchange_cli.console import out, print_json


def convert(
    source: Path = typer.Argument(..., help="The authors' checkpoint (.pth / .pth.tar state dict)."),
    output: Path = typer.Option(..., "--output", "-o", help="Where to write the mmchange checkpoint (.safetensors)."),
    as_json: bool = opt.as_json(),
) -> None:
    """Convert an authors' checkpoint (reference key names) into mmchange's safetensors format."""
    from mmchange_core.models.convert import convert_reference_checkpoint

    path, config = convert_reference_checkpoint(source, output)
    if as_json:
        print_json({"output": str(path), "backbone": config.backbone, "variant": config.variant,
                    "text_dim": config.text_dim})
        return
    out.print(f"converted {source} -> {path} ({config.backbone}, variant {config.variant}, "
              f"text_dim {config.text_dim})")
    out.print(f"next: 'mmchange eval --checkpoint {path} --dataset ... --tune-threshold', then share it with "
              f"'mmchange push {path} --repo OWNER/NAME'", soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("convert")(convert)
