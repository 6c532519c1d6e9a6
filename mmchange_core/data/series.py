"""A dated series of images of one place: the three ways a user gives it, read into dated images.

A series is given as

* three or more image files, in date order, each carrying its date in its file name;
* one folder: every image in it (``.png``, ``.jpg``, ``.tif``, ...; not its subfolders nor hidden
  files), each carrying its date in its file name, sorted by date;
* one list, ``.csv`` or ``.json``. CSV: a header with a path column (``path`` or ``image``) and a
  ``date`` column (an ISO date ``2021-06-01`` or an ISO datetime, whose date is taken), one image per
  row; other columns are ignored. JSON: a list of objects with the same keys, or STAC Items (a STAC
  ItemCollection or a list of Items): the date is ``properties.datetime``, else
  ``properties.start_datetime``; the image is the asset with the role ``data`` or the key ``image`` or
  ``visual``, else the only asset whose href names an image file. Relative paths and hrefs are
  resolved against the list file's folder. Rows are sorted by date.

The date in a file name (:func:`parse_date_in_name`) is ``YYYY-MM-DD``, ``YYYY_MM_DD`` or ``YYYYMMDD``
(eight digits that are not part of a longer run of digits) anywhere in the name without its suffix:
``site3_2021-06-01.tif``, ``S2_20210601_T32.tif``. A name must carry exactly one date.

Every date must be distinct, and a series has at least three images (two dates are a pair: ``mmchange
predict A B``). Every refusal is one :class:`InputError` line naming the file (and the list and row).
:func:`check_coregistered` then checks, on the opened rasters, that every date lies on the first one's grid.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

from mmchange_core.data.pair_list import PAIR_LIST_SUFFIXES, listed_file
from mmchange_core.errors import InputError
from mmchange_core.io.geo import GeoReference, check_same_georeference
from mmchange_core.io.images import IMAGE_SUFFIXES, check_regular_file
from mmchange_core.io.jsonio import read_json_file
from mmchange_core.io.raster import RasterSource
from mmchange_core.io.stac import parse_datetime

#: Fewest images of a series.
MIN_DATES = 3
#: How to give the dates of a series, quoted by every message about a missing or bad date.
DATE_PATTERN_HELP = ("name each image with its date as YYYY-MM-DD, YYYY_MM_DD or YYYYMMDD (e.g. site_2021-06-01.tif) "
                     "or list the images with a date column (CSV/JSON/STAC)")
#: A date in a file name: four digits, two, two, joined by one separator used twice (``-``, ``_`` or none),
#: not inside a longer run of digits.
_DATE_IN_NAME = re.compile(r"(?<!\d)(\d{4})([-_]?)(\d{2})\2(\d{2})(?!\d)")
#: The columns (keys) of a series list that name the image, and the one with its date.
PATH_COLUMNS = ("path", "image")
DATE_COLUMN = "date"
#: Asset keys of a STAC Item taken as the image when no asset has the role ``data``.
_STAC_IMAGE_KEYS = ("image", "visual")


@dataclass(frozen=True)
class DatedImage:
    """One date of a series: the image file and the date it was taken (what a time-series command reads)."""

    path: Path
    date: datetime.date


def parse_date_in_name(path: str | Path) -> datetime.date:
    """The one date carried by a file's name (see the module docstring), or an :class:`InputError` naming it."""
    path = Path(path)
    found: dict[datetime.date, str] = {}
    for match in _DATE_IN_NAME.finditer(path.stem):
        year, _, month, day = match.groups()
        try:
            found.setdefault(datetime.date(int(year), int(month), int(day)), match.group(0))
        except ValueError:
            raise InputError(f"{path}: '{match.group(0)}' in the file name is not a valid date; "
                             f"{DATE_PATTERN_HELP}") from None
    if not found:
        raise InputError(f"{path}: no date in the file name; {DATE_PATTERN_HELP}")
    if len(found) > 1:
        raise InputError(f"{path}: the file name holds {len(found)} different dates ({', '.join(found.values())}), "
                         f"so its date is ambiguous; {DATE_PATTERN_HELP}")
    return next(iter(found))


def read_series(inputs: Sequence[str | Path]) -> list[DatedImage]:
    """The dated images of a series given as 3+ files in date order, one folder, or one CSV/JSON/STAC list.

    Files keep the order given (their dates must increase); a folder and a list are sorted by date.
    """
    paths = [Path(p) for p in inputs]
    if not paths:
        raise InputError(f"no images given; give {MIN_DATES} or more dated images, a folder of them or a "
                         f".csv/.json list with a date column")
    if len(paths) == 1:
        path = paths[0]
        if path.is_dir():
            return _check_series(_read_folder(path), f"folder {path}")
        if path.suffix.lower() in PAIR_LIST_SUFFIXES:
            return _check_series(_read_list(path), f"list {path}")
        if not path.exists():
            raise InputError(f"not found: {path}; give a folder of dated images, a .csv/.json list with a date "
                             f"column, or {MIN_DATES} or more dated images")
    return _check_series(_read_files(paths), "")


