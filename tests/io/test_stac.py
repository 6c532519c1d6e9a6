"""The STAC Item of a prediction: assets, footprint, projection, dates and model, read back with pystac."""

from __future__ import annotations

import hashlib
import json
import sys

import numpy as np
import pytest

rasterio = pytest.importorskip("rasterio")
pystac = pytest.importorskip("pystac")
from rasterio.crs import CRS  # noqa: E402
from rasterio.transform import from_origin  # noqa: E402

from mmchange_core.errors import InputError  # noqa: E402
from mmchange_core.io.geo import GeoReference  # noqa: E402
from mmchange_core.io.raster import write_image  # noqa: E402
from mmchange_core.io.stac import (  # noqa: E402
    file_sha256,
    require_pystac,
    stac_problems,
    write_stac_item,
)

UTM31 = CRS.from_epsg(32631)
#: The west edge lies on zone 31's central meridian (3 degrees east), so its longitude is exactly 3.
GEOREF = GeoReference(UTM31, from_origin(500000.0, 4600000.0, 10.0, 10.0))
H, W = 60, 80


def _geotiff(path, date: str | None = None, crs=UTM31) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", height=H, width=W, count=3, dtype="uint8", crs=crs,
                       transform=GEOREF.transform) as dst:
        dst.write(np.zeros((3, H, W), np.uint8))
        if date:
            dst.update_tags(TIFFTAG_DATETIME=date)


@pytest.fixture
def prediction(tmp_path):
    """Two dated GeoTIFF inputs, a checkpoint file and the outputs of one pair."""
    _geotiff(tmp_path / "A" / "tile.tif", "2019:06:01 10:30:00")
    _geotiff(tmp_path / "B" / "tile.tif", "2021:07:15 11:00:00")
    checkpoint = tmp_path / "model.safetensors"
    checkpoint.write_bytes(b"weights" * 100)
    out = tmp_path / "out"
    write_image(out / "tile.tif", np.zeros((H, W), np.uint8), GEOREF)
    write_image(out / "prob" / "tile.tif", np.zeros((H, W), np.float32), GEOREF)
    (out / "tile.geojson").write_text('{"type": "FeatureCollection", "features": []}')
    write_image(out / "overlay.png", np.zeros((H, W, 3), np.uint8))
    return tmp_path, checkpoint, out


