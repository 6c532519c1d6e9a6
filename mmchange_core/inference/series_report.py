"""The HTML report of a time series of images: one picture per date, the changed area of every interval as a
bar chart and a table, the date at which each pixel first changed (a map with a legend of dates), the
first-to-last comparison and every interval's summary sentence.

It is built from what the series engine wrote (masks and the ``first_change``/``change_count`` rasters) and
the inputs, read as thumbnails; rasters are read by strips and pooled to picture size, so a scene is never
held whole (a PNG is decoded whole, as every PNG reader here does). A ``first_change`` or ``change_count``
raster holding a value above the number of intervals does not belong to the series: the report refuses it
(:class:`~mmchange_core.errors.InputError`), and :func:`write_series_report` turns that into a warning.
"""

from __future__ import annotations

import math
import tempfile
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmchange_core.errors import InputError
from mmchange_core.io.geo import rasterio_available, require_rasterio
from mmchange_core.io.images import (
    check_pixels,
    check_regular_file,
    is_tiff,
    open_header,
)
from mmchange_core.io.imagery import Imagery
from mmchange_core.io.raster import open_sources
from mmchange_core.reporting.report import (
    Cell,
    Figure,
    Gallery,
    GalleryItem,
    Picture,
    Report,
    Section,
    Table,
    Text,
    format_duration,
    run_header,
    try_write_report,
)

#: Longest side of each picture of the series report.
SERIES_THUMB_SIDE = 256
#: Intervals shown with pictures (every interval is in the table and the chart).
REPORT_INTERVALS = 48
#: Source rows read at a time from a mask or index raster.
STRIP_ROWS = 512
#: How much of the last date shows under the first-change colours (0: black, 1: as it is).
DIM = 0.35
#: Colours of intervals 1..7 (Okabe-Ito without black, distinct under colour blindness); longer series sample turbo.
INTERVAL_COLOURS: tuple[tuple[int, int, int], ...] = (
    (230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178), (213, 94, 0), (204, 121, 167))
#: Square metres per unit of a summary's ``area_unit``; any other unit (pixels) is not a ground area.
M2_PER_UNIT = {"m²": 1.0, "m2": 1.0, "m^2": 1.0, "sq m": 1.0, "ha": 1e4, "hectare": 1e4, "hectares": 1e4,
               "km²": 1e6, "km2": 1e6, "km^2": 1e6}
#: Above this many m² the report shows hectares.
HECTARE = 1e4


def interval_colours(count: int) -> list[tuple[int, int, int]]:
    """One distinct colour per interval (index 0 is interval 1)."""
    if count <= len(INTERVAL_COLOURS):
        return list(INTERVAL_COLOURS[:count])
    import matplotlib

    cmap = matplotlib.colormaps["turbo"]
    return [tuple(round(255 * c) for c in cmap(0.05 + 0.9 * i / max(1, count - 1))[:3])  # type: ignore[misc]
            for i in range(count)]


def interval_label(date_a: str, date_b: str) -> str:
    """``'2016-06-01 → 2017-06-01'``."""
    return f"{date_a} → {date_b}"


# ------------------------------------------------------------------------------------------ reading rasters

@dataclass
class Pooled:
    """A single-band raster pooled to picture size, with the count of every value over the full raster."""

    preview: np.ndarray   # [h, w] int64
    counts: np.ndarray    # counts[v]: full-resolution pixels with value v
    height: int
    width: int

    def values(self) -> list[int]:
        """The values present in the raster, ascending."""
        return [int(v) for v in np.flatnonzero(self.counts)]


def _edges(size: int, out: int) -> np.ndarray:
    return (np.arange(out, dtype=np.int64) * size) // out


