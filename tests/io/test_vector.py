"""Change polygons: the numpy tracer against rasterio, holes, diagonal touches, areas and GeoJSON."""

from __future__ import annotations

import json

import numpy as np
import pytest
from affine import Affine

from mmchange_core.io.geo import GeoReference
from mmchange_core.io.vector import (
    polygonize_numpy,
    polygons_to_geojson,
    signed_area,
    write_change_polygons,
)


def _rasterize(polygon, shape) -> np.ndarray:
    """Pixel centres inside the polygon (even-odd rule over all rings)."""
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]] + 0.5
    inside = np.zeros(shape, dtype=bool)
    for ring in [polygon.exterior, *polygon.holes]:
        x0, y0, x1, y1 = ring[:-1, 0], ring[:-1, 1], ring[1:, 0], ring[1:, 1]
        for a, b, c, d in zip(x0, y0, x1, y1):
            crosses = ((b > yy) != (d > yy)) & (xx < (c - a) * (yy - b) / np.where(d == b, 1, d - b) + a)
            inside ^= crosses
    return inside


def _ring_set(polygons) -> set:
    return {(tuple(map(tuple, np.round(p.exterior[:-1]))), p.pixels) for p in polygons}


def test_square_with_hole_and_diagonal_neighbour() -> None:
    mask = np.zeros((12, 12), dtype=bool)
    mask[1:8, 1:8] = True
    mask[3:5, 3:5] = False          # a hole
    mask[8, 8] = True               # touches the square only diagonally: a separate region (4-connectivity)
    polygons = polygonize_numpy(mask)
    assert sorted(p.pixels for p in polygons) == [1, 45]
    big = max(polygons, key=lambda p: p.pixels)
    assert len(big.holes) == 1 and abs(signed_area(big.holes[0])) == 4
    assert len(big.exterior) == 5   # collinear vertices merged: 4 corners + closing point
    for poly in polygons:
        region = _rasterize(poly, mask.shape)
        assert region.sum() == poly.pixels and (mask | ~region).all()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_numpy_tracer_matches_rasterio_on_random_masks(seed) -> None:
    pytest.importorskip("rasterio")
    from mmchange_core.io.vector import polygonize_rasterio

    rng = np.random.default_rng(seed)
    mask = rng.random((60, 80)) > 0.55
    mask[10:40, 20:60] = rng.random((30, 40)) > 0.2       # a large blob with many holes
    ours, theirs = polygonize_numpy(mask), polygonize_rasterio(mask)
    assert len(ours) == len(theirs)
    assert sum(p.pixels for p in ours) == mask.sum() == sum(p.pixels for p in theirs)
    assert sorted(p.pixels for p in ours) == sorted(p.pixels for p in theirs)
    assert sorted(len(p.holes) for p in ours) == sorted(len(p.holes) for p in theirs)
    covered = np.zeros(mask.shape, dtype=int)
    for poly in ours:
        covered += _rasterize(poly, mask.shape)
    np.testing.assert_array_equal(covered, mask.astype(int))   # polygons tile the mask exactly, no overlaps


def test_geojson_min_area_orientation_and_crs(tmp_path) -> None:
    pytest.importorskip("rasterio")
    from rasterio.crs import CRS

    mask = np.zeros((20, 30), dtype=bool)
    mask[2:12, 3:13] = True         # 100 px
    mask[15:17, 20:22] = True       # 4 px
    plain = json.loads(json.dumps(polygons_to_geojson(polygonize_numpy(mask), min_area=5)))
    assert "crs" not in plain and len(plain["features"]) == 1
    ring = np.asarray(plain["features"][0]["geometry"]["coordinates"][0])
    assert ring.min(axis=0).tolist() == [3, 2] and ring.max(axis=0).tolist() == [13, 12]   # pixel corners
    assert signed_area(ring) > 0    # exterior counter-clockwise (RFC 7946)

    georef = GeoReference(CRS.from_epsg(32631), Affine(10, 0, 500000, 0, -10, 4600000))
    path = tmp_path / "changes.geojson"
    # min-area in squared map units: 100 px = 10,000 m^2, 4 px = 400 m^2
    assert write_change_polygons(path, mask, georef, min_area=1000) == 1
    data = json.loads(path.read_text())
    assert data["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::32631"
    feature = data["features"][0]
    assert feature["properties"] == {"id": 0, "area": 10000.0, "pixels": 100}
    ring = np.asarray(feature["geometry"]["coordinates"][0])
    assert ring[:, 0].min() == 500030 and ring[:, 1].max() == 4600000 - 20
    assert signed_area(ring) > 0
    assert write_change_polygons(path, mask, georef, min_area=0, backend="numpy") == 2


def test_empty_mask_gives_empty_collection(tmp_path) -> None:
    path = tmp_path / "none.geojson"
    assert write_change_polygons(path, np.zeros((8, 8), dtype=bool), backend="numpy") == 0
    assert json.loads(path.read_text()) == {"type": "FeatureCollection", "features": []}