def test_item_round_trips_with_assets_footprint_projection_and_model(prediction) -> None:
    root, checkpoint, out = prediction
    model = {"checkpoint": checkpoint.name, "checkpoint_sha256": hashlib.sha256(checkpoint.read_bytes()).hexdigest(),
             "threshold": 0.4, "tile_size": 256, "overlap": 32, "mmchange_version": "9.9"}
    item_path = write_stac_item(
        out / "tile.stac.json", name="tile", inputs=[root / "A" / "tile.tif", root / "B" / "tile.tif"], georef=GEOREF,
        model=model, assets={"mask": out / "tile.tif", "prob": out / "prob" / "tile.tif",
                             "vector": out / "tile.geojson", "overlay": out / "overlay.png"},
        properties={"mmchange:changed_fraction": 0.0})
    raw = json.loads(item_path.read_text())
    assert raw["assets"]["image_a"]["href"] == "../A/tile.tif" and raw["assets"]["prob"]["href"] == "prob/tile.tif"
    assert stac_problems(item_path) == []

    item = pystac.Item.from_file(str(item_path))
    assert item.id == "tile"
    assert set(item.assets) == {"image_a", "image_b", "mask", "prob", "vector", "overlay"}
    for key, path in (("mask", out / "tile.tif"), ("image_b", root / "B" / "tile.tif")):
        assert item.assets[key].get_absolute_href() == str(path)
    assert item.assets["mask"].media_type == pystac.MediaType.COG and item.assets["mask"].roles == ["data"]
    assert item.assets["vector"].media_type == pystac.MediaType.GEOJSON
    assert item.assets["overlay"].roles == ["overview", "visual"] and item.assets["image_a"].roles == ["source"]

    west, south, east, north = item.bbox
    assert west == pytest.approx(3.0) and north == pytest.approx(41.5517, abs=1e-3)
    assert east > west and north > south and item.geometry["type"] == "Polygon"
    proj = item.properties
    assert proj["proj:code"] == "EPSG:32631" and proj["proj:shape"] == [H, W]
    assert proj["proj:transform"] == [10.0, 0.0, 500000.0, 0.0, -10.0, 4600000.0]
    assert proj["proj:bbox"] == [500000.0, 4600000.0 - 10 * H, 500000.0 + 10 * W, 4600000.0]

    assert item.datetime is None
    assert proj["start_datetime"] == "2019-06-01T10:30:00Z" and proj["end_datetime"] == "2021-07-15T11:00:00Z"
    assert proj["mmchange:checkpoint"] == "model.safetensors" and proj["mmchange:threshold"] == 0.4
    assert proj["mmchange:checkpoint_sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert (proj["mmchange:tile_size"], proj["mmchange:overlap"], proj["mmchange:mmchange_version"]) == (256, 32, "9.9")
    assert proj["mmchange:changed_fraction"] == 0.0


def test_item_without_georeference_or_dates(tmp_path) -> None:
    for sub in ("A", "B"):
        write_image(tmp_path / sub / "x.png", np.zeros((H, W, 3), np.uint8))
    write_image(tmp_path / "x.png", np.zeros((H, W), np.uint8))
    item_path = write_stac_item(tmp_path / "x.json", name="x", inputs=[tmp_path / "A" / "x.png", tmp_path / "B" / "x.png"],
                                georef=None, model={}, assets={"mask": tmp_path / "x.png"})
    assert stac_problems(item_path) == []
    item = pystac.Item.from_file(str(item_path))
    assert item.geometry is None and item.bbox is None and item.stac_extensions == []
    assert item.datetime is not None and item.properties["datetime"] == item.properties["created"]
    assert item.assets["mask"].media_type == pystac.MediaType.PNG


def test_a_crs_without_epsg_code_is_written_as_wkt2(prediction) -> None:
    root, _, out = prediction
    custom = CRS.from_proj4("+proj=tmerc +lat_0=0 +lon_0=3.1 +k=0.9996 +x_0=500000 +y_0=0 +ellps=GRS80 +units=m")
    item_path = write_stac_item(out / "custom.json", name="c", inputs=[root / "A" / "tile.tif"] * 2,
                                georef=GeoReference(custom, GEOREF.transform), model={}, assets={},
                                shape=(H, W))
    props = json.loads(item_path.read_text())["properties"]
    assert props["proj:code"] is None and CRS.from_wkt(props["proj:wkt2"]) == custom
    assert stac_problems(item_path) == []


def test_core_schema_check_catches_a_broken_item(prediction) -> None:
    pytest.importorskip("jsonschema")
    root, _, out = prediction
    item_path = write_stac_item(out / "i.json", name="i", inputs=[root / "A" / "tile.tif"] * 2, georef=GEOREF,
                                model={}, assets={"mask": out / "tile.tif"})
    data = json.loads(item_path.read_text())
    del data["properties"]["start_datetime"]        # datetime null needs both start and end
    data["properties"]["proj:shape"] = [H]
    item_path.write_text(json.dumps(data))
    problems = stac_problems(item_path)
    assert any(p.startswith("core Item schema") for p in problems) and "proj:shape is not [rows, columns]" in problems


def test_file_sha256_follows_changes(tmp_path) -> None:
    path = tmp_path / "w.bin"
    path.write_bytes(b"one")
    assert file_sha256(path) == hashlib.sha256(b"one").hexdigest()
    path.write_bytes(b"three")
    assert file_sha256(path) == hashlib.sha256(b"three").hexdigest()
    with pytest.raises(InputError, match="cannot read"):
        file_sha256(tmp_path / "missing.bin")


def test_bad_item_names_and_missing_pystac(tmp_path, monkeypatch) -> None:
    with pytest.raises(InputError, match="name it with .json"):
        write_stac_item(tmp_path / "x.xml", name="x", inputs=[], georef=None, model={}, assets={}, shape=(1, 1))
    monkeypatch.setitem(sys.modules, "pystac", None)
    with pytest.raises(InputError, match=r"pystac is not installed \(required for .*\); install it with: pip install \"mmchange\[cog\]\""):
        require_pystac("the STAC item x.json")


@pytest.mark.parametrize("name", ["site #3.tif", "q?x=1%20&y.png", "a b/c d.png", "données été.png",
                                  "a:b [1] 100%.png", "#.png"])
def test_asset_hrefs_are_url_references_that_resolve_to_the_files(name: str, tmp_path) -> None:
    """Resolved against the Item's URL and unquoted, as a STAC client does, every href names its own file."""
    from pathlib import Path
    from urllib.parse import unquote, urljoin, urlsplit

    out = tmp_path / "out #1"
    inputs = [tmp_path / "in?" / "A" / name, tmp_path / "in?" / "B" / name]
    mask = out / f"mask {name}"
    for path in (*inputs, mask):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    item_path = write_stac_item(out / "item.json", name="pair", inputs=inputs, georef=None,
                                model={"checkpoint": "m.safetensors"}, assets={"mask": mask}, shape=(H, W))
    hrefs = {key: asset["href"] for key, asset in json.loads(item_path.read_text())["assets"].items()}
    base = item_path.as_uri()
    for key, path in (("image_a", inputs[0]), ("image_b", inputs[1]), ("mask", mask)):
        parts = urlsplit(urljoin(base, hrefs[key]))
        assert parts.scheme == "file" and not parts.query and not parts.fragment, hrefs[key]
        assert Path(unquote(parts.path)) == path, hrefs[key]
        assert not any(c in hrefs[key] for c in " #?:") and not hrefs[key].startswith("/")
    assert stac_problems(item_path) == []
