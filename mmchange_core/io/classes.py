"""Change classes: the class file (label value, name and colour of each class) and class maps.

A class file is YAML, a list of classes (or a mapping with a ``classes:`` list)::

    classes:
      - {value: 0, name: no change, colour: [0, 0, 0]}
      - {value: 1, name: new building, colour: [230, 25, 75]}
      - {value: 2, name: demolished building, colour: [0, 130, 200]}

Value 0 is "no change" and must be listed; values are label values 0..255 (grey level or palette
index of a label PNG, band 1 of a GeoTIFF). A network trained with a class file has one output per
class (``index`` 0..K-1 in the file's order, "no change" first); labels are read into those indices and
predictions are written back as the file's values. Two classes (no change and one change class) is
the binary model, the paper's, with names. The binary default has no class file at all (``None``
wherever a scheme is optional).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmchange_core.errors import InputError
from mmchange_core.io.jsonio import strict_json

#: Most classes a class file may list (a uint8 class raster; 32 keeps legends and reports readable).
MAX_CLASSES = 32

#: Colours given to classes in order when a class file leaves ``colour`` out (no change is black).
DEFAULT_COLOURS = ((0, 0, 0), (230, 25, 75), (0, 130, 200), (60, 180, 75), (255, 225, 25), (245, 130, 48),
                   (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
                   (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0))


@dataclass(frozen=True)
class ChangeClass:
    """One class of a class file: its label value, name and RGB colour."""

    value: int
    name: str
    colour: tuple[int, int, int]


@dataclass(frozen=True)
class ClassScheme:
    """The classes a network predicts, "no change" (value 0) first; index ``i`` is output channel ``i``."""

    classes: tuple[ChangeClass, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(self.classes))
        problem = _problem(self.classes)
        if problem:
            raise InputError(problem)

    @classmethod
    def binary(cls) -> ClassScheme:
        """The paper's two classes: no change (black) and change (white)."""
        return cls((ChangeClass(0, "no change", (0, 0, 0)), ChangeClass(1, "change", (255, 255, 255))))

    @classmethod
    def numbered(cls, count: int) -> ClassScheme:
        """``count`` classes named by number (value i = class i), for a network built without a class file."""
        return cls(tuple(ChangeClass(i, "no change" if i == 0 else f"class {i}", DEFAULT_COLOURS[i % len(DEFAULT_COLOURS)])
                         for i in range(count)))

    def __len__(self) -> int:
        return len(self.classes)

    @property
    def is_binary(self) -> bool:
        """Two classes: the network has one sigmoid output, as the paper's."""
        return len(self.classes) == 2

    @property
    def outputs(self) -> int:
        """Logit channels of the network's heads: 1 for two classes, else one per class."""
        return 1 if self.is_binary else len(self.classes)

    @property
    def values(self) -> tuple[int, ...]:
        return tuple(c.value for c in self.classes)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.classes)

    @property
    def colours(self) -> tuple[tuple[int, int, int], ...]:
        return tuple(c.colour for c in self.classes)

    @property
    def change_classes(self) -> tuple[ChangeClass, ...]:
        """Every class but "no change"."""
        return self.classes[1:]

    def value_lookup(self) -> np.ndarray:
        """``lut[value]`` = class index, -1 for a value the file does not list (256 entries)."""
        lut = np.full(256, -1, dtype=np.int16)
        for index, cls in enumerate(self.classes):
            lut[cls.value] = index
        return lut

    def index_to_value(self) -> np.ndarray:
        """``values[index]`` as uint8, to write class rasters with the file's label values."""
        return np.asarray(self.values, dtype=np.uint8)

    def palette(self) -> list[int]:
        """A 256-entry flat RGB palette (PNG ``P`` mode) indexed by label value."""
        return palette_of(self.colour_table())

    def colour_table(self) -> dict[int, tuple[int, int, int, int]]:
        """The GeoTIFF colour table (value -> RGBA) of a class raster."""
        return {cls.value: (*cls.colour, 255) for cls in self.classes}

    def raster_tags(self) -> dict[str, str]:
        """The metadata of a class raster (GeoTIFF tags, PNG text): the class file (value, name, colour of each
        class) as JSON under ``MMCHANGE_CLASSES``, and each class's name under ``MMCHANGE_CLASS_<value>``."""
        return {"MMCHANGE_CLASSES": strict_json(self.to_dict()["classes"], separators=(",", ":")),
                **{f"MMCHANGE_CLASS_{cls.value}": cls.name for cls in self.classes}}

    def name_of(self, value: int) -> str:
        for cls in self.classes:
            if cls.value == value:
                return cls.name
        raise KeyError(value)

    def labels_to_index(self, values: np.ndarray, path: str | Path) -> np.ndarray:
        """Class indices (uint8 ``[H, W]``) of a label's values; a value the class file lacks is refused,
        naming ``path`` and the value."""
        if values.dtype.kind == "f":
            if not np.isfinite(values).all() or (values != np.round(values)).any():
                raise InputError(f"label {path} holds non-integer values; a class label holds the class values "
                                 f"of the class file ({_listed(self)})")
        wide = values.astype(np.int64, copy=False)
        low, high = int(wide.min(initial=0)), int(wide.max(initial=0))
        if low < 0 or high > 255:
            bad = low if low < 0 else high
            raise InputError(f"label {path} has value {bad}, which is not in the class file ({_listed(self)}); "
                             f"add it to the class file or relabel the file")
        index = self.value_lookup()[wide]
        if (index < 0).any():
            unknown = sorted(set(np.unique(wide[index < 0]).tolist()))
            shown = ", ".join(str(v) for v in unknown[:8])
            raise InputError(f"label {path} has value{'s' if len(unknown) > 1 else ''} {shown}, not in the class file "
                             f"({_listed(self)}); add {'them' if len(unknown) > 1 else 'it'} to the class file or "
                             f"relabel the file")
        return index.astype(np.uint8)

    def to_dict(self) -> dict[str, Any]:
        return {"classes": [{"value": c.value, "name": c.name, "colour": list(c.colour)} for c in self.classes]}

    @classmethod
    def from_dict(cls, data: Any, source: str = "class file") -> ClassScheme:
        """Parse the YAML/JSON form (a list of classes or ``{"classes": [...]}``), one-line errors naming ``source``."""
        items = data.get("classes") if isinstance(data, dict) else data
        if not isinstance(items, list) or not items:
            raise InputError(f"{source}: expected a list of classes (value, name, colour), e.g. "
                             f"'classes: [{{value: 0, name: no change}}, {{value: 1, name: new building}}]'")
        classes = []
        for position, item in enumerate(items):
            if not isinstance(item, dict):
                raise InputError(f"{source}: class {position + 1} is {item!r}; give value, name and colour")
            unknown = set(item) - {"value", "name", "colour", "color"}
            if unknown:
                raise InputError(f"{source}: class {position + 1} has unknown key(s) {', '.join(sorted(unknown))}; "
                                 f"a class has value, name and colour")
            value, name = item.get("value"), item.get("name")
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 255:
                raise InputError(f"{source}: class {position + 1} has value {value!r}; a value is an integer 0..255")
            if not isinstance(name, str) or not name.strip():
                raise InputError(f"{source}: class {position + 1} (value {value}) needs a name")
            colour = item.get("colour", item.get("color"))
            if colour is None:
                colour = DEFAULT_COLOURS[position % len(DEFAULT_COLOURS)]
            classes.append(ChangeClass(value, name.strip(), _rgb(colour, f"{source}: class '{name}'")))
        classes.sort(key=lambda c: c.value != 0)  # no change first, the rest in the file's order
        return cls(tuple(classes))