class _Band:
    """Band 1 of a mask/index raster by rows, raw values: TIFF through rasterio windows, PNG decoded by Pillow."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.dataset: Any = None
        self.array: np.ndarray | None = None
        check_regular_file(path, "raster")
        if is_tiff(path) and rasterio_available():
            rasterio = require_rasterio(f"reading {path}")
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
                    self.dataset = rasterio.open(path)
            except rasterio.errors.RasterioError as exc:
                raise InputError(f"cannot read raster {path} ({exc}); check that it is a valid TIFF") from exc
            self.height, self.width = self.dataset.height, self.dataset.width
            kind = np.dtype(self.dataset.dtypes[0]).kind
            if kind not in "ub":
                self.dataset.close()
                raise InputError(f"{path} holds {self.dataset.dtypes[0]} values; a mask or date index raster "
                                 f"holds unsigned integers (uint8)")
            try:
                check_pixels(path, self.height, self.width)
            except InputError:
                self.dataset.close()
                raise
        else:
            with open_header(path) as img:
                if img.mode in ("RGB", "RGBA", "LA", "CMYK", "YCbCr"):
                    img = img.getchannel(0)
                try:
                    self.array = np.asarray(img)
                except OSError as exc:
                    raise InputError(f"cannot read raster {path} ({exc})") from exc
            if self.array.ndim != 2 or self.array.dtype.kind not in "ub":
                raise InputError(f"{path} is not a single-band integer raster (got {self.array.dtype} "
                                 f"{list(self.array.shape)})")
            self.height, self.width = self.array.shape

    def rows(self, y0: int, y1: int) -> np.ndarray:
        if self.array is not None:
            return self.array[y0:y1]
        from rasterio.windows import Window

        try:
            return self.dataset.read(1, window=Window(0, y0, self.width, y1 - y0))
        except Exception as exc:  # rasterio raises several types for corrupt blocks
            raise InputError(f"cannot read pixels of {self.path} ({exc}); the file may be truncated or "
                             f"corrupt") from exc

    def close(self) -> None:
        if self.dataset is not None:
            self.dataset.close()


def read_pooled(path: str | Path, out_height: int, out_width: int, *, earliest: bool = False,
                size: tuple[int, int] | None = None) -> Pooled:
    """A mask or index raster reduced to ``[out_height, out_width]`` strip by strip: each output pixel takes the
    largest value of its block, or with ``earliest`` the smallest non-zero one (0 only where the block is all 0),
    so a small change stays visible. ``size`` (height, width) is the size the raster must have."""
    path = Path(path)
    band = _Band(path)
    try:
        height, width = band.height, band.width
        if size is not None and (height, width) != tuple(size):
            raise InputError(f"{path} is {width}x{height}, the series is {size[1]}x{size[0]}; "
                             f"it does not belong to this series")
        rows, cols = _edges(height, out_height), _edges(width, out_width)
        out = np.zeros((out_height, out_width), dtype=np.int64)
        counts = np.zeros(256, dtype=np.int64)
        step = max(1, STRIP_ROWS * out_height // max(1, height))
        for r0 in range(0, out_height, step):
            r1 = min(out_height, r0 + step)
            y0, y1 = int(rows[r0]), int(rows[r1]) if r1 < out_height else height
            strip = np.asarray(band.rows(y0, y1)).astype(np.int64)
            found = np.bincount(strip.ravel())
            if found.size > counts.size:
                counts = np.pad(counts, (0, found.size - counts.size))
            counts[:found.size] += found
            if earliest:
                big = np.iinfo(np.int64).max
                strip = np.where(strip == 0, big, strip)
                pooled = np.minimum.reduceat(np.minimum.reduceat(strip, cols, axis=1), rows[r0:r1] - y0, axis=0)
                out[r0:r1] = np.where(pooled == big, 0, pooled)
            else:
                out[r0:r1] = np.maximum.reduceat(np.maximum.reduceat(strip, cols, axis=1), rows[r0:r1] - y0, axis=0)
    finally:
        band.close()
    return Pooled(out, counts, height, width)


def check_index_values(pooled: Pooled, path: str | Path, intervals: int, what: str) -> None:
    """Refuse an index raster with a value above ``intervals`` (it was written for another series)."""
    bad = [v for v in pooled.values() if v > intervals]
    if bad:
        shown = ", ".join(str(v) for v in bad[:8]) + (", ..." if len(bad) > 8 else "")
        raise InputError(f"{what} raster {path} holds the value(s) {shown}, but a series of {intervals + 1} dates "
                         f"has intervals 1..{intervals} only; it does not belong to this series")


# ------------------------------------------------------------------------------------------------- areas

@dataclass
class Areas:
    """Changed area of every interval (and of first to last) in one unit: ha or m² from the summaries, else pixels."""

    values: list[float]
    first_to_last: float | None
    unit: str

    def text(self, value: float | None) -> str:
        """How an area is shown (``'1,234 px'``, ``'12.50 ha'``, ``'830.0 m²'``)."""
        if value is None:
            return "n/a"
        if self.unit == "pixels":
            return f"{round(value):,} px"
        return f"{value:,.2f} ha" if self.unit == "ha" else f"{value:,.1f} m²"


def _ground_m2(item: Any) -> float | None:
    summary = getattr(item, "summary", None)
    if not isinstance(summary, Mapping):
        return None
    area, unit = summary.get("area"), str(summary.get("area_unit") or "").strip().lower()
    if isinstance(area, bool) or not isinstance(area, (int, float)) or not math.isfinite(area):
        return None
    factor = M2_PER_UNIT.get(unit)
    return None if factor is None else float(area) * factor


def series_areas(intervals: Sequence[Any], first_to_last: Any | None = None) -> Areas:
    """The areas of ``intervals``: in hectares (or m² below one hectare) when every summary carries a ground
    area, else in pixels."""
    items = list(intervals) + ([first_to_last] if first_to_last is not None else [])
    ground = [_ground_m2(item) for item in items]
    if items and all(g is not None for g in ground):
        unit = "ha" if max(ground) >= HECTARE else "m²"  # type: ignore[type-var]
        scale = 1 / HECTARE if unit == "ha" else 1.0
        values = [float(g) * scale for g in ground]  # type: ignore[arg-type]
    else:
        unit = "pixels"
        values = [float(item.changed_pixels) for item in items]
    last = values.pop() if first_to_last is not None else None
    return Areas(values, last, unit)


def summary_text(item: Any) -> str:
    """The interval's summary sentence (a plain one when it has no summary)."""
    summary = getattr(item, "summary", None)
    if isinstance(summary, Mapping) and summary.get("text"):
        return str(summary["text"])
    return (f"{item.changed_pixels:,} pixels changed ({100 * item.change_fraction:.3f} %) between "
            f"{item.date_a} and {item.date_b}, in {item.polygons} polygons.")


