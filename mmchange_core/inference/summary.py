"""A deterministic summary in words of one change mask: how much changed, where, and in how many areas.

:func:`summarize_change` turns a whole-scene mask (bool, or 0/255 uint8, ``[H, W]``) into a
:class:`ChangeSummary`: the changed pixels and their share of the image, the changed area (m² for a
projected CRS, else pixels), the change regions that ``--vector`` writes (the polygons of
:func:`mmchange_core.io.vector.polygonize`, 4-connected, with ``min_area`` applied exactly as
:func:`~mmchange_core.io.vector.write_change_polygons` applies it), the largest of them and where it
lies, and one paragraph of text. The same mask always gives the same text.

Number formatting of the text (fixed, independent of the locale):

* areas: hectares with two decimals at 1 ha and above (``2.35 ha``, ``1,204.50 ha``), else whole
  square metres (``850 m²``); without a projected CRS, whole pixels (``1,234 pixels``, ``1 pixel``);
  thousands are separated by commas;
* the share of the image: one decimal (``4.1%``); ``<0.1%`` for a share above 0 but below 0.1%,
  ``>99.9%`` for one above 99.9% but below 100%;
* coordinates: degrees with four decimals and a hemisphere letter (``47.3712° N, 8.5417° E``);
  pixel positions with one decimal, in pixel-corner coordinates (x to the right, y down, the
  image's top-left corner at 0, 0; the centre of the top-left pixel is 0.5, 0.5);
* counts: whole numbers with commas (``65,536``).

A class map of a K-class network (the class file's label values, 0 = no change) is summarised with its
:class:`~mmchange_core.io.classes.ClassScheme`: the changed area of each change class (pixels, m² when
projected, share of the image) in :attr:`ChangeSummary.classes`, the regions traced one class at a
time (:func:`~mmchange_core.io.vector.polygonize_classes`, as ``--vector`` writes them), the class of
the largest one, and one more sentence: ``By class: new building 1.20 ha (3.0%), demolished building
850 m² (0.2%).`` (classes without change are left out of the sentence, not out of the figures).

Without a known position on the Earth (no georeference, no CRS, or a CRS that cannot be brought to
WGS84), the largest region is placed by its image region: the image is split 3x3 into
``north-west, north, north-east, west, centre, east, south-west, south, south-east`` (north is up).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mmchange_core.config import to_dict
from mmchange_core.io.classes import ClassScheme
from mmchange_core.io.geo import GeoReference
from mmchange_core.io.vector import ChangePolygon, polygonize, polygonize_classes

#: Square metres in a hectare: areas from one hectare up are written in hectares.
HECTARE_M2 = 10_000.0
#: The image regions of a 3x3 split, by row (top first) and column (left first).
REGIONS = (("north-west", "north", "north-east"), ("west", "centre", "east"),
           ("south-west", "south", "south-east"))
#: Rows of a class map counted at a time (bounds the counting's temporary memory).
COUNT_ROWS = 1024
#: How a generated sentence is introduced in the text.
GENERATED_PREFIX = "Generated description (may be inaccurate):"


def changed_area_m2(pixels: int, georef: GeoReference | None) -> tuple[float | None, str]:
    """``(area in m², how it is shown)``: None with the reason when the grid has no metric pixel size.

    Only a projected CRS has one (its linear unit, metres or feet, converted to metres).
    """
    if georef is None or georef.crs is None:
        return None, "n/a (not georeferenced)"
    crs = georef.crs
    if getattr(crs, "is_geographic", False):
        return None, "n/a (geographic CRS)"
    try:
        _unit, to_metres = crs.linear_units_factor
    except Exception:  # noqa: BLE001 - rasterio raises CRSError for CRSs without linear units
        return None, "n/a (CRS has no linear unit)"
    area = pixels * georef.pixel_area() * float(to_metres) ** 2
    return area, f"{area:,.1f}"


@dataclass
class ChangeSummary:
    """What changed in one mask, as figures and as one paragraph of text (:attr:`text`)."""

    changed_pixels: int
    total_pixels: int
    percent: float
    """Changed pixels as a percentage of all pixels (0-100)."""
    area: float | None
    """The changed area in :attr:`area_unit` (``m2``); ``None`` without a projected CRS (then see ``changed_pixels``)."""
    area_unit: str
    """``m2`` for a projected CRS, else ``pixels``."""
    area_text: str
    """The area as the text writes it: ``2.35 ha``, ``850 m²`` or ``1,234 pixels``."""
    polygons: int
    """Change regions that ``--vector`` writes (4-connected, at least ``min_area``)."""
    largest: dict[str, Any] | None
    """The largest region: ``area`` (as :attr:`area`), ``area_text``, ``pixels``, ``pixel_centroid`` (``x``,
    ``y`` in pixel-corner coordinates), ``region`` (of the 3x3 split) and ``centroid`` (``lon``, ``lat`` in
    WGS84, or ``None`` without a known position on the Earth); ``None`` without any region."""
    captions: list[str] | None = None
    """Both dates' captions, when known."""
    period: tuple[str, str] | None = None
    """What the two dates are called: two ISO dates, or the two file names."""
    generated: str | None = None
    """A sentence generated by a vision-language model (may be inaccurate), when asked for."""
    classes: list[dict[str, Any]] | None = None
    """K-class networks: one entry per change class, in the class file's order: ``value``, ``name``, ``colour``
    (RGB), ``pixels``, ``percent`` (of the image), ``area`` (m², ``None`` without a projected CRS) and
    ``area_text``; their pixels add up to :attr:`changed_pixels`. ``None`` for binary networks."""
    text: str = ""
    """The summary in words."""

    def to_dict(self) -> dict[str, Any]:
        """The summary as ``--json``, the run manifest and the STAC Item record it (binary: no ``classes`` key)."""
        data = to_dict(self)
        if self.classes is None:
            del data["classes"]
        return data