def check_coregistered(sources: Sequence[RasterSource], paths: Sequence[Path]) -> GeoReference | None:
    """The common georeference of every date (``None``: none has one); raises :class:`InputError` naming the
    first date that is not on the first one's grid (size, CRS, transform), as a series is compared pixel by pixel."""
    if not sources:
        return None
    first, first_path = sources[0], Path(paths[0])
    reference, reference_path = first.georef, first_path
    for source, path in zip(sources[1:], paths[1:]):
        path = Path(path)
        if (source.height, source.width) != (first.height, first.width):
            raise InputError(f"size mismatch: {path} is {source.width}x{source.height} but {first_path} is "
                             f"{first.width}x{first.height} (width x height); every date of a series must be a "
                             f"co-registered image of the same size as the first")
        try:
            common = check_same_georeference(reference, source.georef, reference_path, path)
        except InputError as exc:
            raise InputError(f"{exc}; every date of a series must be co-registered with the first "
                             f"({first_path})") from None
        if reference is None and common is not None:  # the first georeferenced date sets the grid
            reference_path = path
        reference = common
    return reference


def _read_files(paths: list[Path]) -> list[DatedImage]:
    """Images given one by one: dated by their names, in the order given, which must be the date order."""
    if len(paths) < MIN_DATES:
        raise _too_few(len(paths), "")
    for path in paths:
        check_regular_file(path)
    images = [DatedImage(path, parse_date_in_name(path)) for path in paths]
    _check_unique(images, "")
    for before, after in zip(images, images[1:]):
        if after.date < before.date:
            raise InputError(f"images out of date order: {after.path} ({after.date}) is given after {before.path} "
                             f"({before.date}); give the images from the oldest to the newest, or give their "
                             f"folder, which is sorted by date")
    return images


def _read_folder(folder: Path) -> list[DatedImage]:
    """Every image directly in ``folder`` (hidden files and subfolders left out), dated by its name."""
    try:
        entries = sorted(folder.iterdir())
    except OSError as exc:
        raise InputError(f"cannot list folder {folder} ({exc.strerror}); check its permissions") from exc
    images = []
    for path in entries:
        if path.name.startswith(".") or path.suffix.lower() not in IMAGE_SUFFIXES or path.is_dir():
            continue
        check_regular_file(path)
        images.append(DatedImage(path, parse_date_in_name(path)))
    return sorted(images, key=lambda image: image.date)


def _read_list(path: Path) -> list[DatedImage]:
    """The rows of a CSV or JSON (plain or STAC) series list, every file checked to exist."""
    if not path.exists():
        raise InputError(f"series list not found: {path}; give a .csv or .json file listing path and date per "
                         f"image, a folder of dated images or the images themselves")
    check_regular_file(path, "series list")  # a FIFO or device is refused, never opened
    rows = _csv_rows(path) if path.suffix.lower() == ".csv" else _json_rows(path)
    return sorted(rows, key=lambda image: image.date)


def _csv_rows(path: Path) -> list[DatedImage]:
    import csv

    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = [c.strip().lower() for c in next(reader, [])]
            path_column = _path_key(header, f"{path} line 1")
            images = []
            for cells in reader:
                if not any(c.strip() for c in cells):
                    continue  # blank line
                at = f"line {reader.line_num}"
                if len(cells) != len(header):
                    raise InputError(f"{path} {at} has {len(cells)} cells but the header names {len(header)} "
                                     f"columns ({', '.join(header)})")
                record = dict(zip(header, cells))
                images.append(_dated(path, at, path_column, record[path_column], record[DATE_COLUMN]))
            return images
    except UnicodeDecodeError as exc:
        raise InputError(f"series list {path} is not UTF-8 text ({exc.reason}); save it as UTF-8 CSV") from None
    except csv.Error as exc:
        raise InputError(f"series list {path} is not valid CSV ({exc})") from None


def _path_key(keys: Sequence[str], where: str) -> str:
    """The path column of a list's header (or an item's keys); the ``date`` column must be there too."""
    present = [k for k in PATH_COLUMNS if k in keys]
    if len(present) != 1 or DATE_COLUMN not in keys:
        problem = (f"both '{PATH_COLUMNS[0]}' and '{PATH_COLUMNS[1]}' are given" if len(present) > 1 else
                   "no path column" if not present else f"no '{DATE_COLUMN}' column")
        raise InputError(f"{where}: {problem}; a series list needs a column '{PATH_COLUMNS[0]}' (or "
                         f"'{PATH_COLUMNS[1]}') naming each image and a column '{DATE_COLUMN}' with its ISO date")
    return present[0]


