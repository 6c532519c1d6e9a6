"""``mmchange predict``: change masks for the user's own image pairs (files or folders, any size)."""

from __future__ import annotations

from pathlib import Path

import typer

from mmchange_cli import options as opt
from mmchange_cli.console import ProgressDisplay, err, out, print_json, report_size, table, warn


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
    captions: Path | None = opt.captions("YAML/JSON file mapping image names to captions (text models; "
                                         "default: caption on the fly)."),
    device: str | None = opt.device(),
    precision: str | None = opt.precision(),
    compile: bool = opt.compile(),
    config: Path | None = opt.config(),
    overrides: list[str] = opt.sets(),
    stac: bool = opt.flag("--stac", "Also write a STAC Item per pair beside its mask (<mask stem>.stac.json): the "
                                    "inputs, the model (checkpoint sha256, threshold, tile size) and every output "
                                    "(needs pip install 'mmchange[cog]')."),
    overwrite: bool = opt.flag("--overwrite", "Predict everything again, ignoring the run manifest (by default a "
                                              "rerun skips pairs and blocks that are finished and unchanged)."),
    as_json: bool = opt.as_json(),
) -> None:
    """Predict the change between two dates. With two folders, pairs are matched by file name and
    --prob/--overlay/--vector name folders. Resumable (mmchange_manifest.jsonl in the output folder);
    under torchrun (torchrun --nproc-per-node N -m mmchange_cli predict ...) the processes share the work."""
    from mmchange_core.config import to_dict
    from mmchange_core.errors import InputError
    from mmchange_core.inference.predict import PredictConfig, predict_folder, predict_pair
    from mmchange_core.distributed import launch_position
    from mmchange_core.inference.report import check_report_path, report_probabilities

    rank, world_size = launch_position()
    if report is not None and prob is None and world_size > 1:
        raise InputError("under torchrun, --report needs --prob (a path every process shares)")

    if report is not None:
        check_report_path(report)
    if prob_colorbar and prob is None:
        raise InputError("--prob-colorbar draws the --prob map; add --prob PATH")
    if prob_colorbar and not prob.is_dir() and not image_a.is_dir():
        from mmchange_core.io.outputs import OutputPlan
        from mmchange_core.reporting.plots import colorbar_path

        target = OutputPlan([image_a, image_b]).add(colorbar_path(prob), "--prob-colorbar output")
        if any(path is not None and path.resolve() == target.resolve() for path in (output, overlay, vector)):
            raise InputError(f"--prob-colorbar output {target} is also given as another output; rename one of them")

    cfg = opt.resolve(PredictConfig, config, overrides, tile_size=tile_size, overlap=overlap, batch_size=batch_size,
                      threshold=threshold, min_area=min_area, device=device, precision=precision,
                      compile=compile or None, stac=stac or None)
    if image_a.is_dir() or image_b.is_dir():
        if not (image_a.is_dir() and image_b.is_dir()):
            folder, other = (image_a, image_b) if image_a.is_dir() else (image_b, image_a)
            raise InputError(f"{folder} is a folder but {other} is not; give two images or two folders")
        with report_probabilities(report, prob, folder=True) as prob_dir:
            with ProgressDisplay() as display:
                folder = predict_folder(checkpoint, image_a, image_b, output, prob_dir=prob_dir, overlay_dir=overlay,
                                        vector_dir=vector, captions=captions, config=cfg, warn=warn,
                                        progress=display if rank == 0 else None, overwrite=overwrite)
            if rank != 0:  # process 0 reports for every process
                return
            if prob_colorbar:
                _write_colorbars(folder.pairs)
            written = _write_report(report, folder.pairs, folder.failed, prob is None, checkpoint, cfg,
                                    (image_a, image_b), folder.seconds)
            _sync_stac(folder.pairs, written, report is not None or prob_colorbar)
        _show_folder(folder, image_a, image_b, as_json, written)
        return
    with report_probabilities(report, prob, folder=False) as prob_file:
        with ProgressDisplay(transient=True) as display:
            result = predict_pair(checkpoint, image_a, image_b, output, prob=prob_file, overlay=overlay,
                                  vector=vector, captions=captions, config=cfg, warn=warn,
                                  progress=display if rank == 0 else None, overwrite=overwrite)
        if rank != 0:  # process 0 reports for every process
            return
        if prob_colorbar:
            _write_colorbars([result])
        written = _write_report(report, [result], {}, prob is None, checkpoint, cfg, (image_a, image_b),
                                result.seconds["total"])
        _sync_stac([result], written, report is not None or prob_colorbar)
    if as_json:
        print_json({**to_dict(result), **_report_fields(written)})
        return
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
    if written is not None:
        rows.append(("report", report_size(written)))
    out.print(table(f"{result.name}", ["item", "value"], rows))


def _write_colorbars(results) -> None:  # noqa: ANN001
    """``--prob-colorbar``: ``<prob stem>.colorbar.png`` beside each probability map, added to the pair's outputs."""
    from mmchange_core.reporting.plots import write_probability_figure

    for result in results:
        if "prob" in result.outputs:
            path = write_probability_figure(result.outputs["prob"], title=f"change probability: {result.name}")
            result.outputs["prob_colorbar"] = str(path)


def _write_report(report: Path | None, results, failed, temporary_prob: bool, checkpoint, cfg, inputs,  # noqa: ANN001
                  seconds: float) -> Path | None:
    """``--report``: the HTML report of the predicted pairs (None without --report, or when it failed: warned)."""
    if report is None:
        return None
    from mmchange_core.config import to_dict
    from mmchange_core.inference.report import write_predict_report

    return write_predict_report(report, results, checkpoint=checkpoint, config=to_dict(cfg), inputs=inputs,
                                seconds=seconds, failed=failed, temporary_prob=temporary_prob, warn=warn)


def _sync_stac(results, report: Path | None, changed: bool) -> None:  # noqa: ANN001
    """``--stac`` with ``--report``/``--prob-colorbar``: the Items list the final outputs (report, colour bars; not a
    temporary probability map)."""
    if not changed:
        return
    from mmchange_core.inference.stac import sync_item_assets

    for result in results:
        if result.stac:
            sync_item_assets(result.stac, {**result.outputs, **({"report": report} if report is not None else {})})


def _report_fields(path: Path | None) -> dict:
    from mmchange_core.reporting.report import report_fields

    return report_fields(path)


def _show_folder(result, dir_a: Path, dir_b: Path, as_json: bool, written: Path | None = None) -> None:  # noqa: ANN001
    from mmchange_core.config import to_dict

    for name in result.only_in_a:
        warn(f"{name}: only in {dir_a}, skipped")
    for name in result.only_in_b:
        warn(f"{name}: only in {dir_b}, skipped")
    if as_json:
        print_json({**to_dict(result), **_report_fields(written)})
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
        if written is not None:
            out.print(f"report: {report_size(written)}")
    if result.failed:
        err.print(f"[bold red]error:[/bold red] {len(result.failed)} of {len(result.pairs) + len(result.failed)} "
                  f"pairs failed (see the table)")
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("predict")(predict)
