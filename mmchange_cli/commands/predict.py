"""``mmchange predict``: change masks for the user's own image pairs (files or folders, any size)."""

from __future__ import annotations

from pathlib import Path

import typer

from mmchange_cli import options as opt
from mmchange_cli.console import ProgressDisplay, err, out, print_json, table, warn


def predict(
    image_a: Path = typer.Argument(..., help="First-date image (PNG/JPEG/TIFF/GeoTIFF), or a folder of them."),
    image_b: Path = typer.Argument(..., help="Second-date image, or a folder with the same file names."),
    output: Path = typer.Option(..., "--output", "-o",
                                help="Mask file (.png, or .tif to keep GeoTIFF georeferencing), or a folder."),
    checkpoint: Path = opt.checkpoint(required=True),
    tile_size: int | None = opt.tile_size(),
    overlap: int | None = opt.overlap(),
    batch_size: int | None = opt.batch_size("Windows per network call."),
    threshold: float | None = opt.threshold(),
    prob: Path | None = typer.Option(None, "--prob",
                                     help="Also write the probability map: .png = 0-255, .tif = float 0-1."),
    overlay: Path | None = typer.Option(None, "--overlay", help="Also write change outlines drawn on image B."),
    vector: Path | None = typer.Option(None, "--vector", help="Also write change polygons (.geojson)."),
    min_area: float | None = typer.Option(None, "--min-area",
                                          help="Smallest polygon for --vector: pixels, or CRS units^2 for GeoTIFFs."),
    captions: Path | None = opt.captions("YAML/JSON file mapping image names to captions (text models; "
                                         "default: caption on the fly)."),
    device: str | None = opt.device(),
    precision: str | None = opt.precision(),
    compile: bool = opt.compile(),
    config: Path | None = opt.config(),
    overrides: list[str] = opt.sets(),
    as_json: bool = opt.as_json(),
) -> None:
    """Predict the change between two dates. With two folders, pairs are matched by file name and
    --prob/--overlay/--vector name folders."""
    from mmchange_core.config import to_dict
    from mmchange_core.errors import InputError
    from mmchange_core.inference.predict import PredictConfig, predict_folder, predict_pair

    cfg = opt.resolve(PredictConfig, config, overrides, tile_size=tile_size, overlap=overlap, batch_size=batch_size,
                      threshold=threshold, min_area=min_area, device=device, precision=precision,
                      compile=compile or None)
    if image_a.is_dir() or image_b.is_dir():
        if not (image_a.is_dir() and image_b.is_dir()):
            folder, other = (image_a, image_b) if image_a.is_dir() else (image_b, image_a)
            raise InputError(f"{folder} is a folder but {other} is not; give two images or two folders")
        with ProgressDisplay() as display:
            folder = predict_folder(checkpoint, image_a, image_b, output, prob_dir=prob, overlay_dir=overlay,
                                    vector_dir=vector, captions=captions, config=cfg, warn=warn, progress=display)
        _show_folder(folder, image_a, image_b, as_json)
        return
    with ProgressDisplay(transient=True) as display:
        result = predict_pair(checkpoint, image_a, image_b, output, prob=prob, overlay=overlay, vector=vector,
                              captions=captions, config=cfg, warn=warn, progress=display)
    if as_json:
        print_json(to_dict(result))
        return
    rows = [("size", f"{result.width}x{result.height}"), ("windows", result.windows),
            ("threshold", result.threshold), ("changed pixels", result.changed_pixels),
            ("change %", round(100 * result.change_fraction, 3)), ("seconds", round(result.seconds["total"], 2))]
    if result.crs:
        rows.append(("CRS", result.crs))
    if result.polygons is not None:
        rows.append(("polygons", result.polygons))
    rows += [(kind, path) for kind, path in result.outputs.items()]
    out.print(table(f"{result.name}", ["item", "value"], rows))


def _show_folder(result, dir_a: Path, dir_b: Path, as_json: bool) -> None:  # noqa: ANN001 - a FolderResult
    from mmchange_core.config import to_dict

    for name in result.only_in_a:
        warn(f"{name}: only in {dir_a}, skipped")
    for name in result.only_in_b:
        warn(f"{name}: only in {dir_b}, skipped")
    if as_json:
        print_json(to_dict(result))
    else:
        rows = [(r.name, f"{r.width}x{r.height}", r.windows, round(100 * r.change_fraction, 3),
                 round(r.seconds["total"], 2), "ok", r.outputs["mask"]) for r in result.pairs]
        rows += [(name, "", "", "", "", f"failed: {message}", "") for name, message in result.failed.items()]
        rows += [(name, "", "", "", "", "unmatched", "") for name in result.only_in_a + result.only_in_b]
        out.print(table(f"{len(result.pairs)} pairs predicted in {result.seconds:.1f} s",
                        ["pair", "size", "windows", "change %", "seconds", "status", "mask"], rows))
    if result.failed:
        err.print(f"[bold red]error:[/bold red] {len(result.failed)} of {len(result.pairs) + len(result.failed)} "
                  f"pairs failed (see the table)")
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("predict")(predict)