def _dated(list_path: Path, at: str, column: str, text: Any, date_text: Any) -> DatedImage:
    """One listed image: its file (relative to the list's folder, checked to exist) and its date."""
    where = f"{list_path} {at}"
    if not isinstance(text, str) or not text.strip():
        raise InputError(f"{where}: {column} is empty; every row needs the path of its image")
    image = listed_file(list_path, where, column, text.strip())
    date = parse_datetime(date_text) if isinstance(date_text, str) and date_text.strip() else None
    if date is None:
        shown = "is missing" if date_text in (None, "") else f"{date_text!r} is not an ISO date"
        raise InputError(f"{where}: the date of {image} {shown}; give it as YYYY-MM-DD or an ISO datetime "
                         f"(2021-06-01T10:30:00Z)")
    return DatedImage(image, date.date())


def _json_rows(path: Path) -> list[DatedImage]:
    data = read_json_file(path, "series list")
    if isinstance(data, Mapping) and data.get("type") == "FeatureCollection":
        data = data.get("features")
    if not isinstance(data, list) or not all(isinstance(item, Mapping) for item in data):
        raise InputError(f"series list {path} must hold a JSON list of objects with the keys "
                         f"{PATH_COLUMNS[0]} and {DATE_COLUMN}, a STAC ItemCollection or a list of STAC Items")
    images = []
    for number, item in enumerate(data, start=1):
        at = f"item {number}"
        if item.get("type") == "Feature":
            images.append(_stac_row(path, at, item))
        else:
            column = _path_key([str(k) for k in item], f"{path} {at}")
            images.append(_dated(path, at, column, item[column], item[DATE_COLUMN]))
    return images


def _stac_row(list_path: Path, at: str, item: Mapping[str, Any]) -> DatedImage:
    """A STAC Item's image asset and its date (``datetime``, else ``start_datetime``)."""
    at = f"{at} ({item['id']})" if isinstance(item.get("id"), str) else at
    properties = item.get("properties") if isinstance(item.get("properties"), Mapping) else {}
    date = properties.get("datetime") or properties.get("start_datetime")
    key, href = _stac_image_asset(list_path, at, item.get("assets"))
    return _dated(list_path, at, f"asset '{key}'", _href_path(list_path, at, href), date)


def _stac_image_asset(list_path: Path, at: str, assets: Any) -> tuple[str, str]:
    """(key, href) of the image asset of an Item: role ``data``, else key ``image``/``visual``, else the only image."""
    where = f"{list_path} {at}"
    if not isinstance(assets, Mapping):
        raise InputError(f"{where}: the STAC Item has no assets; add the image as an asset with the role 'data'")
    hrefs = {str(k): a["href"] for k, a in assets.items() if isinstance(a, Mapping) and isinstance(a.get("href"), str)}
    data = [k for k, a in assets.items() if k in hrefs and isinstance(a.get("roles"), list) and "data" in a["roles"]]
    if len(data) == 1:
        return data[0], hrefs[data[0]]
    named = [k for k in _STAC_IMAGE_KEYS if k in hrefs]
    if named:
        return named[0], hrefs[named[0]]
    images = [k for k, href in hrefs.items() if Path(urlparse(href).path).suffix.lower() in IMAGE_SUFFIXES]
    if len(images) == 1:
        return images[0], hrefs[images[0]]
    raise InputError(f"{where}: cannot tell which asset of the STAC Item is the image ({', '.join(hrefs) or 'none'}); "
                     f"give it the role 'data' or the key 'image'")


def _href_path(list_path: Path, at: str, href: str) -> str:
    """A local path from an asset href: a percent-encoded relative reference, a ``file://`` URL or a path."""
    parsed = urlparse(href)
    if parsed.scheme == "file":
        return url2pathname(parsed.path)
    if len(parsed.scheme) > 1:  # one letter: a Windows drive
        raise InputError(f"{list_path} {at}: the image {href} is not a local file; download it and point the "
                         f"asset's href at the copy")
    return href if len(parsed.scheme) == 1 else unquote(href)


def _too_few(count: int, where: str) -> InputError:
    return InputError(f"a series needs at least {MIN_DATES} dated images, got {count}"
                      f"{' in ' + where if where else ''}; for two dates use 'mmchange predict A B'")


def _check_unique(images: list[DatedImage], where: str) -> None:
    seen: dict[datetime.date, DatedImage] = {}
    for image in images:
        first = seen.setdefault(image.date, image)
        if first is not image:
            raise InputError(f"{first.path} and {image.path} have the same date {image.date}"
                             f"{' in ' + where if where else ''}; a series holds one image per date, so leave "
                             f"one of them out")


def _check_series(images: list[DatedImage], where: str) -> list[DatedImage]:
    """The rules of every series: distinct dates, at least :data:`MIN_DATES` images."""
    _check_unique(images, where)
    if len(images) < MIN_DATES:
        raise _too_few(len(images), where)
    return images