def palette_of(colormap: dict[int, tuple[int, ...]] | Any) -> list[int]:
    """The flat 256 x RGB palette of a colour table (value -> RGB(A)); unlisted values are black."""
    flat = [0] * (256 * 3)
    for value, colour in colormap.items():
        flat[3 * int(value):3 * int(value) + 3] = [int(c) for c in colour[:3]]
    return flat


def _rgb(colour: Any, where: str) -> tuple[int, int, int]:
    if isinstance(colour, str) and colour.startswith("#") and len(colour) == 7:
        try:
            return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)
        except ValueError:
            pass
    elif isinstance(colour, (list, tuple)) and len(colour) == 3 and all(
            isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in colour):
        return int(colour[0]), int(colour[1]), int(colour[2])
    raise InputError(f"{where} has colour {colour!r}, which is not RGB; give [R, G, B] with 0..255 each, "
                     f"or '#rrggbb'")


def _problem(classes: tuple[ChangeClass, ...]) -> str | None:
    if len(classes) < 2:
        return "a class file needs 'no change' (value 0) and at least one change class"
    if len(classes) > MAX_CLASSES:
        return f"a class file lists at most {MAX_CLASSES} classes, got {len(classes)}"
    values = [c.value for c in classes]
    names = [c.name.casefold() for c in classes]
    for kind, seen in (("value", values), ("name", names)):
        duplicates = sorted({str(v) for v in seen if seen.count(v) > 1})
        if duplicates:
            return f"the class file lists {kind} {', '.join(duplicates)} twice; each class needs its own {kind}"
    if classes[0].value != 0:
        return "a class file must list value 0 ('no change') first"
    return None


def _listed(scheme: ClassScheme) -> str:
    return ", ".join(f"{c.value} {c.name}" for c in scheme.classes)


def load_class_file(path: str | Path) -> ClassScheme:
    """Read and check a YAML class file; every problem is one line naming the file."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"class file {path} does not exist; give a YAML file listing value, name and colour "
                         f"of each class") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read class file {path} ({exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f" (line {line + 1})" if line is not None else ""
        raise InputError(f"class file {path} is not valid YAML{where}; list each class as "
                         f"'- {{value: 1, name: new building, colour: [230, 25, 75]}}'") from None
    try:
        return ClassScheme.from_dict(data, source=f"class file {path}")
    except InputError as exc:
        text = str(exc)
        raise InputError(text if str(path) in text else f"class file {path}: {text}") from None
