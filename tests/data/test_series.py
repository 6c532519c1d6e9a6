"""Reading a dated series: dates in file names, the three input forms (files, folder, CSV/JSON/STAC list),
every refusal as one line naming the file, and the co-registration check on the opened rasters."""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmchange_core.data.series import (
    DATE_PATTERN_HELP,
    DatedImage,
    check_coregistered,
    parse_date_in_name,
    read_series,
)
from mmchange_core.errors import InputError
from mmchange_core.io.raster import open_source

D = datetime.date


def _png(path: Path, size: tuple[int, int] = (8, 8)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((*size, 3), np.uint8)).save(path)
    return path


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


# --------------------------------------------------------------------------------------------------
# dates in file names


@pytest.mark.parametrize("name, expected", [
    ("site3_2021-06-01.tif", D(2021, 6, 1)),
    ("S2_20210601_T32.tif", D(2021, 6, 1)),
    ("2019_12_31.png", D(2019, 12, 31)),
    ("S2A_MSIL2A_20200229T103021_N0300.tif", D(2020, 2, 29)),  # a time after the date is not a digit run
    ("a_2021-06-01_copy_2021-06-01.png", D(2021, 6, 1)),  # the same date twice is one date
    (Path("/some/dir_1999-01-01/x_2021-06-01.png"), D(2021, 6, 1)),  # only the file name counts
])
def test_the_date_in_a_file_name(name: str | Path, expected: datetime.date) -> None:
    assert parse_date_in_name(name) == expected


@pytest.mark.parametrize("name, reason", [
    ("site3.tif", "site3.tif: no date in the file name"),
    ("site_2021-13-01.tif", "'2021-13-01' in the file name is not a valid date"),
    ("site_20210230.tif", "'20210230' in the file name is not a valid date"),
    ("x_20210601_20220601.tif", "2 different dates (20210601, 20220601)"),
    ("x_2021-06_01.tif", "no date"),  # mixed separators are no date
    ("x_120210601.tif", "no date"),  # 9 digits: part of a longer digit run
])
def test_names_without_exactly_one_valid_date_are_refused(name: str, reason: str) -> None:
    with pytest.raises(InputError) as exc:
        parse_date_in_name(name)
    assert reason in _one_line(exc) and DATE_PATTERN_HELP in str(exc.value)


# --------------------------------------------------------------------------------------------------
# files given one by one


def test_files_in_date_order(tmp_path: Path) -> None:
    paths = [_png(tmp_path / n) for n in ("a_2019-06-01.png", "b_20200601.png", "c_2021_06_01.png")]
    series = read_series([str(p) for p in paths])
    assert series == [DatedImage(paths[0], D(2019, 6, 1)), DatedImage(paths[1], D(2020, 6, 1)),
                      DatedImage(paths[2], D(2021, 6, 1))]


def test_files_out_of_order_or_with_one_date_twice_are_refused(tmp_path: Path) -> None:
    a, b, c = (_png(tmp_path / f"s_{y}-06-01.png") for y in (2019, 2020, 2021))
    with pytest.raises(InputError, match="out of date order") as exc:
        read_series([a, c, b])
    assert f"{b} (2020-06-01) is given after {c} (2021-06-01)" in _one_line(exc)
    twin = _png(tmp_path / "other_20200601.png")
    with pytest.raises(InputError, match="same date 2020-06-01") as exc:
        read_series([a, b, twin, c])
    assert str(b) in _one_line(exc) and str(twin) in str(exc.value)


def test_files_need_three_dates_and_must_exist(tmp_path: Path) -> None:
    a, b = (_png(tmp_path / f"s_{y}-06-01.png") for y in (2019, 2020))
    with pytest.raises(InputError) as exc:
        read_series([a, b])
    assert _one_line(exc) == ("a series needs at least 3 dated images, got 2; for two dates use "
                              "'mmchange predict A B'")
    with pytest.raises(InputError, match="at least 3 dated images, got 1"):
        read_series([a])
    missing = tmp_path / "s_2021-06-01.png"
    with pytest.raises(InputError, match=f"image not found: {missing}"):
        read_series([a, b, missing])
    with pytest.raises(InputError, match="no date in the file name"):
        read_series([a, b, _png(tmp_path / "undated.png")])
    with pytest.raises(InputError, match=r"not found: .*nowhere; give a folder"):
        read_series([tmp_path / "nowhere"])
    with pytest.raises(InputError, match="no images given"):
        read_series([])


