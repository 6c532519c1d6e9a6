"""A STAC Item beside a prediction: what was compared, with which model, and where the results are.

The Item (STAC 1.1, written with pystac, from the optional extra ``cog``) has the two input images and
every output as assets (hrefs: percent-encoded URL references, relative to the Item's folder when
they can be), the model as ``mmchange:*`` properties (checkpoint file name and sha256, threshold,
tile size, overlap, mmchange version), the footprint in WGS84 (``bbox``/``geometry``) and the grid
with the projection extension (``proj:code`` or ``proj:wkt2``, ``proj:shape``, ``proj:transform``,
``proj:bbox``). The time span is
``start_datetime``/``end_datetime`` when both input dates are known (GeoTIFF acquisition or file
date tags), otherwise ``datetime`` is the time the Item was made (``created``). The class raster of a K-class
network (the ``mask`` asset, or a series' masks) lists its classes with the classification extension
(``classification:classes``: ``value``, ``name`` (machine-readable), ``title`` (the class file's name) and
``color_hint``).
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import os
import re
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote

from mmchange_core.errors import InputError, install_hint, require_extra
from mmchange_core.io.atomic import atomic_write_text
from mmchange_core.io.classes import ClassScheme
from mmchange_core.io.geo import GeoReference, rasterio_available, require_rasterio
from mmchange_core.io.hashing import cached_sha256_file
from mmchange_core.io.images import image_size, is_tiff

STAC_EXTRA = install_hint("cog")
#: Prefix of the mmchange fields in the Item's properties.
PREFIX = "mmchange:"
#: Roles and title of each known asset kind; other kinds get the role ``data``.
ASSET_KINDS: dict[str, tuple[list[str], str]] = {
    "mask": (["data"], "Change mask (0 = no change, 255 = change)"),
    "prob": (["data"], "Change probability (0 to 1)"),
    "vector": (["data"], "Change polygons"),
    "overlay": (["overview", "visual"], "Change outlines on both dates"),
    "report": (["metadata"], "Prediction report"),
}
#: The classification extension of class rasters' ``classification:classes``.
CLASSIFICATION_EXTENSION = "https://stac-extensions.github.io/classification/v2.0.0/schema.json"
#: Title of an asset that is a class raster (a K-class network's mask).
CLASS_MASK_TITLE = "Change classes (the class file's values, 0 = no change)"
#: Media type of each output suffix (TIFFs are written as Cloud-Optimized GeoTIFFs).
MEDIA_TYPES = {
    ".tif": "image/tiff; application=geotiff; profile=cloud-optimized",
    ".tiff": "image/tiff; application=geotiff; profile=cloud-optimized",
    ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
    ".geojson": "application/geo+json", ".json": "application/geo+json",
    ".html": "text/html", ".csv": "text/csv",
}
_INPUT_MEDIA_TYPES = {**MEDIA_TYPES, ".tif": "image/tiff; application=geotiff",
                      ".tiff": "image/tiff; application=geotiff"}
#: GeoTIFF metadata (domain, key) that may hold an image's date, most specific first.
_DATE_TAGS = (("IMAGERY", "ACQUISITIONDATETIME"), ("", "ACQUISITIONDATETIME"), ("", "TIFFTAG_DATETIME"))


def require_pystac(what: str) -> ModuleType:
    """Import pystac, or raise an :class:`InputError` that says ``what`` needs it and how to install it."""
    return require_extra("pystac", what, "cog")


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes (:func:`~mmchange_core.io.hashing.cached_sha256_file`: read once per process)."""
    path = Path(path).resolve()
    try:
        return cached_sha256_file(path)
    except OSError as exc:
        raise InputError(f"cannot read {path} ({exc.strerror})") from exc


def _href(path: Path, base: Path) -> str:
    """``path`` as a URL reference from the folder ``base``: relative when possible, percent-encoded.

    A STAC href is a URL reference (RFC 3986), so the POSIX relative path is percent-encoded
    (``site #3.tif`` -> ``site%20%233.tif``; ``?``, ``%``, ``:`` and non-ASCII letters too): resolved
    against the Item's own URL and unquoted it names exactly ``path``. On another drive (Windows) it
    is the absolute ``file://`` URL.
    """
    path = Path(os.path.abspath(path))
    try:
        relative = Path(os.path.relpath(path, os.path.abspath(base))).as_posix()
    except ValueError:  # another drive on Windows
        return path.as_uri()
    return quote(relative, safe="/")


