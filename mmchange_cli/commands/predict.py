"""``mmchange predict``: change masks for the user's own image pairs (files or folders, any size)."""

from __future__ import annotations

from pathlib import Path

import typer

from mmchange_cli.console import err, out, print_json, progress, table, warn


def predict(
    image_a: Path = typer.Argument(..., help="First-date image (PNG/JPEG/TIFF/GeoTIFF), or a folder of them."),
    image_b: Path = typer.Argument(..., help="Second-date image, or a folder with the same file names."),
    output: Path = typer.Option(..., "--output", "-o",
                                help="Mask file (.png, or .tif to keep GeoTIFF georeferencing), or a folder."),
    checkpoint: Path = typer.Option(..., "--checkpoint", help="mmchange checkpoint (.safetensors)."),
    tile: int = typer.Option(256, "--tile", help="Sliding-window size in pixels (multiple of 32)."),
    overlap: int = typer.Option(32, "--overlap", help="Minimum overlap of neighbouring windows in pixels."),
    batch_size: int = typer.Option(4, "--batch-size", help="Windows per network call."),
    threshold: float | None = typer.Option(None, "--threshold",
                                           help="Change-probability threshold (default: the checkpoint's)."),
    prob: Path | None = typer.Option(None, "--prob",
                                     help="Also write the probability map: .png = 0-255, .tif = float 0-1."),
    overlay: Path | None = typer.Option(None, "--overlay", help="Also write change outlines drawn on image B."),
    vector: Path | None = typer.Option(None, "--vector", help="Also write change polygons (.geojson)."),
    min_area: float = typer.Option(0.0, "--min-area",
                                   help="Smallest polygon for --vector: pixels, or CRS units^2 for GeoTIFFs."),
    captions: Path | None = typer.Option(None, "--captions",
                                         help="YAML/JSON file mapping image names to captions (text models)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    precision: str = typer.Option("auto", "--precision", help="auto (bf16 on GPU, fp32 on CPU), fp32, bf16, fp16."),
    compile: bool = typer.Option(False, "--compile", help="torch.compile the network (GPU; cached on disk)."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
) -> None:
    """Predict the change between two dates. With two folders, pairs are matched by file name and
    --prob/--overlay/--vector name folders."""
    from mmchange_core.config import to_dict
    from mmchange_core.inference.predict import PredictConfig, predict_pair

    config = PredictConfig(tile=tile, overlap=overlap, batch_size=batch_size, threshold=threshold,
                           min_area=min_area, device=device, precision=precision, compile=compile)
    if image_a.is_dir() or image_b.is_dir():
        _predict_folders(image_a, image_b, output, checkpoint, config, prob, overlay, vector, captions, as_json)
        return
    with progress(transient=True) as bar:
        task = bar.add_task("windows", total=None)
        result = predict_pair(checkpoint, image_a, image_b, output, prob=prob, overlay=overlay, vector=vector,
                              captions=captions, config=config, warn=warn,
                              progress=lambda done, total: bar.update(task, completed=done, total=total))
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


def _predict_folders(dir_a, dir_b, output, checkpoint, config, prob, overlay, vector, captions, as_json) -> None:
    from mmchange_core.config import to_dict
    from mmchange_core.inference.predict import predict_folder
    from mmchange_core.errors import InputError

    if not (dir_a.is_dir() and dir_b.is_dir()):
        raise InputError(f"give two images or two folders; {dir_a if not dir_a.is_dir() else dir_b} is not a folder")
    with progress() as bar:
        task = bar.add_task("pairs", total=None)

        def on_pair(done: int, total: int, name: str, result) -> None:
            bar.update(task, completed=done, total=total, description=f"pairs ({name})")

        result = predict_folder(checkpoint, dir_a, dir_b, output, prob_dir=prob, overlay_dir=overlay,
                                vector_dir=vector, captions=captions, config=config, warn=warn, progress=on_pair)
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