def test_a_fifo_is_refused_without_being_opened(tmp_path: Path) -> None:
    a, b = (_png(tmp_path / f"s_{y}-06-01.png") for y in (2019, 2020))
    fifo = tmp_path / "s_2021-06-01.png"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="not a regular file"):
        read_series([a, b, fifo])
    with pytest.raises(InputError, match="not a regular file"):
        read_series([tmp_path])


# --------------------------------------------------------------------------------------------------
# one folder


def test_a_folder_is_sorted_by_date_and_holds_only_images(tmp_path: Path) -> None:
    folder = tmp_path / "site"
    c = _png(folder / "c_2018-06-01.png")
    a = _png(folder / "z_20210601.tif")
    b = _png(folder / "a_2020_06_01.jpg")
    (folder / "notes.txt").write_text("not an image")
    (folder / "series.json").write_text("{}")
    _png(folder / ".hidden.png")  # hidden: left out (no date needed)
    _png(folder / "sub" / "undated.png")  # not recursive
    (folder / "dir_2022-01-01.png").mkdir()  # a folder with an image name is no image
    series = read_series([folder])
    assert [s.path for s in series] == [c, b, a]
    assert [s.date for s in series] == [D(2018, 6, 1), D(2020, 6, 1), D(2021, 6, 1)]


def test_folder_refusals(tmp_path: Path) -> None:
    folder = tmp_path / "site"
    for year in (2019, 2020, 2021):
        _png(folder / f"s_{year}-06-01.png")
    undated = _png(folder / "first_change.png")
    with pytest.raises(InputError) as exc:
        read_series([folder])
    assert _one_line(exc).startswith(f"{undated}: no date in the file name")
    undated.unlink()
    twin = _png(folder / "t_20200601.png")
    with pytest.raises(InputError, match="same date 2020-06-01") as exc:
        read_series([folder])
    assert str(folder / "s_2020-06-01.png") in _one_line(exc) and str(twin) in str(exc.value)
    twin.unlink()
    (folder / "s_2021-06-01.png").unlink()
    with pytest.raises(InputError, match=f"at least 3 dated images, got 2 in folder {folder}; for two dates use"):
        read_series([folder])
    bad = _png(folder / "s_2021-02-30.png")
    with pytest.raises(InputError, match="'2021-02-30' in the file name is not a valid date"):
        read_series([folder])
    bad.unlink()


# --------------------------------------------------------------------------------------------------
# CSV, JSON and STAC lists


@pytest.fixture
def images(tmp_path: Path) -> list[Path]:
    """Three undated images in a subfolder (a list gives their dates)."""
    return [_png(tmp_path / "img" / f"{name}.png") for name in ("one", "two", "three")]


def test_csv_list_relative_paths_datetimes_and_sorted(tmp_path: Path, images: list[Path]) -> None:
    listing = tmp_path / "series.csv"
    listing.write_text("Image,date,cloud\n"
                       "img/two.png,2020-06-01T10:30:00Z,3\n"
                       "\n"
                       f"{images[0]},2019-06-01,0\n"
                       "img/three.png,2021-06-01T23:30:00-05:00,1\n")
    series = read_series([listing])
    assert [s.path.resolve() for s in series] == [p.resolve() for p in images]
    # an ISO datetime gives its own (local) date, not the UTC one
    assert [s.date for s in series] == [D(2019, 6, 1), D(2020, 6, 1), D(2021, 6, 1)]


def test_json_list_of_objects(tmp_path: Path, images: list[Path]) -> None:
    listing = tmp_path / "series.json"
    listing.write_text(json.dumps([{"path": "img/three.png", "date": "2021-06-01"},
                                   {"path": "img/one.png", "date": "2019-06-01", "note": "x"},
                                   {"path": str(images[1]), "date": "2020-06-01T00:00:00"}]))
    series = read_series([str(listing)])
    assert [s.path.name for s in series] == ["one.png", "two.png", "three.png"]
    assert [s.date.year for s in series] == [2019, 2020, 2021]