# ------------------------------------------------------------------------------------------------ pictures

class _Thumbnails:
    """Each date read once as a thumbnail of the picture size, all dates opened together (one radiometric scale)."""

    def __init__(self, height: int, width: int, images: Sequence[str], imagery: Imagery) -> None:
        self.height, self.width = height, width
        self.images, self.imagery = list(images), imagery
        self.cache: dict[str, np.ndarray] = {}

    def _load(self) -> None:
        sources = open_sources(self.images, None, self.imagery)
        try:
            for path, source in zip(self.images, sources):
                view = np.array(source.thumbnail(max(self.height, self.width)), copy=True)
                if view.shape[:2] != (self.height, self.width):
                    from PIL import Image

                    view = np.asarray(Image.fromarray(view).resize((self.width, self.height),
                                                                   Image.Resampling.BOX)).copy()
                self.cache[path] = view
        finally:
            for source in sources:
                source.close()

    def __call__(self, path: str) -> np.ndarray:
        if not self.cache:
            self._load()
        return self.cache[path]


def _photo(view: np.ndarray, alt: str, max_side: int) -> Picture:
    return Picture.from_array(view, alt, max_side=max_side, fmt="jpeg")


def index_picture(index: np.ndarray, base: np.ndarray, colours: Sequence[tuple[int, int, int]]) -> np.ndarray:
    """``base`` (uint8 RGB) dimmed to grey, with every pixel of value ``k >= 1`` in ``colours[k - 1]``."""
    grey = base.astype(np.float32).mean(axis=2, keepdims=True) * DIM
    out = np.repeat(np.clip(np.rint(grey), 0, 255).astype(np.uint8), 3, axis=2)
    for k, colour in enumerate(colours, start=1):
        out[index == k] = colour
    return out


