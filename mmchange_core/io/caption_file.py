"""User-written captions for ``mmchange predict --captions FILE``.

The file is YAML or JSON: one mapping from image to caption, for example::

    # captions.yaml
    before.png: "dense residential blocks, a road and some trees"
    after.png: "new buildings on the former field, a road and some trees"
    2019/tile_07.tif: "..."        # folder/name keys tell apart same-named images in folder mode
    2020/tile_07.tif: "..."

A key matches an image by (most specific first): its path relative to the captions file's folder
(or an absolute path), its parent folder and file name, or its bare file name. A bare name that would
give both dates of a pair the same caption is refused.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from mmchange_core.errors import InputError
from mmchange_core.io.images import check_regular_file


@dataclass(frozen=True)
class CaptionFile:
    """Captions keyed by image path or name, as read from a YAML/JSON file."""

    path: Path
    captions: dict[str, str]

    @classmethod
    def load(cls, path: str | Path) -> CaptionFile:
        """Read and validate a captions file."""
        path = Path(path)
        check_regular_file(path, "captions")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise InputError(f"captions file {path} is not valid YAML/JSON ({str(exc).splitlines()[0]})") from exc
        if not isinstance(data, dict) or not data:
            raise InputError(f"captions file {path} must map image file names to captions, "
                             f"e.g. 'before.png: \"a residential area\"'")
        captions = {}
        for key, value in data.items():
            if not isinstance(value, str) or not value.strip():
                raise InputError(f"captions file {path}: the caption of '{key}' must be a non-empty string")
            captions[os.path.normpath(str(key)).replace(os.sep, "/")] = value.strip()
        return cls(path, captions)

    def _keys(self, image: Path) -> list[str]:
        image = Path(os.path.abspath(image))
        keys = [image.as_posix()]
        try:
            keys.append(os.path.relpath(image, self.path.resolve().parent).replace(os.sep, "/"))
        except ValueError:  # another drive on Windows
            pass
        keys.append(f"{image.parent.name}/{image.name}")
        return keys

    def find(self, image: str | Path) -> str | None:
        """The caption of ``image`` by path or parent/name key, else by bare file name (or ``None``)."""
        for key in self._keys(Path(image)):
            if key in self.captions:
                return self.captions[key]
        return self.captions.get(Path(image).name)

    def pair(self, image_a: str | Path, image_b: str | Path) -> tuple[str, str]:
        """Captions of both dates; raises :class:`InputError` naming what is missing or ambiguous."""
        found = self.dates([image_a, image_b])
        return found[0], found[1]

    def dates(self, images: Sequence[str | Path]) -> list[str]:
        """Captions of every date, in order; raises :class:`InputError` naming what is missing or ambiguous."""
        images = [Path(p) for p in images]
        names = [p.name for p in images]
        for p in images:
            specific = next((self.captions[k] for k in self._keys(p) if k in self.captions), None)
            if names.count(p.name) > 1 and specific is None and p.name in self.captions:
                twins = [q for q in images if q.name == p.name]
                raise InputError(f"captions file {self.path}: key '{p.name}' is ambiguous because several dates are "
                                 f"named {p.name}; use " + " and ".join(f"'{q.parent.name}/{q.name}'" for q in twins)
                                 + " keys")
        found = [self.find(p) for p in images]
        missing = [str(p) for p, caption in zip(images, found) if caption is None]
        if missing:
            raise InputError(f"captions file {self.path} has no caption for {' and '.join(missing)}; "
                             f"add a line '{Path(missing[0]).name}: \"<caption>\"'")
        return [caption for caption in found if caption is not None]