def _item(name: str, assets: dict, **properties) -> dict:
    return {"type": "Feature", "stac_version": "1.1.0", "id": name, "geometry": None,
            "properties": properties, "links": [], "assets": assets}


def test_stac_item_collection_and_list_of_items(tmp_path: Path, images: list[Path]) -> None:
    spaced = _png(tmp_path / "img" / "site #3.png")
    items = [
        # role data wins over other assets
        _item("a", {"thumb": {"href": "img/two.png", "roles": ["thumbnail"]},
                    "B04": {"href": "img/three.png", "roles": ["data"]}}, datetime="2021-06-01T10:00:00Z"),
        # no role data: the key 'image'; no datetime: start_datetime
        _item("b", {"image": {"href": "img/one.png"}, "meta": {"href": "meta.xml"}}, datetime=None,
              start_datetime="2019-06-01T00:00:00Z", end_datetime="2019-06-30T00:00:00Z"),
        # the only asset with an image suffix, percent-encoded
        _item("c", {"x": {"href": "img/site%20%233.png"}, "meta": {"href": "meta.xml"}}, datetime="2020-06-01"),
        # an absolute file:// URL
        _item("d", {"visual": {"href": images[1].resolve().as_uri()}}, datetime="2022-06-01T00:00:00Z"),
    ]
    collection = tmp_path / "items.json"
    collection.write_text(json.dumps({"type": "FeatureCollection", "features": items}))
    plain = tmp_path / "list.json"
    plain.write_text(json.dumps(items))
    for listing in (collection, plain):
        series = read_series([listing])
        assert [(s.path.name, s.date) for s in series] == [
            ("one.png", D(2019, 6, 1)), (spaced.name, D(2020, 6, 1)), ("three.png", D(2021, 6, 1)),
            ("two.png", D(2022, 6, 1))]


def test_stac_refusals(tmp_path: Path, images: list[Path]) -> None:
    listing = tmp_path / "items.json"

    def refused(*items: dict) -> str:
        listing.write_text(json.dumps({"type": "FeatureCollection", "features": list(items)}))
        with pytest.raises(InputError) as exc:
            read_series([listing])
        return _one_line(exc)

    ok = [_item(n, {"image": {"href": f"img/{n}.png"}}, datetime=f"{y}-06-01") for n, y in
          (("one", 2019), ("two", 2020))]
    message = refused(*ok, _item("three", {"a": {"href": "img/three.png"}, "b": {"href": "img/one.png"}},
                                 datetime="2021-06-01"))
    assert f"{listing} item 3 (three): cannot tell which asset" in message and "role 'data'" in message
    message = refused(*ok, _item("three", {"image": {"href": "https://example.com/three.png"}},
                                 datetime="2021-06-01"))
    assert "https://example.com/three.png is not a local file" in message
    message = refused(*ok, _item("three", {"image": {"href": "img/three.png"}}, datetime=None))
    assert f"{listing} item 3 (three): the date of {images[2]} is missing" in message


