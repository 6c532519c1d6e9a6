"""``mmchange predict``: change masks for the user's own image pairs (files or folders, any size)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from mmchange_cli import options as opt
from mmchange_cli.console import ProgressDisplay, error, note, out, print_json, report_size, table, warn


@opt.detector_options(captions_help="YAML/JSON file mapping image names to captions (text models; default: "
                                    "caption on the fly).", without=("workers",))
def predict(
    image_a: Path = typer.Argument(..., help="First-date image (PNG/JPEG/TIFF/GeoTIFF), or a folder of them."),
    image_b: Path = typer.Argument(..., help="Second-date image, or a folder with the same file names."),
    output: Path = typer.Option(..., "--output", "-o",
                                help="Mask file (.png, or .tif to keep GeoTIFF georeferencing), or a folder."),
    checkpoint: Path | None = opt.checkpoint(help=opt.CHECKPOINT_DEFAULT_HELP),
    prob: Path | None = typer.Option(None, "--prob",
                                     help="Also write the probability map: .png = 0-255, .tif = float 0-1."),
    prob_colorbar: bool = opt.flag("--prob-colorbar", "Also write <prob>.colorbar.png beside each --prob map: the "
                                                      "probability in viridis with a colour bar, for viewing."),
    overlay: Path | None = typer.Option(None, "--overlay",
                                        help="Also write a picture of the change outlines on both dates (A | B)."),
    vector: Path | None = typer.Option(None, "--vector", help="Also write change polygons (.geojson)."),
    report: Path | None = typer.Option(None, "--report",
                                       help="Also write an HTML report (A, B, probability, change outline, changed "
                                            "area, polygons) to this .html file; works offline."),
    min_area: float | None = typer.Option(None, "--min-area",
                                          help="Smallest polygon for --vector: pixels, or CRS units^2 for GeoTIFFs."),
    stac: bool = opt.flag("--stac", "Also write a STAC Item per pair beside its mask (<mask stem>.stac.json): the "
                                    "inputs, the model (checkpoint sha256, threshold, tile size) and every output "
                                    "(needs pip install 'mmchange\\[cog]')."),
    overwrite: bool = opt.flag("--overwrite", "Predict everything again, ignoring the run manifest (by default a "
                                              "rerun skips pairs and blocks that are finished and unchanged)."),
    # duplicates (deliberate): the options every run command shares are declared once in options.py; typer reads
    # each command's own signature, so the calls repeat here
    project: str | None = opt.project(),
    config: Path | None = opt.config(),
    overrides: list[str] = opt.sets(),
    as_json: bool = opt.as_json(),
    detector: dict[str, Any] | None = None,
) -> None:
    """Predict the change between two dates. With two folders, pairs are matched by file name and
    --prob/--overlay/--vector name folders. Resumable (mmchange_manifest.jsonl in the output folder);
    under torchrun (torchrun --nproc-per-node N -m mmchange_cli predict ...) the processes share the work."""
    from mmchange_core.distributed import launch_position
    from mmchange_core.inference.predict import FolderResult, PredictConfig, predict_paths

    cfg = opt.resolve(PredictConfig, config, overrides, detector=detector, min_area=min_area, stac=stac or None,
                      prob_colorbar=prob_colorbar or None, project=project)
    main = launch_position()[0] == 0
    with ProgressDisplay(transient=not (image_a.is_dir() and image_b.is_dir())) as display:
        result = predict_paths(checkpoint, image_a, image_b, output, prob=prob, overlay=overlay, vector=vector,
                               report=report, config=cfg, warn=warn, message=note,
                               progress=display if main else None, overwrite=overwrite)
    if not main:  # process 0 reports for every process
        return
    if isinstance(result, FolderResult):
        _show_folder(result, image_a, image_b, as_json)
    elif as_json:
        print_json(result.to_dict())
    else:
        _show_pair(result)


def _show_pair(result: Any) -> None:
    rows = [("status", result.status), ("size", f"{result.width}x{result.height}"), ("windows", result.windows),
            ("threshold", result.threshold), ("changed pixels", result.changed_pixels),
            ("change %", round(100 * result.change_fraction, 3)), ("seconds", round(result.seconds["total"], 2))]
    if result.crs:
        rows.append(("CRS", result.crs))
    if result.polygons is not None:
        rows.append(("polygons", result.polygons))
    if result.units and result.units["total"] > 1:
        rows.append(("blocks", f"{result.units['done']} done, {result.units['skipped']} skipped (finished before), "
                               f"{result.units['total']} in all"))
    if result.processes > 1:
        rows.append(("processes", result.processes))
    rows += [(kind, path) for kind, path in result.outputs.items()]
    if result.stac:
        rows.append(("STAC item", result.stac))
    if result.report is not None:
        rows.append(("report", report_size(Path(result.report))))
    out.print(table(f"{result.name}", ["item", "value"], rows))


def _show_folder(result: Any, dir_a: Path, dir_b: Path, as_json: bool) -> None:
    for name in result.only_in_a:
        warn(f"{name}: only in {dir_a}, skipped")
    for name in result.only_in_b:
        warn(f"{name}: only in {dir_b}, skipped")
    if as_json:
        print_json(result.to_dict())
    else:
        rows = [(r.name, f"{r.width}x{r.height}", r.windows, round(100 * r.change_fraction, 3),
                 round(r.seconds["total"], 2), r.status, r.outputs["mask"]) for r in result.pairs]
        rows += [(name, "", "", "", "", f"failed: {message}", "") for name, message in result.failed.items()]
        rows += [(name, "", "", "", "", "unmatched", "") for name in result.only_in_a + result.only_in_b]
        units = result.units or {}
        skipped = f" ({units['skipped']} skipped: finished before)" if units.get("skipped") else ""
        processes = f" by {result.processes} processes" if result.processes > 1 else ""
        out.print(table(f"{units.get('done', len(result.pairs))} pairs predicted{skipped}{processes} in "
                        f"{result.seconds:.1f} s",
                        ["pair", "size", "windows", "change %", "seconds", "status", "mask"], rows))
        if result.report is not None:
            out.print(f"report: {report_size(Path(result.report))}")
    if result.failed:
        error(f"{len(result.failed)} of {len(result.pairs) + len(result.failed)} pairs failed (see the table)")
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("predict")(predict)
