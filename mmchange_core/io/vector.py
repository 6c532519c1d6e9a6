"""Change polygons: a binary mask turned into GeoJSON, with rasterio or with a pure-numpy tracer.

Polygons follow pixel edges, one per 4-connected change region, with holes. A class map of a K-class
network (the class file's label values, 0 = no change) is traced one change class at a time
(:func:`polygonize_classes`), so a region is one class, and its features carry ``class_value`` and
``class_name`` properties. Coordinates are pixel
corners (x to the right, y down, the image's top-left corner at 0,0) for plain images, or CRS
coordinates through the affine transform for georeferenced input, in which case the FeatureCollection
carries a ``crs`` member (GeoJSON 2008 style, read by GDAL/QGIS). ``min_area`` is in pixels for
plain images and in squared CRS units (e.g. m^2) for georeferenced input.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmchange_core.io.atomic import atomic_write_text
from mmchange_core.io.classes import ClassScheme
from mmchange_core.io.geo import GeoReference, rasterio_available
from mmchange_core.io.jsonio import strict_json

Ring = np.ndarray  # [n, 2] float64 (x, y), closed (first == last)


@dataclass
class ChangePolygon:
    """One change region: exterior ring, holes, and its area in pixels."""

    exterior: Ring
    holes: list[Ring]
    pixels: int
    value: int | None = None
    """The class value of the region (K-class networks); ``None`` for a binary change region."""


def signed_area(ring: Ring) -> float:
    """Shoelace area of a closed ring (positive when counter-clockwise in x-right/y-up axes)."""
    x, y = ring[:, 0], ring[:, 1]
    return 0.5 * float(np.dot(x[:-1], y[1:]) - np.dot(x[1:], y[:-1]))


def _oriented(ring: Ring, positive: bool) -> Ring:
    return ring if (signed_area(ring) > 0) == positive else ring[::-1].copy()


# --- pure numpy fallback ------------------------------------------------------------------------

def _boundary_edges(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Unit pixel edges between change and background, oriented with the change on the left (y down)."""
    p = np.pad(mask, 1)
    top, bottom = p[:-1, 1:-1], p[1:, 1:-1]            # horizontal line y between rows y-1 and y
    left, right = p[1:-1, :-1], p[1:-1, 1:]            # vertical line x between columns x-1 and x
    parts = []
    y, x = np.nonzero(top & ~bottom)                   # change above: walk +x
    parts.append((x, y, x + 1, y))
    y, x = np.nonzero(bottom & ~top)                   # change below: walk -x
    parts.append((x + 1, y, x, y))
    y, x = np.nonzero(right & ~left)                   # change on the right column: walk +y
    parts.append((x, y, x, y + 1))
    y, x = np.nonzero(left & ~right)                   # change on the left column: walk -y
    parts.append((x, y + 1, x, y))
    sx, sy, ex, ey = (np.concatenate([part[i] for part in parts]).astype(np.int64) for i in range(4))
    return sx, sy, ex, ey


def _next_edges(sx: np.ndarray, sy: np.ndarray, ex: np.ndarray, ey: np.ndarray, width: int) -> np.ndarray:
    """For every edge, the edge that continues its ring; at diagonal touches turn left (4-connectivity)."""
    stride = width + 3
    start_id = sy * stride + sx
    end_id = ey * stride + ex
    order = np.argsort(start_id, kind="stable")
    sorted_ids = start_id[order]
    first = np.searchsorted(sorted_ids, end_id, side="left")
    count = np.searchsorted(sorted_ids, end_id, side="right") - first
    nxt = order[first]
    dx, dy = ex - sx, ey - sy
    ambiguous = np.nonzero(count == 2)[0]
    if len(ambiguous):
        second = order[first[ambiguous] + 1]
        cand = nxt[ambiguous]
        # left turn of (dx, dy) in y-down axes is (dy, -dx)
        want_x, want_y = dy[ambiguous], -dx[ambiguous]
        first_is_left = (dx[cand] == want_x) & (dy[cand] == want_y)
        nxt[ambiguous] = np.where(first_is_left, cand, second)
    return nxt