def output_asset(kind: str, path: str | Path, base: Path, georeferenced: bool) -> dict[str, Any]:
    """The STAC asset of one output file (href relative to the Item's folder ``base``, title, media type, roles).

    A TIFF output of a pair without georeference is typed as a plain cloud-optimized TIFF, not a GeoTIFF.
    """
    path = Path(path)
    roles, title = ASSET_KINDS.get(kind, (["data"], kind))
    asset: dict[str, Any] = {"href": _href(path, base), "title": title}
    media_type = MEDIA_TYPES.get(path.suffix.lower())
    if media_type is not None and media_type.startswith("image/tiff") and not georeferenced:
        media_type = "image/tiff; profile=cloud-optimized"
    if media_type is not None:
        asset["type"] = media_type
    asset["roles"] = roles
    return asset


def classification_classes(classes: ClassScheme) -> list[dict[str, Any]]:
    """The ``classification:classes`` of a class raster: each class's value, machine-readable name (letters,
    digits, ``-`` and ``_``), title (its name in the class file) and colour hint (``RRGGBB``)."""
    return [{"value": cls.value, "name": re.sub(r"[^0-9A-Za-z_-]+", "_", cls.name).strip("_") or f"class_{cls.value}",
             "title": cls.name, "color_hint": "".join(f"{c:02X}" for c in cls.colour)} for cls in classes.classes]


def parse_datetime(text: str) -> dt.datetime | None:
    """A datetime from a TIFF/ISO date string (``2021:06:01 10:00:00``, ``2021-06-01T10:00:00Z``); naive = UTC."""
    text = text.strip().rstrip("\x00")
    if len(text) >= 10 and text[4] == ":" and text[7] == ":":  # TIFF: YYYY:MM:DD HH:MM:SS
        text = text[:10].replace(":", "-") + text[10:]
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def input_datetime(path: str | Path) -> dt.datetime | None:
    """The date of an input image from its GeoTIFF tags (acquisition time first), or ``None`` when unknown."""
    path = Path(path)
    if not (is_tiff(path) and rasterio_available() and path.is_file()):
        return None
    rasterio = require_rasterio(f"reading {path}")
    try:
        with rasterio.Env(), rasterio.open(path) as ds:
            for domain, key in _DATE_TAGS:
                value = ds.tags(ns=domain or None).get(key)
                if value and (parsed := parse_datetime(value)) is not None:
                    return parsed
    except rasterio.errors.RasterioError:
        return None
    return None


def wgs84_footprint(georef: GeoReference, height: int, width: int) -> tuple[list[float], list[float]]:
    """(``bbox`` in WGS84 lon/lat, ``bbox`` in the raster's CRS) of a ``height x width`` grid."""
    require_rasterio("the footprint of a georeferenced output")
    from rasterio.warp import transform_bounds

    corners = [georef.transform @ (x, y) for x, y in ((0, 0), (width, 0), (0, height), (width, height))]
    xs, ys = [c[0] for c in corners], [c[1] for c in corners]
    native = [min(xs), min(ys), max(xs), max(ys)]
    if georef.crs is None:
        raise InputError("the output has a transform but no CRS, so its footprint on the Earth is unknown")
    lonlat = transform_bounds(georef.crs, "EPSG:4326", *native, densify_pts=21)
    return [round(v, 9) for v in lonlat], native


def _geometry(bbox: list[float]) -> dict[str, Any]:
    west, south, east, north = bbox
    return {"type": "Polygon",
            "coordinates": [[[west, south], [east, south], [east, north], [west, north], [west, south]]]}