def test_list_refusals(tmp_path: Path, images: list[Path]) -> None:
    listing = tmp_path / "series.csv"

    def refused(text: str) -> str:
        listing.write_text(text)
        with pytest.raises(InputError) as exc:
            read_series([listing])
        return _one_line(exc)

    rows = "img/one.png,2019-06-01\nimg/two.png,2020-06-01\n"
    assert "a series needs at least 3 dated images, got 2 in list" in refused("path,date\n" + rows)
    message = refused("path,date\n" + rows + "img/three.png,June 2021\n")
    assert f"{listing} line 4: the date of {images[2]} 'June 2021' is not an ISO date" in message
    message = refused("path,date\n" + rows + "img/three.png,2021-13-01\n")
    assert "'2021-13-01' is not an ISO date" in message
    message = refused("path,date\n" + rows + "img/three.png,\n")
    assert f"line 4: the date of {images[2]} is missing" in message
    message = refused("path,date\n" + rows + "img/four.png,2021-06-01\n")
    assert f"{listing} line 4: path img/four.png not found" in message
    message = refused("path,date\n" + rows + "img/three.png,2020-06-01T12:00:00\n")
    assert "same date 2020-06-01" in message and "two.png" in message and "three.png" in message
    assert "no 'date' column" in refused("path,when\n" + rows)
    assert "no path column" in refused("file,date\n" + rows)
    assert "both 'path' and 'image'" in refused("path,image,date\n")
    assert "line 2 has 3 cells" in refused("path,date\nimg/one.png,2019-06-01,x\n")
    listing = tmp_path / "series.json"
    assert "not valid JSON" in refused("[{")
    assert "must hold a JSON list" in refused('{"path": "img/one.png"}')
    assert "item 1: no 'date' column" in refused('[{"path": "img/one.png"}]')
    missing = tmp_path / "missing.csv"
    with pytest.raises(InputError, match=f"series list not found: {missing}"):
        read_series([missing])


# --------------------------------------------------------------------------------------------------
# co-registration


def _geotiff(path: Path, size: tuple[int, int] = (16, 16), epsg: int = 32632, x0: float = 500000.0) -> Path:
    rasterio = pytest.importorskip("rasterio")
    from affine import Affine
    from rasterio.crs import CRS

    height, width = size
    with rasterio.open(path, "w", driver="GTiff", height=height, width=width, count=3, dtype="uint8",
                       crs=CRS.from_epsg(epsg), transform=Affine(0.5, 0, x0, 0, -0.5, 5200000.0)) as dst:
        dst.write(np.zeros((3, height, width), np.uint8))
    return path


def _check(paths: list[Path]):
    sources = [open_source(p) for p in paths]
    try:
        return check_coregistered(sources, paths)
    finally:
        for source in sources:
            source.close()


def test_coregistered_geotiffs_give_their_grid(tmp_path: Path) -> None:
    paths = [_geotiff(tmp_path / f"s_{y}-06-01.tif") for y in (2019, 2020, 2021)]
    georef = _check([s.path for s in read_series([tmp_path])])
    assert georef is not None and georef.crs_name() == "EPSG:32632" and georef.transform.c == 500000.0
    plain = [_png(tmp_path / "png" / f"s_{y}.png") for y in (2019, 2020, 2021)]
    assert _check(plain) is None
    assert _check(paths[:1]) is not None and check_coregistered([], []) is None


@pytest.mark.parametrize("odd, reason", [
    (dict(size=(16, 12)), "size mismatch: {odd} is 12x16 but {first} is 16x16"),
    (dict(epsg=32633), "{first} and {odd} have different CRS (EPSG:32632 vs EPSG:32633)"),
    (dict(x0=500001.0), "{first} and {odd} have different geotransforms"),
])
def test_a_date_off_the_first_grid_is_refused(tmp_path: Path, odd: dict, reason: str) -> None:
    first = _geotiff(tmp_path / "s_2019-06-01.tif")
    middle = _geotiff(tmp_path / "s_2020-06-01.tif")
    off = _geotiff(tmp_path / "s_2021-06-01.tif", **odd)
    with pytest.raises(InputError) as exc:
        _check([first, middle, off])
    message = _one_line(exc)
    assert reason.format(first=first, odd=off) in message and "co-registered" in message
    assert str(middle) not in message


def test_the_grid_comes_from_the_first_georeferenced_date(tmp_path: Path) -> None:
    plain = _png(tmp_path / "s_2019-06-01.png", size=(16, 16))  # no georeference: compared by size only
    geo = _geotiff(tmp_path / "s_2020-06-01.tif")
    off = _geotiff(tmp_path / "s_2021-06-01.tif", epsg=32633)
    assert _check([plain, geo, _geotiff(tmp_path / "s_2022-06-01.tif")]) is not None
    with pytest.raises(InputError) as exc:
        _check([plain, geo, off])
    assert f"{geo} and {off} have different CRS" in _one_line(exc) and f"with the first ({plain})" in str(exc.value)