def _label_runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """4-connected components through horizontal runs: (row, start, end, component) per run."""
    p = np.pad(mask.astype(np.int8), ((0, 0), (1, 1)))
    d = np.diff(p, axis=1)
    rs, starts = np.nonzero(d == 1)
    re_, ends = np.nonzero(d == -1)
    assert np.array_equal(rs, re_)
    parent = np.arange(len(rs))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    row_first = np.searchsorted(rs, np.arange(mask.shape[0] + 1))
    for row in range(1, mask.shape[0]):
        i, i_end = row_first[row - 1], row_first[row]
        j, j_end = row_first[row], row_first[row + 1]
        while i < i_end and j < j_end:
            if starts[i] < ends[j] and starts[j] < ends[i]:
                a, b = find(i), find(j)
                if a != b:
                    parent[max(a, b)] = min(a, b)
            if ends[i] < ends[j]:
                i += 1
            else:
                j += 1
    roots = np.array([find(i) for i in range(len(rs))], dtype=np.int64)
    return rs, starts, ends, roots


def polygonize_numpy(mask: np.ndarray) -> list[ChangePolygon]:
    """Trace the polygons of a bool mask in pixel-corner coordinates, without rasterio."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return []
    height, width = mask.shape
    sx, sy, ex, ey = _boundary_edges(mask)
    nxt = _next_edges(sx, sy, ex, ey, width)
    rows, starts, ends, comp = _label_runs(mask)
    run_key = rows * (width + 1) + starts
    seen = np.zeros(len(sx), dtype=bool)
    dx, dy = ex - sx, ey - sy
    exteriors: dict[int, list[tuple[Ring, float]]] = {}
    holes: dict[int, list[tuple[Ring, float]]] = {}
    for e0 in range(len(sx)):
        if seen[e0]:
            continue
        chain = []
        e = e0
        while not seen[e]:
            seen[e] = True
            chain.append(e)
            e = nxt[e]
        # the change pixel on the left of the ring's first edge names its component
        if dy[e0] == 0:
            px_row, px_col = (sy[e0] - 1, sx[e0]) if dx[e0] > 0 else (sy[e0], ex[e0])
        else:
            px_row, px_col = (sy[e0], sx[e0]) if dy[e0] > 0 else (ey[e0], sx[e0] - 1)
        run = np.searchsorted(run_key, px_row * (width + 1) + px_col, side="right") - 1
        component = int(comp[run])
        for ring in _split_pinched(np.stack([sx[chain], sy[chain]], axis=1)):
            area = signed_area(ring)
            # change on the left in y-down axes: outer boundaries run clockwise on screen (area < 0)
            (exteriors if area < 0 else holes).setdefault(component, []).append((ring, area))
    polygons = []
    for component, parts in exteriors.items():
        if len(parts) != 1:
            raise AssertionError(f"component {component} has {len(parts)} outer rings")
        exterior, area = parts[0]
        inner = holes.get(component, [])
        pixels = round(abs(area) - sum(abs(a) for _, a in inner))
        polygons.append(ChangePolygon(exterior, [ring for ring, _ in inner], pixels))
    return polygons


def _split_pinched(vertices: np.ndarray) -> list[Ring]:
    """Split a closed vertex chain that passes a vertex twice (a diagonal pinch) into simple rings,
    as GDAL does (a hole may touch the outer ring at a point), and drop collinear vertices."""
    rings = []
    stack: list[tuple[int, int]] = []
    where: dict[tuple[int, int], int] = {}
    for vertex in map(tuple, vertices.tolist()):
        if vertex in where:
            cut = where[vertex]
            loop = stack[cut:]
            for v in loop[1:]:
                del where[v]
            del stack[cut + 1:]
            rings.append(loop)
        else:
            where[vertex] = len(stack)
            stack.append(vertex)
    if stack:
        rings.append(stack)
    out = []
    for loop in rings:
        pts = np.asarray(loop, dtype=np.float64)
        prev_dir = pts - np.roll(pts, 1, axis=0)
        next_dir = np.roll(pts, -1, axis=0) - pts
        keep = (np.sign(prev_dir) != np.sign(next_dir)).any(axis=1)
        pts = pts[keep]
        out.append(np.vstack([pts, pts[:1]]))
    return out


# --- rasterio -----------------------------------------------------------------------------------

def polygonize_rasterio(mask: np.ndarray) -> list[ChangePolygon]:
    """Polygons of a bool mask with ``rasterio.features.shapes`` (4-connectivity), in pixel coordinates."""
    from rasterio.features import shapes

    mask = np.asarray(mask, dtype=bool)
    polygons = []
    for geometry, _ in shapes(mask.astype(np.uint8), mask=mask, connectivity=4):
        rings = [np.asarray(ring, dtype=np.float64) for ring in geometry["coordinates"]]
        area = abs(signed_area(rings[0])) - sum(abs(signed_area(r)) for r in rings[1:])
        polygons.append(ChangePolygon(rings[0], rings[1:], round(area)))
    return polygons


def polygonize(mask: np.ndarray, backend: str = "auto") -> list[ChangePolygon]:
    """Change polygons of a bool mask: ``rasterio`` when installed (``auto``), else ``numpy``."""
    if backend == "auto":
        backend = "rasterio" if rasterio_available() else "numpy"
    if backend == "rasterio":
        return polygonize_rasterio(mask)
    if backend == "numpy":
        return polygonize_numpy(mask)
    raise ValueError(f"unknown polygonize backend '{backend}'; use auto, rasterio or numpy")


def polygonize_classes(values: np.ndarray, classes: ClassScheme, backend: str = "auto") -> list[ChangePolygon]:
    """Polygons of a class map (uint8 label values ``[H, W]``, 0 = no change), traced one change class at a time
    so that each region is one class (its :attr:`ChangePolygon.value`), in the class file's order."""
    values = np.asarray(values)
    polygons: list[ChangePolygon] = []
    for cls in classes.change_classes:
        where = values == cls.value
        if where.any():
            polygons += [dataclasses.replace(p, value=cls.value) for p in polygonize(where, backend)]
    return polygons