def _mask_view(path: str, thumbs: _Thumbnails, size: tuple[int, int]) -> np.ndarray:
    return read_pooled(path, thumbs.height, thumbs.width, size=size).preview > 0


# ------------------------------------------------------------------------------------------------ the report

def _facts(result: Any, intervals: int, areas: Areas) -> list[list[Any]]:
    changed = sum(1 for item in result.intervals if item.changed_pixels > 0)
    facts: list[list[Any]] = [
        ["series", result.name],
        ["dates", f"{result.dates[0]} → {result.dates[-1]} ({len(result.dates)} dates, {intervals} intervals)"],
        ["size", f"{result.width}x{result.height} px"], ["CRS", result.crs or "none"],
        ["threshold", f"{result.threshold:.3f}"], ["windows", f"{result.windows:,}"],
        ["intervals with change", f"{changed} of {len(result.intervals)}"],
        ["changed first → last", areas.text(areas.first_to_last)],
        ["captions", "yes (text model)" if getattr(result, "captions", None) else "no"]]
    facts += [[f"time: {key}", format_duration(value)] for key, value in (getattr(result, "seconds", None) or {}).items()
              if isinstance(value, (int, float))]
    facts += [[f"output: {kind}", path] for kind, path in (getattr(result, "outputs", None) or {}).items()]
    return facts


def _interval_rows(result: Any, areas: Areas) -> list[list[Any]]:
    rows = []
    for item, area in zip(result.intervals, areas.values):
        rows.append([Cell(str(item.index), item.index), item.date_a, item.date_b, Cell(areas.text(area), area),
                     item.changed_pixels, Cell(f"{100 * item.change_fraction:.3f}", 100 * item.change_fraction),
                     item.polygons, summary_text(item)])
    return rows


def _date_gallery(result: Any, thumbs: _Thumbnails, max_side: int) -> Gallery:
    captions = getattr(result, "captions", None) or None
    items = []
    for i, (date, image) in enumerate(zip(result.dates, result.images)):
        label = str(captions[i]) if captions and i < len(captions) else Path(image).name
        items.append(GalleryItem(date, [(label, _photo(thumbs(image), f"date {date}", max_side))],
                                 caption=f"t{i}"))
    note = "each date's caption (text model) under its picture" if captions else "each date's input file"
    return Gallery(items, note=note)


