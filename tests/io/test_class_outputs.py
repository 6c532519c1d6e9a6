"""Class rasters of K-class networks, piece by piece: staged palette PNG and COG colour table, polygons per class,
per-class summary areas, the class overlay and its legend, the STAC classification fields; binary unchanged."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from mmchange_core.inference.pair_writer import finish_mask
from mmchange_core.inference.summary import summarize_change
from mmchange_core.io.classes import ChangeClass, ClassScheme
from mmchange_core.io.cog import StagedRaster
from mmchange_core.io.raster import ArraySource
from mmchange_core.io.vector import polygonize, polygonize_classes, polygons_to_geojson
from mmchange_core.reporting.overlay import overlay_picture

rasterio = pytest.importorskip("rasterio")
from rasterio.crs import CRS  # noqa: E402
from rasterio.transform import from_origin  # noqa: E402

from mmchange_core.io.geo import GeoReference  # noqa: E402

SCHEME = ClassScheme((ChangeClass(0, "no change", (0, 0, 0)), ChangeClass(3, "new building", (230, 25, 75)),
                      ChangeClass(8, "demolished building", (0, 130, 200))))
#: 10 m pixels (100 m² each) in UTM 32N.
GEOREF = GeoReference(CRS.from_epsg(32632), from_origin(600000.0, 5000000.0, 10.0, 10.0))


def class_map() -> np.ndarray:
    """60 x 80: a 10 x 20 block of class 3, two 5 x 5 blocks of class 8 (one touching the first block)."""
    values = np.zeros((60, 80), np.uint8)
    values[10:20, 10:30] = 3
    values[10:15, 30:35] = 8          # 4-adjacent to the class-3 block: a region of its own
    values[40:45, 60:65] = 8
    return values


def staged(path, values: np.ndarray, invalid: np.ndarray | None = None):
    stage = StagedRaster.create(path, *values.shape, np.uint8)
    stage.write(0, values)
    bad = None
    if invalid is not None:
        bad = StagedRaster.create(path, *values.shape, bool, part="invalid")
        bad.write(0, invalid)
    return stage, bad


def test_a_class_png_is_a_palette_image_of_the_values_with_the_class_names(tmp_path) -> None:
    values = class_map()
    stage, _ = staged(tmp_path / "m.png", values)
    finish_mask(stage, None, None, SCHEME)
    with Image.open(tmp_path / "m.png") as img:
        assert img.mode == "P" and img.getpalette()[:768] == SCHEME.palette()
        np.testing.assert_array_equal(np.asarray(img), values)
        assert json.loads(img.text["MMCHANGE_CLASSES"])[2] == {"value": 8, "name": "demolished building",
                                                              "colour": [0, 130, 200]}
        assert img.convert("RGB").getpixel((12, 12)) == (230, 25, 75)


def test_a_class_cog_has_a_colour_table_names_and_nodata(tmp_path) -> None:
    from mmchange_core.io.cog import validate_cog

    values = class_map()
    invalid = np.zeros(values.shape, bool)
    invalid[:12] = True
    stage, bad = staged(tmp_path / "m.tif", values, invalid)
    finish_mask(stage, GEOREF, bad, SCHEME, tags={"MMCHANGE_DATE_A": "2020-01-01"})
    bad.abort()
    assert validate_cog(tmp_path / "m.tif") == []
    with rasterio.open(tmp_path / "m.tif") as ds:
        assert ds.colormap(1)[3] == (230, 25, 75, 255) and ds.colormap(1)[8] == (0, 130, 200, 255)
        assert ds.tags()["MMCHANGE_CLASS_8"] == "demolished building"
        assert ds.tags()["MMCHANGE_DATE_A"] == "2020-01-01"
        assert json.loads(ds.tags()["MMCHANGE_CLASSES"]) == SCHEME.to_dict()["classes"]
        read = ds.read(1)
        np.testing.assert_array_equal(ds.dataset_mask() == 0, invalid)
    np.testing.assert_array_equal(read, np.where(invalid, 0, values))
    assert SCHEME.raster_tags()["MMCHANGE_CLASS_0"] == "no change"


def test_a_binary_mask_is_finished_as_before(tmp_path) -> None:
    mask = (class_map() > 0).astype(np.uint8) * 255
    stage, _ = staged(tmp_path / "m.png", mask)
    finish_mask(stage, None, None, None)
    with Image.open(tmp_path / "m.png") as img:
        assert img.mode == "L" and not img.text
        np.testing.assert_array_equal(np.asarray(img), mask)
    stage, _ = staged(tmp_path / "m.tif", mask)
    finish_mask(stage, GEOREF, None, None)
    with rasterio.open(tmp_path / "m.tif") as ds:
        with pytest.raises(ValueError):
            ds.colormap(1)                                   # no colour table
        assert "MMCHANGE_CLASSES" not in ds.tags()


def test_polygons_are_traced_per_class_and_carry_the_class() -> None:
    values = class_map()
    polygons = polygonize_classes(values, SCHEME)
    assert [(p.value, p.pixels) for p in polygons] == [(3, 200), (8, 25), (8, 25)]
    features = polygons_to_geojson(polygons, GEOREF, min_area=0, classes=SCHEME)["features"]
    assert [(f["properties"]["class_value"], f["properties"]["class_name"]) for f in features] == [
        (3, "new building"), (8, "demolished building"), (8, "demolished building")]
    assert features[0]["properties"]["area"] == 200 * 100.0
    binary = polygons_to_geojson(polygonize(values > 0), GEOREF)["features"]
    assert len(binary) == 2 and all(set(f["properties"]) == {"id", "area", "pixels"} for f in binary)


def test_summary_gives_the_area_of_each_class() -> None:
    values = class_map()
    summary = summarize_change(values, GEOREF, classes=SCHEME)
    assert summary.changed_pixels == 250 and summary.polygons == 3
    by_value = {c["value"]: c for c in summary.classes}
    assert by_value[3]["pixels"] == 200 and by_value[8]["pixels"] == 50
    assert by_value[3]["area"] == pytest.approx(20000.0) and by_value[3]["area_text"] == "2.00 ha"
    assert by_value[8]["area_text"] == "5,000 m²"
    assert sum(c["area"] for c in summary.classes) == pytest.approx(summary.area)
    assert summary.largest["class_name"] == "new building" and summary.largest["pixels"] == 200
    assert summary.text.endswith("By class: new building 2.00 ha (4.2%), demolished building 5,000 m² (1.0%).")
    assert "the largest, 2.00 ha of new building, is" in summary.text
    assert summary.to_dict()["classes"] == summary.classes
    assert "classes" not in summarize_change(values > 0, GEOREF).to_dict()   # binary: no class key
    none = summarize_change(np.zeros((4, 4), np.uint8), classes=SCHEME)
    assert [c["pixels"] for c in none.classes] == [0, 0] and "By class" not in none.text


def test_the_class_overlay_draws_each_class_and_a_legend_of_names() -> None:
    values = class_map()
    grey = np.full((60, 80, 3), 128, np.uint8)
    picture = overlay_picture(ArraySource(grey, "a"), ArraySource(grey, "b"), values, classes=SCHEME)
    binary = overlay_picture(ArraySource(grey, "a"), ArraySource(grey, "b"), values > 0)
    assert picture.shape == binary.shape
    unchanged = overlay_picture(ArraySource(grey, "a"), ArraySource(grey, "b"), np.zeros_like(values), classes=SCHEME)
    for cls in SCHEME.change_classes:  # outlines beyond the legend swatches, which both pictures have
        swatch = (unchanged == cls.colour).all(axis=2).sum()
        assert swatch > 0 and (picture == cls.colour).all(axis=2).sum() > swatch + 50, cls.name
    assert not (picture == (255, 0, 0)).all(axis=2).any()
    assert (binary == (255, 0, 0)).all(axis=2).any()
    # the key differs from the binary one: class swatches and names instead of one outline colour
    key_rows = slice(picture.shape[0] - 40, picture.shape[0])
    assert not np.array_equal(picture[key_rows], binary[key_rows])


def test_stac_items_list_the_classes_of_class_rasters(tmp_path) -> None:
    pytest.importorskip("pystac")
    from mmchange_core.io.stac import stac_problems, write_stac_item

    mask = tmp_path / "m.png"
    Image.fromarray(class_map()).save(mask)
    item = write_stac_item(tmp_path / "m.stac.json", name="m", inputs=[mask, mask], georef=None, model={},
                           assets={"mask": mask}, classes=SCHEME)
    data = json.loads(item.read_text())
    assert data["assets"]["mask"]["classification:classes"] == [
        {"value": 0, "name": "no_change", "title": "no change", "color_hint": "000000"},
        {"value": 3, "name": "new_building", "title": "new building", "color_hint": "E6194B"},
        {"value": 8, "name": "demolished_building", "title": "demolished building", "color_hint": "0082C8"}]
    assert any("classification" in uri for uri in data["stac_extensions"])
    assert stac_problems(item) == []
    plain = json.loads(write_stac_item(tmp_path / "b.stac.json", name="b", inputs=[mask, mask], georef=None,
                                       model={}, assets={"mask": mask}).read_text())
    assert "classification:classes" not in plain["assets"]["mask"] and not plain.get("stac_extensions")
