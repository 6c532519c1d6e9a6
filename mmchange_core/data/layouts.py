"""Dataset layout detection, shared by captioning, training, evaluation and robustness.

Supported layouts (detected automatically and reported when a run starts):

- ``split-folders``: ``<root>/<split>/{A,B,label}`` (LEVIR-CD official, open-cd, EGY-BCD), with an
  optional ``<root>/<split>/list/<split>.txt`` naming the files to use;
- ``flat-lists``: ``<root>/{A,B,label}`` plus ``<root>/list/{train,val,test}.txt`` (LEVIR-CD-256,
  WHU-CD-256);
- ``sysu``: ``<root>/<split>/{time1,time2,label}`` (SYSU-CD);
- ``flat-prefixed``: ``<root>/{A,B,label}`` with split-prefixed names such as ``train_12.png``
  (torchgeo);
- ``flat``: ``<root>/{A,B,label}`` with no split information; every pair belongs to split ``all``,
  which is what any requested split returns;
- ``pair-list``: a ``.csv`` or ``.json`` file naming ``image_a``, ``image_b`` (``label``, ``split``,
  ``name``) of every pair (:mod:`mmchange_core.data.pair_list`); the layout's root is the list's
  folder, against which relative paths are resolved and caption-store keys are made.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from mmchange_core.data.pair_list import PAIR_LIST_SUFFIXES, UNSPLIT, PairRow, is_pair_list, read_pair_rows
from mmchange_core.errors import InputError
from mmchange_core.io.images import IMAGE_SUFFIXES, check_regular_file

SPLITS = ("train", "val", "test")
#: ``--dataset`` shortcuts, resolved under ``$MMCHANGE_DATA`` (default ``./data``).
DATASET_ALIASES = {"levir": "LEVIR-CD", "whu": "WHU-CD", "sysu": "SYSU-CD"}
_DATE_DIRS = {"A": ("A", "B"), "time1": ("time1", "time2")}
_LABEL_DIRS = ("label", "labels", "OUT", "gt")


@dataclass(frozen=True)
class ImagePair:
    """One bitemporal sample: the two dates, (optionally) the change label and which label value means change.

    ``change_value`` None applies the default label rule of :func:`mmchange_core.io.images.read_mask`.
    """

    name: str
    image_a: Path
    image_b: Path
    label: Path | None
    change_value: int | None = None

    def relative(self, root: Path) -> tuple[str, str]:
        """Paths of the two images relative to ``root`` with '/' separators (caption-store keys).

        An image outside ``root`` (a pair list may name any file) gets a ``../`` path.
        """
        return (_relative(self.image_a, root), _relative(self.image_b, root))


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return Path(os.path.relpath(os.path.abspath(path), os.path.abspath(root))).as_posix()


@dataclass
class DatasetLayout:
    """A detected dataset: its kind and the pairs of every split.

    ``source`` is what was given when it is not the root folder itself (a pair list's file).
    """

    root: Path
    kind: str
    splits: dict[str, list[ImagePair]] = field(default_factory=dict)
    source: Path | None = None
    #: A pair list's rows by (split, pair name), for messages that name the row.
    rows: dict[tuple[str, str], PairRow] = field(default_factory=dict, repr=False, compare=False)

    @property
    def origin(self) -> Path:
        """The folder or pair-list file the dataset was read from (for messages)."""
        return self.source or self.root

    def describe(self) -> str:
        """One line for the start of a run: layout kind and pairs per split."""
        counts = ", ".join(f"{s} {len(p)}" for s, p in self.splits.items())
        return f"{self.origin}: layout '{self.kind}' ({counts} pairs)"

    def pairs(self, split: str) -> list[ImagePair]:
        """Pairs of ``split``; unsplit (``flat``) datasets return all pairs for any split."""
        if split in self.splits:
            pairs = self.splits[split]
        elif list(self.splits) == ["all"]:
            pairs = self.splits["all"]
        else:
            found = ", ".join(self.splits) or "none"
            raise InputError(f"split '{split}' not found in {self.origin} (splits found: {found})")
        if not pairs:
            raise InputError(f"split '{split}' of {self.origin} is empty; add image pairs or choose another split")
        return pairs

    def require_labels(self, split: str) -> list[ImagePair]:
        """Pairs of ``split``, checking that every pair has a label file."""
        pairs = self.pairs(split)
        missing = [p for p in pairs if p.label is None]
        if missing:
            raise InputError(self._missing_labels(split, missing, len(pairs)))
        return pairs

    def _missing_labels(self, split: str, missing: list[ImagePair], total: int) -> str:
        """The message for pairs of ``split`` without a label, with advice for this kind of dataset."""
        count = f"{len(missing)} of {total} pair(s) of split '{split}'"
        if self.kind == "pair-list" and self.source is not None:
            rows = [self.rows.get((split if split in self.splits else UNSPLIT, p.name)) for p in missing]
            if not any(row.label_column for row in self.rows.values()):
                return (f"{self.source} has no 'label' column; add one with each pair's label path (relative to "
                        f"{self.source.parent}), as evaluation and training need a label for every pair")
            first = next((row for row in rows if row is not None), None)
            where = f"{self.source} {first.at}" if first is not None else str(self.source)
            return (f"{where}: no label for pair {missing[0].name} ({count} have none); give each pair's label "
                    f"path in the 'label' column")
        dates = "time1 and time2" if self.kind == "sysu" else "A and B"
        return (f"{count} have no label, e.g. {missing[0].image_a}; put labels in the 'label' folder beside "
                f"{dates}, with the same file names")

    def image_paths(self, splits: list[str] | None = None) -> list[Path]:
        """Every image of both dates in ``splits`` (all splits by default), in a stable order."""
        chosen = splits or list(self.splits)
        paths: list[Path] = []
        for split in chosen:
            for pair in self.pairs(split):
                paths.extend((pair.image_a, pair.image_b))
        return paths


def resolve_dataset_root(spec: str | Path) -> Path:
    """``levir``/``whu``/``sysu`` -> ``$MMCHANGE_DATA/<name>``; anything else is a folder or a pair-list file."""
    text = str(spec)
    if text.lower() in DATASET_ALIASES and not Path(text).is_dir():  # ./levir beside the user wins
        base = Path(os.environ.get("MMCHANGE_DATA", "data"))
        root = base / DATASET_ALIASES[text.lower()]
        if not root.is_dir():
            raise InputError(f"dataset '{text}' not found at {root}; download {DATASET_ALIASES[text.lower()]} "
                             f"there, set MMCHANGE_DATA to its parent folder, or pass --dataset PATH")
        return root
    root = Path(text)
    if root.is_dir():
        return root
    if is_pair_list(root):
        if not root.exists():
            raise InputError(f"pair list not found: {root}; pass levir, whu, sysu, a folder or a .csv/.json "
                             f"pair list")
        check_regular_file(root, "pair list")  # a FIFO or device is refused, never opened
        return root
    if root.exists() and not root.is_dir() and not root.is_file():
        raise InputError(f"{root} is not a regular file (a FIFO, device or socket); pass a dataset folder or a "
                         f".csv/.json pair list")
    if root.is_file():
        raise InputError(f"{root} is a file; pass a dataset folder or a pair list ending in "
                         f"{' or '.join(PAIR_LIST_SUFFIXES)}")
    raise InputError(f"dataset folder not found: {root}; pass levir, whu, sysu, a folder path or a "
                     f".csv/.json pair list")


def _images(folder: Path) -> dict[str, Path]:
    return {p.name: p for p in sorted(folder.iterdir())
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")}


def _find_dir(parent: Path, name: str) -> Path | None:
    for candidate in (name, name.lower(), name.upper(), name.capitalize()):
        if (parent / candidate).is_dir():
            return parent / candidate
    return None


def _date_dirs(folder: Path) -> tuple[Path, Path, Path | None] | None:
    for first, (a_name, b_name) in _DATE_DIRS.items():
        a, b = _find_dir(folder, a_name), _find_dir(folder, b_name)
        if a and b:
            label = next((d for d in (_find_dir(folder, n) for n in _LABEL_DIRS) if d), None)
            return a, b, label
    return None


def _read_list(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _match(files: dict[str, Path], name: str) -> Path | None:
    """The file called ``name``, or one with the same stem (A may be .png where B is .jpg)."""
    if name in files:
        return files[name]
    stem = Path(name).stem
    return next((p for n, p in files.items() if Path(n).stem == stem), None)


def _pairs(a_dir: Path, b_dir: Path, label_dir: Path | None, names: list[str] | None = None) -> list[ImagePair]:
    a_files, b_files = _images(a_dir), _images(b_dir)
    labels = _images(label_dir) if label_dir else {}
    if names is None:
        names = list(a_files)
        a_stems = {Path(n).stem for n in a_files}
        orphans = [p for n, p in b_files.items() if Path(n).stem not in a_stems]
        if orphans:
            raise InputError(f"{orphans[0]} has no matching image in {a_dir}; every B image needs an A image "
                             f"with the same name")
    pairs = []
    for raw in names:
        a = _match(a_files, raw)
        if a is None:
            raise InputError(f"listed image {raw} not found in {a_dir}")
        b = _match(b_files, a.name)
        if b is None:
            raise InputError(f"{a} has no matching image in {b_dir}; every A image needs a B image "
                             f"with the same name")
        pairs.append(ImagePair(a.name, a, b, _match(labels, a.name)))
    return pairs


def detect_layout(root: str | Path, change_value: int | None = None) -> DatasetLayout:
    """Detect the layout of ``root`` and list its pairs per split; ``change_value`` is the label value of change.

    ``root`` is a dataset folder or a pair list (``.csv``/``.json`` file). ``None`` (the default)
    reads labels with the rule of :func:`mmchange_core.io.images.read_mask`.
    """
    root = Path(root)
    layout = _list_layout(root) if is_pair_list(root) and not root.is_dir() else _detect_layout(root)
    if change_value is not None:
        layout.splits = {split: [replace(pair, change_value=change_value) for pair in pairs]
                         for split, pairs in layout.splits.items()}
    return layout


def _list_layout(path: Path) -> DatasetLayout:
    """The pairs of a pair list, per split in file order; the root is the list's folder."""
    layout = DatasetLayout(path.parent, "pair-list", source=path)
    for row in read_pair_rows(path):
        layout.splits.setdefault(row.split, []).append(ImagePair(row.name, row.image_a, row.image_b, row.label))
        layout.rows[(row.split, row.name)] = row
    return layout


def _detect_layout(root: Path) -> DatasetLayout:
    if not root.is_dir():
        raise InputError(f"dataset folder not found: {root}")
    split_dirs = {s: d for s in SPLITS if (d := _find_dir(root, s))}
    if split_dirs:
        layout = None
        for split, folder in split_dirs.items():
            dirs = _date_dirs(folder)
            if dirs is None:
                continue
            a, b, label = dirs
            kind = "sysu" if a.name.lower() == "time1" else "split-folders"
            layout = layout or DatasetLayout(root, kind)
            listing = folder / "list" / f"{split}.txt"
            names = _read_list(listing) if listing.is_file() else None
            layout.splits[split] = _pairs(a, b, label, names)
        if layout is not None:
            return layout
    flat = _date_dirs(root)
    if flat is None:
        raise InputError(f"no change-detection layout found in {root}: expected A/B(/label) folders, "
                         f"train|val|test/A,B,label, or SYSU's train|val|test/time1,time2,label")
    a, b, label = flat
    lists = {s: root / "list" / f"{s}.txt" for s in SPLITS if (root / "list" / f"{s}.txt").is_file()}
    if lists:
        layout = DatasetLayout(root, "flat-lists")
        for split, listing in lists.items():
            layout.splits[split] = _pairs(a, b, label, _read_list(listing))
        return layout
    pairs = _pairs(a, b, label)
    prefixed = {s: [p for p in pairs if p.name.lower().startswith(f"{s}_") or p.name.lower().startswith(f"{s}-")]
                for s in SPLITS}
    if pairs and sum(len(v) for v in prefixed.values()) == len(pairs):
        return DatasetLayout(root, "flat-prefixed", {s: v for s, v in prefixed.items() if v})
    return DatasetLayout(root, "flat", {"all": pairs})