def _index_section(result: Any, key: str, thumbs: _Thumbnails, intervals: int, max_side: int,
                   colours: Sequence[tuple[int, int, int]], areas_unit: str) -> Section | None:
    path = (getattr(result, "outputs", None) or {}).get(key)
    if not path:
        return None
    size = (result.height, result.width)
    pooled = read_pooled(path, thumbs.height, thumbs.width, earliest=key == "first_change", size=size)
    what = key.replace("_", "-")
    check_index_values(pooled, path, intervals, what)
    base = thumbs(result.images[-1])
    present = [k for k in pooled.values() if k >= 1]
    pixel_area = _pixel_area(result, areas_unit)
    if key == "first_change":
        legend = [(f"first seen {result.dates[k]}", colours[k - 1]) for k in present]
        picture = index_picture(pooled.preview, base, colours)
        label = f"first change, over {result.dates[-1]} dimmed"
        note = (f"each changed pixel coloured by the interval in which change was first detected (seen from its "
                f"later date); unchanged pixels show {result.dates[-1]} dimmed")
        rows = [[result.dates[k], interval_label(result.dates[k - 1], result.dates[k]), int(pooled.counts[k]),
                 *([] if pixel_area is None else [Cell(f"{pooled.counts[k] * pixel_area:,.2f}",
                                                       float(pooled.counts[k] * pixel_area))])]
                for k in present]
        columns = ["first seen", "interval", "pixels", *([] if pixel_area is None else [f"area ({areas_unit})"])]
        table = Table(columns, rows, title="where change was first seen", table_id="first-seen")
        title = "First change date"
    else:
        count_colours = interval_colours(intervals)
        legend = [(f"changed in {k} interval{'s' if k > 1 else ''}", count_colours[k - 1]) for k in present]
        picture = index_picture(pooled.preview, base, count_colours)
        label = f"change count, over {result.dates[-1]} dimmed"
        note = f"how many intervals changed at each pixel; unchanged pixels show {result.dates[-1]} dimmed"
        table = None
        title = "Change count"
    card = GalleryItem(what, [(label, Picture.from_array(picture, f"{what} map", max_side=max_side, fmt="png"))])
    blocks: list[Any] = [Gallery([card], legend=legend, note=note)]
    if not present:
        blocks.append(Text("no change was detected in any interval"))
    if table is not None and table.rows:
        blocks.append(table)
    return Section(title, blocks)


def _pixel_area(result: Any, unit: str) -> float | None:
    """Area of one pixel in ``unit`` (ha or m²) from the summaries, None in pixels."""
    if unit == "pixels":
        return None
    for item in [*result.intervals, result.first_to_last]:
        m2 = _ground_m2(item)
        if m2 is not None and item.changed_pixels > 0:
            return m2 / item.changed_pixels / (HECTARE if unit == "ha" else 1.0)
    return None


def _comparison_card(item: Any, thumbs: _Thumbnails, size: tuple[int, int], max_side: int, name: str,
                     areas: Areas, area: float | None) -> GalleryItem:
    from mmchange_core.reporting.overlay import outlines

    mask = _mask_view(item.mask, thumbs, size)
    after = thumbs(item.image_b).copy()
    after[outlines(mask, 1)] = (255, 0, 0)
    pictures = [(item.date_a, _photo(thumbs(item.image_a), f"{name} {item.date_a}", max_side)),
                (item.date_b, _photo(thumbs(item.image_b), f"{name} {item.date_b}", max_side)),
                (f"{item.date_b} + change outline", _photo(after, f"{name} outline", max_side)),
                ("change mask", Picture.from_array(mask, f"{name} mask", max_side=max_side))]
    caption = f"{areas.text(area)} changed, {100 * item.change_fraction:.3f} %, {item.polygons} polygons"
    return GalleryItem(name, pictures, caption=caption, swipe=(item.date_a, item.date_b))