def write_stac_item(path: str | Path, *, name: str, inputs: Sequence[str | Path], georef: GeoReference | None,
                    model: Mapping[str, Any], assets: Mapping[str, str | Path],
                    properties: Mapping[str, Any] | None = None, shape: tuple[int, int] | None = None,
                    classes: ClassScheme | None = None, classified: Collection[str] = ("mask",)) -> Path:
    """Write the STAC Item of one prediction to ``path`` (JSON, atomically) and return ``path``.

    ``inputs``: the images compared, first date first (assets ``image_a``, ``image_b``, role
    ``source``). ``assets``: output kind (``mask``, ``prob``, ``vector``, ``overlay``, ``report`` or
    another) -> file. ``model``: the model fields (``inference/stac.model_fields``), stored as ``mmchange:<key>``.
    ``shape`` (rows, columns) defaults to the size of the ``mask`` asset. ``properties`` are added
    last (and may set ``start_datetime``/``end_datetime`` when the input files do not say).
    Without a georeference the Item has no footprint (``geometry`` null) and no projection fields.
    ``classes`` (a K-class network): the ``classified`` assets are class rasters, described with the
    classification extension (:func:`classification_classes`).
    """
    pystac = require_pystac(f"the STAC item {path}")
    from pystac.extensions.projection import ProjectionExtension

    path = Path(path)
    if path.suffix.lower() != ".json":
        raise InputError(f"STAC item {path}: name it with .json")
    base = path.parent
    if shape is None:
        if "mask" not in assets:
            raise InputError(f"STAC item {path}: give the raster shape or a 'mask' asset to read it from")
        shape = image_size(Path(assets["mask"]))
    height, width = shape

    bbox = geometry = native = None
    if georef is not None:
        bbox, native = wgs84_footprint(georef, height, width)
        geometry = _geometry(bbox)
    created = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    dates = [input_datetime(p) for p in inputs]
    known = [d for d in dates if d is not None]
    item_properties: dict[str, Any] = {"created": pystac.utils.datetime_to_str(created)}
    datetime: dt.datetime | None = created
    if len(known) == len(inputs) >= 2:
        datetime = None
        item_properties["start_datetime"] = pystac.utils.datetime_to_str(min(known))
        item_properties["end_datetime"] = pystac.utils.datetime_to_str(max(known))
    item_properties.update({f"{PREFIX}{key}": value for key, value in model.items()})
    item_properties.update(properties or {})
    if item_properties.get("start_datetime") and item_properties.get("end_datetime"):
        datetime = None  # a period: STAC's datetime is null when start and end are given
    elif datetime is None:
        datetime = created
    item = pystac.Item(id=name, geometry=geometry, bbox=bbox, datetime=datetime, properties=item_properties)

    for index, image in enumerate(inputs):
        image = Path(image)
        key = f"image_{chr(ord('a') + index)}" if len(inputs) <= 26 else f"image_{index + 1}"
        item.add_asset(key, pystac.Asset(_href(image, base), title=f"Input image, date {index + 1}: {image.name}",
                                         media_type=_INPUT_MEDIA_TYPES.get(image.suffix.lower()), roles=["source"]))
    for kind, asset_path in assets.items():
        asset = output_asset(kind, asset_path, base, georef is not None)
        if classes is not None and kind in classified:
            asset["title"] = CLASS_MASK_TITLE if kind == "mask" else f"{asset['title']}: change classes"
            asset["classification:classes"] = classification_classes(classes)
        item.add_asset(kind, pystac.Asset.from_dict(asset))
    if classes is not None and any(kind in classified for kind in assets):
        item.stac_extensions.append(CLASSIFICATION_EXTENSION)

    if georef is not None:
        proj = ProjectionExtension.ext(item, add_if_missing=True)
        epsg = georef.crs.to_epsg()
        proj.apply(epsg=epsg, wkt2=None if epsg else georef.crs.to_wkt(version="WKT2_2019"), shape=[height, width],
                   transform=[float(v) for v in tuple(georef.transform)[:6]], bbox=[float(v) for v in native])
    payload = item.to_dict(include_self_link=False, transform_hrefs=False)
    return atomic_write_text(path, json.dumps(payload, indent=2) + "\n")


def stac_problems(path: str | Path) -> list[str]:
    """Why the Item at ``path`` is not valid STAC (empty: valid), checked offline.

    The core Item schema is checked with the schemas pystac ships when ``jsonschema`` is installed
    (skipped otherwise); the projection extension's schema would need the network, so its fields
    are checked here by shape instead.
    """
    pystac = require_pystac(f"checking {path}")
    from pystac.validation import validate_dict

    data = json.loads(Path(path).read_text(encoding="utf-8"))
    problems: list[str] = []
    if importlib.util.find_spec("jsonschema") is not None:
        try:
            validate_dict(data, stac_object_type=pystac.STACObjectType.ITEM, extensions=[])
        except pystac.errors.STACValidationError as exc:
            problems.append(f"core Item schema: {exc}")
    props = data.get("properties", {})
    if any(key.startswith("proj:") for key in props):
        if not (props.get("proj:code") or props.get("proj:wkt2") or props.get("proj:projjson")):
            problems.append("proj: none of proj:code, proj:wkt2, proj:projjson")
        if not (isinstance(props.get("proj:shape"), list) and len(props["proj:shape"]) == 2):
            problems.append("proj:shape is not [rows, columns]")
        if not (isinstance(props.get("proj:transform"), list) and len(props["proj:transform"]) in (6, 9)):
            problems.append("proj:transform is not 6 or 9 numbers")
    return problems