def _crs_member(georef: GeoReference) -> dict[str, Any] | None:
    if georef.crs is None:
        return None
    epsg = georef.crs.to_epsg()
    name = f"urn:ogc:def:crs:EPSG::{epsg}" if epsg else georef.crs.to_wkt()
    return {"type": "name", "properties": {"name": name}}


def polygons_to_geojson(polygons: Sequence[ChangePolygon], georef: GeoReference | None = None,
                        min_area: float = 0.0, classes: ClassScheme | None = None) -> dict[str, Any]:
    """A GeoJSON FeatureCollection of the polygons whose area is at least ``min_area``.

    Without ``georef`` coordinates and areas are in pixels; with it, in CRS units (areas squared).
    Exterior rings are counter-clockwise and holes clockwise in x/y axes, as RFC 7946 asks. Polygons of
    a class (:func:`polygonize_classes`) add ``class_value`` and ``class_name`` (from ``classes``).
    """
    unit_area = georef.pixel_area() if georef is not None else 1.0
    features = []
    for poly in sorted(polygons, key=lambda p: (float(p.exterior[:, 1].min()), float(p.exterior[:, 0].min()),
                                                -1 if p.value is None else p.value)):
        area = poly.pixels * unit_area
        if area < min_area:
            continue
        rings = [poly.exterior, *poly.holes]
        if georef is not None:
            t = georef.transform
            rings = [np.stack([t.a * r[:, 0] + t.b * r[:, 1] + t.c, t.d * r[:, 0] + t.e * r[:, 1] + t.f], axis=1)
                     for r in rings]
        rings = [_oriented(rings[0], True)] + [_oriented(r, False) for r in rings[1:]]
        coords = [[[float(x), float(y)] for x, y in ring] for ring in rings]
        features.append({
            "type": "Feature",
            "id": len(features),
            "geometry": {"type": "Polygon", "coordinates": coords},
            "properties": {"id": len(features), "area": area, "pixels": poly.pixels,
                           **_class_properties(poly.value, classes)},
        })
    collection: dict[str, Any] = {"type": "FeatureCollection", "features": features}
    if georef is not None and (crs := _crs_member(georef)) is not None:
        collection["crs"] = crs
    return collection


def _class_properties(value: int | None, classes: ClassScheme | None) -> dict[str, Any]:
    """``class_value`` and ``class_name`` of a class region (none for a binary change region)."""
    if value is None:
        return {}
    try:
        name = classes.name_of(value) if classes is not None else f"class {value}"
    except KeyError:
        name = f"class {value}"
    return {"class_value": int(value), "class_name": name}


def write_change_polygons(path: str | Path, mask: np.ndarray, georef: GeoReference | None = None,
                          min_area: float = 0.0, backend: str = "auto") -> int:
    """Polygonize ``mask`` and write the GeoJSON atomically; returns the number of polygons written."""
    return write_polygons(path, polygonize(mask, backend), georef, min_area)


def write_polygons(path: str | Path, polygons: Sequence[ChangePolygon], georef: GeoReference | None = None,
                   min_area: float = 0.0, classes: ClassScheme | None = None) -> int:
    """Write traced ``polygons`` (those of at least ``min_area``; class regions named by ``classes``) as GeoJSON
    atomically; returns how many."""
    collection = polygons_to_geojson(polygons, georef, min_area, classes)
    atomic_write_text(path, strict_json(collection, separators=(",", ":")))
    return len(collection["features"])