def series_report(result: Any, *, checkpoint: str | Path | None, config: Mapping[str, Any],
                  seconds: float | None = None, max_side: int = SERIES_THUMB_SIDE,
                  limit: int = REPORT_INTERVALS) -> Report:
    """The report of a series (``result`` is a :class:`~mmchange_core.inference.series.SeriesResult`).

    Raises :class:`InputError` when a written raster does not belong to the series (another size, or a
    date index above the number of intervals).
    """
    from mmchange_core.reporting.plots import series_area_figure
    from mmchange_core.reporting.thumbnails import fit

    dates, images = list(result.dates), list(result.images)
    if len(dates) < 2 or len(images) != len(dates):
        raise InputError(f"a series report needs at least 2 dates with one image each, got {len(dates)} dates and "
                         f"{len(images)} images")
    intervals = len(dates) - 1
    size = (result.height, result.width)
    h, w = fit(result.height, result.width, max_side)
    thumbs = _Thumbnails(h, w, images, Imagery.from_dict(getattr(result, "imagery", None)))
    colours = interval_colours(intervals)
    areas = series_areas(result.intervals, result.first_to_last)

    if seconds is None:
        seconds = (getattr(result, "seconds", None) or {}).get("total")
    header = run_header("series", checkpoint=checkpoint, config=config, device=_device(config), seconds=seconds,
                        extra={"series": result.name, "inputs": f"{len(images)} images, {dates[0]} → {dates[-1]}"})

    summary = Section("Summary", [Text(summary_text(result.first_to_last)),
                                  Table(["", "value"], _facts(result, intervals, areas), numeric=[False, False])])

    labels = [interval_label(item.date_a, item.date_b) for item in result.intervals]
    area_blocks: list[Any] = []
    if result.intervals:
        with tempfile.TemporaryDirectory() as tmp:
            plot = series_area_figure(
                labels, areas.values, Path(tmp) / "areas.png", unit=areas.unit,
                title=f"{result.name}: changed area per interval",
                colours=[colours[(item.index - 1) % len(colours)] for item in result.intervals],
                reference=(f"first → last ({interval_label(dates[0], dates[-1])})", areas.first_to_last)
                if areas.first_to_last is not None else None)
            area_blocks.append(Figure(Picture.from_file(plot, "changed area per interval"),
                                      f"changed area per interval ({areas.unit}); dashed: first date to last date"))
    area_blocks.append(Table(["interval", "from", "to", f"changed area ({areas.unit})", "changed pixels",
                              "changed %", "polygons", "summary"], _interval_rows(result, areas),
                             title=f"{len(result.intervals)} intervals", sortable=True, table_id="intervals",
                             numeric=[True, False, False, True, True, True, True, False]))
    sections = [summary, Section("Changed area per interval", area_blocks),
                Section("Dates", [_date_gallery(result, thumbs, max_side)])]
    for key in ("first_change", "change_count"):
        section = _index_section(result, key, thumbs, intervals, max_side, colours, areas.unit)
        if section is not None:
            sections.append(section)

    first_last = result.first_to_last
    sections.append(Section(f"First to last: {interval_label(first_last.date_a, first_last.date_b)}", [
        Text(summary_text(first_last)),
        Gallery([_comparison_card(first_last, thumbs, size, max_side, "first to last", areas, areas.first_to_last)],
                legend=[("change (outline)", (255, 0, 0))])]))

    cards = [_comparison_card(item, thumbs, size, max_side, f"interval {item.index}", areas, area)
             for item, area in list(zip(result.intervals, areas.values))[:limit]]
    interval_blocks: list[Any] = [Text(f"interval {item.index} ({interval_label(item.date_a, item.date_b)}): "
                                       f"{summary_text(item)}") for item in result.intervals]
    if cards:
        interval_blocks.append(Gallery(cards, legend=[("change (outline)", (255, 0, 0))],
                                       note="enlarge a card to swipe between its two dates"))
    if len(result.intervals) > limit:
        interval_blocks.append(Text(f"pictures of the first {limit} intervals only; every interval is in the table"))
    sections.append(Section("Intervals", interval_blocks))
    return Report(f"mmchange series: {result.name}", header, sections)


def _device(config: Mapping[str, Any]) -> str:
    detector = config.get("detector")
    spec = (detector.get("device") if isinstance(detector, Mapping) else None) or config.get("device") or "auto"
    try:
        from mmchange_core.device import resolve_device

        return str(resolve_device(spec))
    except Exception:  # noqa: BLE001 - the header names what was asked when it cannot be resolved here
        return str(spec)


def write_series_report(path: str | Path, result: Any, *, checkpoint: str | Path | None,
                        config: Mapping[str, Any], seconds: float | None = None,
                        warn: Callable[[str], None] | None = None, **options: Any) -> Path | None:
    """Write the series report to ``path`` atomically; a failure (e.g. a raster that does not belong to the
    series) only warns through ``warn`` and returns None, since the series' rasters are already written.
    ``options`` go to :func:`series_report` (``max_side``, ``limit``)."""
    return try_write_report(path, lambda: series_report(result, checkpoint=checkpoint, config=config,
                                                        seconds=seconds, **options), warn=warn)