def summarize_change(mask: np.ndarray, georef: GeoReference | None = None, *,
                     captions: Sequence[str] | None = None, period: Sequence[str] | None = None,
                     min_area: float = 0.0, generated: str | None = None,
                     polygons: Sequence[ChangePolygon] | None = None,
                     classes: ClassScheme | None = None) -> ChangeSummary:
    """The summary of ``mask`` (bool, or 0/255 uint8, ``[H, W]``) on the grid ``georef`` (``None``: plain image).

    ``captions`` (date A, date B), ``period`` (what the two dates are called) and ``generated`` (a
    model's sentence) are added to the text as given. ``min_area`` is that of ``--vector``: pixels, or
    squared CRS units for georeferenced input. ``polygons`` are ``polygonize(mask)`` when the caller
    has them already (predict shares them with ``--vector``); otherwise they are traced here. With
    ``classes`` (a K-class network), ``mask`` is its class map (the class file's values, 0 = no change),
    summarised per class too, and ``polygons`` are ``polygonize_classes(mask, classes)``.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"a change mask is [H, W], got shape {mask.shape}")
    changed = mask if mask.dtype == bool else mask > 0
    height, width = changed.shape
    total = height * width
    count = int(np.count_nonzero(changed))
    percent = 100.0 * count / total if total else 0.0
    area_m2, _ = changed_area_m2(count, georef)
    area_unit = "m2" if area_m2 is not None else "pixels"
    if captions is not None:
        captions = [str(c) for c in captions]
        if len(captions) != 2:
            raise ValueError(f"captions are those of date A and date B, got {len(captions)}")
    if period is not None:
        if len(period) != 2:
            raise ValueError(f"a period is two names, date A and date B, got {len(period)}")
        period = (str(period[0]), str(period[1]))
    per_class = _class_areas(mask, classes, georef, total) if classes is not None else None
    kept: list[ChangePolygon] = []
    if count:
        if polygons is not None:
            traced = polygons
        else:
            traced = polygonize_classes(mask, classes) if classes is not None else polygonize(changed)
        unit_area = georef.pixel_area() if georef is not None else 1.0  # as polygons_to_geojson filters
        kept = [p for p in traced if p.pixels * unit_area >= min_area]
    largest = _largest(kept, georef, height, width, classes) if kept else None
    summary = ChangeSummary(
        changed_pixels=count, total_pixels=total, percent=percent,
        area=area_m2, area_unit=area_unit, area_text=_area_text(area_m2, count),
        polygons=len(kept), largest=largest, captions=list(captions) if captions is not None else None,
        period=period, generated=" ".join(generated.split()) if generated else None, classes=per_class)
    summary.text = _text(summary, min_area)
    return summary


def class_counts(values: np.ndarray, classes: ClassScheme) -> list[int]:
    """Pixels of each change class (in the class file's order) in a class map, counted :data:`COUNT_ROWS` rows at
    a time."""
    found = np.zeros(256, dtype=np.int64)
    for y0 in range(0, values.shape[0], COUNT_ROWS):
        found += np.bincount(np.asarray(values[y0:y0 + COUNT_ROWS], dtype=np.uint8).ravel(), minlength=256)
    return [int(found[cls.value]) for cls in classes.change_classes]


def _class_areas(values: np.ndarray, classes: ClassScheme, georef: GeoReference | None,
                 total: int) -> list[dict[str, Any]]:
    """The :attr:`ChangeSummary.classes` entries of a class map."""
    if values.dtype.kind not in "ui":
        raise ValueError(f"a class map holds the class file's values (uint8), got {values.dtype}")
    entries = []
    for cls, pixels in zip(classes.change_classes, class_counts(values, classes)):
        area, _ = changed_area_m2(pixels, georef)
        entries.append({"value": cls.value, "name": cls.name, "colour": list(cls.colour), "pixels": pixels,
                        "percent": 100.0 * pixels / total if total else 0.0, "area": area,
                        "area_text": _area_text(area, pixels)})
    return entries


def ring_moments(ring: np.ndarray) -> tuple[float, float, float]:
    """``(area, x moment, y moment)`` of a closed ring, positive whatever its orientation (shoelace)."""
    x0, y0, x1, y1 = ring[:-1, 0], ring[:-1, 1], ring[1:, 0], ring[1:, 1]
    cross = x0 * y1 - x1 * y0
    area = cross.sum() / 2.0
    mx = ((x0 + x1) * cross).sum() / 6.0
    my = ((y0 + y1) * cross).sum() / 6.0
    sign = 1.0 if area >= 0 else -1.0
    return sign * float(area), sign * float(mx), sign * float(my)


def polygon_centroid(polygon: ChangePolygon) -> tuple[float, float]:
    """The centroid (x, y) of a region's pixels, exact: its exterior ring's moments less its holes'.

    Rings follow pixel edges, so this equals the mean of the region's pixel centres (pixel-corner coordinates).
    The rings are moved to the exterior's first corner first, which keeps the sums small in large scenes.
    """
    origin = polygon.exterior[0]
    area, mx, my = ring_moments(polygon.exterior - origin)
    for hole in polygon.holes:
        a, hx, hy = ring_moments(hole - origin)
        area, mx, my = area - a, mx - hx, my - hy
    return float(origin[0]) + mx / area, float(origin[1]) + my / area


def image_region(x: float, y: float, height: int, width: int) -> str:
    """The region word of a point of a ``height`` x ``width`` image (a 3x3 split, north up)."""
    col = min(max(int(3 * x // width), 0), 2) if width else 1
    row = min(max(int(3 * y // height), 0), 2) if height else 1
    return REGIONS[row][col]


def lonlat(georef: GeoReference | None, x: float, y: float) -> dict[str, float] | None:
    """WGS84 ``{"lon", "lat"}`` of pixel-corner coordinates (x, y); ``None`` when the grid has no known position."""
    if georef is None or georef.crs is None:
        return None
    try:
        from rasterio.warp import transform

        cx, cy = georef.transform @ (x, y)
        lons, lats = transform(georef.crs, "EPSG:4326", [cx], [cy])
    except Exception:  # noqa: BLE001 - rasterio's CRSError/GDAL errors: a CRS that cannot reach WGS84
        return None
    lon, lat = float(lons[0]), float(lats[0])
    return {"lon": lon, "lat": lat} if np.isfinite(lon) and np.isfinite(lat) else None


def _largest(kept: Sequence[ChangePolygon], georef: GeoReference | None, height: int,
             width: int, classes: ClassScheme | None = None) -> dict[str, Any]:
    """The largest region (ties: the one nearest the top, then the left, as ``--vector`` orders them)."""
    top = min(kept, key=lambda p: (-p.pixels, float(p.exterior[:, 1].min()), float(p.exterior[:, 0].min())))
    x, y = polygon_centroid(top)
    area, _ = changed_area_m2(top.pixels, georef)
    largest = {"area": area, "area_text": _area_text(area, top.pixels), "pixels": int(top.pixels),
               "pixel_centroid": {"x": x, "y": y}, "region": image_region(x, y, height, width),
               "centroid": lonlat(georef, x, y)}
    if top.value is not None and classes is not None:  # a class region (K-class networks)
        largest.update(class_value=int(top.value), class_name=classes.name_of(top.value))
    return largest


def _area_text(area_m2: float | None, pixels: int) -> str:
    if area_m2 is None:
        return f"{pixels:,} pixel{'' if pixels == 1 else 's'}"
    if area_m2 >= HECTARE_M2:
        return f"{area_m2 / HECTARE_M2:,.2f} ha"
    return f"{area_m2:,.0f} m²"


def _percent_text(percent: float) -> str:
    if percent == 0:
        return "0%"
    if percent < 0.1:
        return "<0.1%"
    if 99.9 < percent < 100:
        return ">99.9%"
    return f"{percent:.1f}%"


def _degrees(point: dict[str, float]) -> str:
    lat, lon = point["lat"], point["lon"]
    return f"{abs(lat):.4f}° {'N' if lat >= 0 else 'S'}, {abs(lon):.4f}° {'E' if lon >= 0 else 'W'}"


def _where(largest: dict[str, Any]) -> str:
    if largest["centroid"] is not None:
        return f"centred at {_degrees(largest['centroid'])}"
    point = largest["pixel_centroid"]
    return f"centred in the {largest['region']} of the image (pixel x {point['x']:.1f}, y {point['y']:.1f})"


def _sentence(text: str) -> str:
    """``text`` on one line, ending with one full stop (or its own ! or ?)."""
    text = " ".join(text.split()).rstrip(".")
    return text if text.endswith(("!", "?")) else f"{text}."


def _text(summary: ChangeSummary, min_area: float) -> str:
    lead = f"Between {summary.period[0]} and {summary.period[1]}, " if summary.period else ""
    if summary.changed_pixels == 0:
        first = f"no change was detected (0 of {summary.total_pixels:,} pixels)."
    else:
        first = f"{summary.area_text} changed ({_percent_text(summary.percent)} of the image)"
        largest = summary.largest
        of_class = f" of {largest['class_name']}" if largest is not None and "class_name" in largest else ""
        if largest is None:
            first += f"; no area reaches the minimum area of {min_area:g}."
        elif summary.polygons == 1:
            first += f" in 1 area{of_class}, {_where(largest)}."
        else:
            first += (f" in {summary.polygons:,} areas; the largest, {largest['area_text']}{of_class}, is "
                      f"{_where(largest)}.")
    parts = [lead + first if lead else first[0].upper() + first[1:]]
    changed_classes = [c for c in summary.classes or () if c["pixels"]]
    if changed_classes:
        parts.append("By class: " + ", ".join(f"{c['name']} {c['area_text']} ({_percent_text(c['percent'])})"
                                              for c in changed_classes) + ".")
    if summary.captions is not None:
        parts += [f"Date A: {_sentence(summary.captions[0])}", f"Date B: {_sentence(summary.captions[1])}"]
    if summary.generated:
        parts.append(f"{GENERATED_PREFIX} {_sentence(summary.generated)}")
    return " ".join(parts)
