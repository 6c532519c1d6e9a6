"""Datasets given as a list of pairs: a CSV or JSON file naming A, B and the label of every pair.

CSV: a header row with the columns ``image_a``, ``image_b`` and optionally ``label``, ``split`` and
``name``; one pair per row. JSON: a list of objects with the same keys (or ``{"pairs": [...]}``).
Relative paths are resolved against the list file's folder. Without a ``split`` column every pair
belongs to split ``all``, which any requested split returns (as for the ``flat`` folder layout).
A pair's name defaults to the file name of its A image, as in the folder layouts.

Everything is checked when the list is read, before any command starts work: a missing or unknown
column, an empty cell, a file that does not exist and two pairs of one split with the same name each
give a one-line :class:`InputError` naming the list file, the row and the value.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from mmchange_core.errors import InputError
from mmchange_core.io.images import check_regular_file
from mmchange_core.io.jsonio import read_json_file

#: Suffixes of the files read as pair lists.
PAIR_LIST_SUFFIXES = (".csv", ".json")
REQUIRED_COLUMNS = ("image_a", "image_b")
OPTIONAL_COLUMNS = ("label", "split", "name")
#: The split of every pair of a list without a ``split`` column.
UNSPLIT = "all"


@dataclass(frozen=True)
class PairRow:
    """One row of a pair list, paths resolved; ``at`` names it in messages (``line 3``, ``item 2``)."""

    at: str
    name: str
    split: str
    image_a: Path
    image_b: Path
    label: Path | None
    #: Whether the row has a ``label`` column or key at all (an empty cell still counts as a column).
    label_column: bool = False


def is_pair_list(path: str | Path) -> bool:
    """Whether ``path`` names a pair list (by its suffix; the file may not exist)."""
    return Path(path).suffix.lower() in PAIR_LIST_SUFFIXES


def read_pair_rows(path: str | Path) -> list[PairRow]:
    """The rows of the pair list ``path`` in file order, every file checked to exist."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"pair list not found: {path}; give a .csv or .json file listing image_a, image_b "
                         f"(label, split) per pair, or a dataset folder")
    check_regular_file(path, "pair list")  # a FIFO or device is refused, never opened
    suffix = path.suffix.lower()
    if suffix not in PAIR_LIST_SUFFIXES:
        raise InputError(f"{path} is not a pair list (.csv or .json) nor a dataset folder")
    records = _csv_records(path) if suffix == ".csv" else _json_records(path)
    rows = [_row(path, at, record) for at, record in records]
    if not rows:
        raise InputError(f"pair list {path} lists no pairs; add one row per pair")
    if any(r.split != UNSPLIT for r in rows) and any(r.split == UNSPLIT for r in rows):
        first = next(r for r in rows if r.split == UNSPLIT)
        raise InputError(f"{path} {first.at}: split '{UNSPLIT}' is used for lists without a split column; "
                         f"name another split")
    _check_unique(path, rows)
    return rows


def _check_columns(columns: Iterable[str], where: str) -> None:
    columns = list(columns)
    allowed = (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)
    for column in columns:
        if column not in allowed:
            raise InputError(f"{where}: unknown column '{column}'; the columns of a pair list are "
                             f"{', '.join(allowed)}")
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise InputError(f"{where}: column '{missing[0]}' is missing; a pair list needs the columns "
                         f"{', '.join(REQUIRED_COLUMNS)} (and optionally {', '.join(OPTIONAL_COLUMNS)})")


def _csv_records(path: Path) -> list[tuple[str, dict[str, str]]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                raise InputError(f"pair list {path} is empty; its first line must name the columns "
                                 f"{', '.join(REQUIRED_COLUMNS)} (and optionally {', '.join(OPTIONAL_COLUMNS)})")
            columns = [c.strip().lower() for c in header]
            duplicated = next((c for c in columns if columns.count(c) > 1), None)
            if duplicated is not None:
                raise InputError(f"{path} line 1: column '{duplicated}' appears twice")
            _check_columns(columns, f"{path} line 1")
            records = []
            for cells in reader:
                at = f"line {reader.line_num}"
                if not any(c.strip() for c in cells):
                    continue  # blank line
                if len(cells) != len(columns):
                    raise InputError(f"{path} {at} has {len(cells)} cells but the header names {len(columns)} "
                                     f"columns ({', '.join(columns)})")
                records.append((at, dict(zip(columns, cells))))
            return records
    except UnicodeDecodeError as exc:
        raise InputError(f"pair list {path} is not UTF-8 text ({exc.reason}); save it as UTF-8 CSV") from None
    except csv.Error as exc:
        raise InputError(f"pair list {path} is not valid CSV ({exc})") from None


def _json_records(path: Path) -> list[tuple[str, dict[str, str]]]:
    data = read_json_file(path, "pair list")
    if isinstance(data, Mapping) and set(data) == {"pairs"}:
        data = data["pairs"]
    if not isinstance(data, list):
        raise InputError(f"pair list {path} must hold a JSON list of objects with the keys "
                         f"{', '.join(REQUIRED_COLUMNS)} (and optionally {', '.join(OPTIONAL_COLUMNS)}), "
                         f"or {{\"pairs\": [...]}}")
    records = []
    for number, item in enumerate(data, start=1):
        at = f"item {number}"
        where = f"{path} {at}"
        if not isinstance(item, Mapping):
            raise InputError(f"{where} is not an object with the keys {', '.join(REQUIRED_COLUMNS)}")
        _check_columns([str(k) for k in item], where)
        values: dict[str, str] = {}
        for key, value in item.items():
            if value is not None and not isinstance(value, str):
                raise InputError(f"{where}: '{key}' must be text (a path or a name), got {value!r}")
            values[str(key)] = value or ""
        records.append((at, values))
    return records


def listed_file(list_path: Path, where: str, column: str, text: str) -> Path:
    """The file named by ``text`` (relative to the list's folder), which must exist."""
    path = Path(os.path.expanduser(text))
    if not path.is_absolute():
        path = list_path.parent / path
    if not path.is_file():
        what = ("is a folder, not a file" if path.is_dir() else
                "is not a regular file (a FIFO, device or socket)" if path.exists() else "not found")
        raise InputError(f"{where}: {column} {text} {what} (looked at {path}); fix the path in the list "
                         f"(relative paths are resolved against {list_path.parent})")
    return path


def _row(list_path: Path, at: str, record: Mapping[str, str]) -> PairRow:
    where = f"{list_path} {at}"
    values = {key: (record.get(key) or "").strip() for key in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)}
    for column in REQUIRED_COLUMNS:
        if not values[column]:
            raise InputError(f"{where}: {column} is empty; every pair needs both images")
    if "split" in record and not values["split"]:
        raise InputError(f"{where}: split is empty; give every pair a split (train, val, test) or leave the "
                         f"split column out")
    image_a = listed_file(list_path, where, "image_a", values["image_a"])
    image_b = listed_file(list_path, where, "image_b", values["image_b"])
    label = listed_file(list_path, where, "label", values["label"]) if values["label"] else None
    return PairRow(at, values["name"] or image_a.name, values["split"] or UNSPLIT, image_a, image_b, label,
                   "label" in record)


def _check_unique(path: Path, rows: list[PairRow]) -> None:
    seen: dict[tuple[str, str], PairRow] = {}
    for row in rows:
        first = seen.setdefault((row.split, row.name), row)
        if first is not row:
            raise InputError(f"{path} {row.at}: pair name '{row.name}' is already used in split '{row.split}' "
                             f"by {first.at}; give each pair a distinct file name or a 'name' column")
