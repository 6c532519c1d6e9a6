"""``mmchange synth``: write a synthetic bitemporal change-detection dataset (RGB, or multispectral with
``--bands 4|13``; in a visual ``--style``; with class labels and captions with ``--classes``), or series of many
dates (``--dates N``), for tests and demos."""

from __future__ import annotations

from pathlib import Path

import typer

from mmchange_cli import options as opt
from mmchange_cli.console import ProgressDisplay, out, print_json, table


def synth(
    output: Path = typer.Argument(..., help="Folder to create (train/val/test with A, B and label; with --dates, "
                                            "series_NNNN folders of dated images)."),
    pairs: int = typer.Option(200, "--pairs", "-n", help="Number of image pairs over all splits (of series with "
                                                         "--dates)."),
    size: int = typer.Option(256, "--size", help="Image side in pixels."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives the same dataset."),
    text_signal: bool = opt.flag("--text-signal", "Couple the land-cover mix to the labelled change (new buildings "
                                                  "clear vegetation, demolitions leave bare soil), so captions carry "
                                                  "change information."),
    dates: int | None = typer.Option(None, "--dates", help="Write series of this many dates (3 to 50, one year "
                                                           "apart from 2015-06-01) instead of pairs, each image "
                                                           "named by its date, with first/last change and change "
                                                           "count ground truth."),
    geotiff: bool = opt.flag("--geotiff", "With --dates: write the images as GeoTIFFs (UTM 32N, 0.5 m pixels, "
                                          "each series at its own place)."),
    bands: int = typer.Option(3, "--bands", help="3: RGB PNG pairs; 4: red, green, blue, nir or 13: Sentinel-2 "
                                                 "B01-B12, as uint16 GeoTIFFs of surface reflectance x 10000 "
                                                 "(needs the geo extra), with changes seen only in the near-"
                                                 "infrared."),
    gain_range: str | None = typer.Option(None, "--gain-range", metavar="LO,HI",
                                          help="With --bands 4|13: date B's brightness gain is drawn from LO..HI per "
                                               "pair (default 0.8,1.25; 1,1 for none); recorded, not labelled."),
    style: str = typer.Option("suburb", "--style", metavar="NAME",
                              help="Look of the places: suburb (green, gabled rectangular houses) or desert (sand "
                                   "with dune streaks, sparse scrub, dense flat-roofed L-shaped, courtyard and round "
                                   "compounds); same labels and nuisance."),
    classes: bool = opt.flag("--classes", "Class labels instead of change/no change: 0 no change, 1 new building, "
                                          "2 demolished building (rubble at B), 3 vegetation lost (trees cleared "
                                          "to bare soil), as palette PNGs; writes classes.yaml (for mmchange train "
                                          "--classes) and captions.yaml (each date's land cover in words). Pairs "
                                          "only (not --dates), RGB or --bands 4|13."),
    as_json: bool = opt.as_json(),
) -> None:
    """Generate pairs with buildings appearing/vanishing (labelled) and nuisance changes (not labelled)."""
    from mmchange_core.data.synth import DEFAULT_GAIN_RANGE, DEFAULT_STYLE, parse_gain_range

    gains = DEFAULT_GAIN_RANGE if gain_range is None else parse_gain_range(gain_range)
    if dates is not None:
        _synth_series(output, pairs, size, seed, text_signal, dates, geotiff, bands, gains, style, classes,
                      as_json)
        return
    from mmchange_core.data.synth import SynthConfig, make_synthetic_dataset
    from mmchange_core.errors import InputError

    if geotiff:
        raise InputError("--geotiff writes series of many dates; give --dates N too (pairs are written as PNG, "
                         "or as GeoTIFF with --bands 4|13)")
    config = SynthConfig(pairs=pairs, size=size, seed=seed, text_signal=text_signal, bands=bands, gain_range=gains,
                         style=style, classes=classes)
    with ProgressDisplay() as display:
        report = make_synthetic_dataset(output, config, progress=display)
    if as_json:
        print_json(report.to_dict())
        return
    rows = [(split, count) for split, count in report.counts.items()]
    kind = "" if bands == 3 else f" ({bands}-band reflectance)"
    look = "" if style == DEFAULT_STYLE else f", {style} style"
    out.print(table(f"synthetic dataset {report.root}{kind}{look}", ["split", "pairs"], rows))
    note = f", {report.skipped} already there" if report.skipped else ""
    out.print(f"wrote {report.written} pairs{note}; changed pixels {100 * report.change_fraction:.1f}%")
    if report.class_fractions is not None:
        shares = ", ".join(f"{name} {100 * share:.1f}%" for name, share in report.class_fractions.items())
        out.print(f"classes: {shares}; class file {report.root / 'classes.yaml'}, captions "
                  f"{report.root / 'captions.yaml'}")


def _synth_series(output: Path, series: int, size: int, seed: int, text_signal: bool, dates: int, geotiff: bool,
                  bands: int, gains: tuple[float, float], style: str, classes: bool, as_json: bool) -> None:
    """``mmchange synth --dates N``: ``series`` series of ``dates`` dates each."""
    from mmchange_core.data.synth import SynthSeriesConfig, make_synthetic_series

    config = SynthSeriesConfig(pairs=series, size=size, seed=seed, text_signal=text_signal, dates=dates,
                               geotiff=geotiff, bands=bands, gain_range=gains, style=style, classes=classes)
    with ProgressDisplay() as display:
        report = make_synthetic_series(output, config, progress=display)
    if as_json:
        print_json(report.to_dict())
        return
    rows = [(split, count) for split, count in report.counts.items()]
    out.print(table(f"synthetic series {report.root} ({dates} dates each)", ["split", "series"], rows))
    note = f", {report.skipped} already there" if report.skipped else ""
    out.print(f"wrote {report.written} series{note}; pixels that change at least once "
              f"{100 * report.change_fraction:.1f}%")


def register(app: typer.Typer) -> None:
    app.command("synth")(synth)
