"""Georeferencing: the optional rasterio dependency, GeoTIFF detection and CRS/transform checks.

rasterio is the optional extra ``geo`` (``pip install "mmchange[geo]"``). Without it, plain images
(and TIFFs without geo tags) still work; a GeoTIFF stops with an error that names the extra.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from mmchange_core.errors import InputError, install_hint, require_extra
from mmchange_core.io.images import open_header

GEO_EXTRA = install_hint("geo")
#: TIFF tags that only GeoTIFFs carry: ModelPixelScale, ModelTiepoint, ModelTransformation, GeoKeyDirectory.
GEOTIFF_TAGS = (33550, 33922, 34264, 34735)


def rasterio_available() -> bool:
    """Whether the ``geo`` extra (rasterio) can be imported."""
    try:
        importlib.import_module("rasterio")
    except ImportError:
        return False
    return True


def require_rasterio(what: str) -> ModuleType:
    """Import rasterio, or raise an :class:`InputError` that says ``what`` needs it and how to install it."""
    return require_extra("rasterio", what, "geo")


def has_geotiff_tags(path: str | Path) -> bool:
    """Whether a TIFF carries GeoTIFF tags (read with Pillow, so it works without rasterio).

    An unreadable, non-regular or oversized file counts as not geo: the reader then reports it.
    """
    try:
        with open_header(Path(path)) as img:
            tags = getattr(img, "tag_v2", None)
            return bool(tags) and any(tag in tags for tag in GEOTIFF_TAGS)
    except InputError:
        return False


@dataclass(frozen=True)
class GeoReference:
    """Where a raster lies on the Earth: its CRS (a ``rasterio.crs.CRS``) and affine pixel->CRS transform."""

    crs: Any
    transform: Any

    def crs_name(self) -> str:
        """A short name for the CRS: ``EPSG:32631`` when it has an EPSG code, else its WKT."""
        if self.crs is None:
            return "none"
        return self.crs.to_string()

    def pixel_area(self) -> float:
        """Area of one pixel in squared CRS units."""
        return abs(self.transform.a * self.transform.e - self.transform.b * self.transform.d)


def georeference_of(dataset: Any) -> GeoReference | None:
    """The :class:`GeoReference` of an open rasterio dataset, or ``None`` when it has neither CRS nor transform."""
    from affine import Affine

    transform = dataset.transform
    if dataset.crs is None and (transform is None or transform == Affine.identity()):
        return None
    return GeoReference(dataset.crs, transform)


def check_same_georeference(ref_a: GeoReference | None, ref_b: GeoReference | None, path_a: Path,
                            path_b: Path) -> GeoReference | None:
    """The common georeference of two dates; raises :class:`InputError` when the grids differ.

    When only one date is georeferenced its reference is returned (the caller may warn).
    """
    if ref_a is None or ref_b is None:
        return ref_a or ref_b
    if ref_a.crs != ref_b.crs:
        raise InputError(f"{path_a} and {path_b} have different CRS ({ref_a.crs_name()} vs {ref_b.crs_name()}); "
                         f"reproject one onto the other's grid first (e.g. gdalwarp -t_srs)")
    if not ref_a.transform.almost_equals(ref_b.transform, precision=1e-9 * max(1.0, abs(ref_a.transform.c),
                                                                                 abs(ref_a.transform.f))):
        raise InputError(f"{path_a} and {path_b} have different geotransforms ({tuple(ref_a.transform)[:6]} vs "
                         f"{tuple(ref_b.transform)[:6]}); resample both onto one pixel grid first (e.g. gdalwarp -tap)")
    return ref_a
