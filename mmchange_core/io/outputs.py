"""One plan of every file a command will write, checked before any work starts.

A command lists its inputs (:meth:`OutputPlan.protect`) and then each output it will write
(:meth:`OutputPlan.add`): the suffix must be one the writer supports, and no output may be an input
(by resolved path, or the same file through a link) or another output. A collision is a one-line
:class:`~mmchange_core.errors.InputError` raised while planning, so nothing is written. A link or a
special file (FIFO, device, socket) at an output's name, or at the name of its stage files
(:func:`~mmchange_core.io.cog.stage_path`), is refused the same way: mmchange never writes through a
link; and a read-only folder is named as such.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from mmchange_core.errors import InputError
from mmchange_core.io.atomic import refuse_unsafe
from mmchange_core.io.images import JPEG_SUFFIXES, PNG_SUFFIXES, TIFF_SUFFIXES

#: Suffixes of the files each kind of output can be written as.
MASK_SUFFIXES = PNG_SUFFIXES + TIFF_SUFFIXES
IMAGE_OUTPUT_SUFFIXES = PNG_SUFFIXES + JPEG_SUFFIXES + TIFF_SUFFIXES
VECTOR_SUFFIXES = (".geojson", ".json")
CHECKPOINT_SUFFIXES = (".safetensors",)


def check_output_suffix(path: Path, what: str, allowed: Iterable[str]) -> None:
    """Raise an :class:`InputError` unless ``path`` ends with one of ``allowed`` (listed in the message)."""
    allowed = tuple(allowed)
    if path.suffix.lower() not in allowed:
        found = f"'{path.suffix}'" if path.suffix else "no suffix"
        raise InputError(f"{what} {path}: unsupported file type ({found}); name it with one of {', '.join(allowed)}")


def _key(path: Path) -> str:
    """The identity of a path for collision checks: absolute, symlinks resolved, case folded where the OS does."""
    return os.path.normcase(str(Path(path).expanduser().resolve()))


def _inode(path: Path) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_dev, info.st_ino) if stat.S_ISREG(info.st_mode) else None


def _check_writable_folder(path: Path, what: str) -> None:
    """The nearest existing ancestor of ``path`` must be a folder we may write in (missing ones are created)."""
    folder = path.absolute().parent
    while not os.path.lexists(folder) and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise InputError(f"{what} {path}: {folder} is a file, not a folder; choose another output path")
    if _read_only(folder):
        raise InputError(f"{what} {path}: {folder} is on a read-only file system; write elsewhere")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"{what} {path}: no permission to write in {folder}; make it writable or write elsewhere")


def _read_only(folder: Path) -> bool:
    """Whether ``folder`` lies on a file system mounted read-only (where ``statvfs`` tells)."""
    try:
        return bool(os.statvfs(folder).f_flag & getattr(os, "ST_RDONLY", 0))
    except (OSError, AttributeError):
        return False


def _stage_names(path: Path) -> list[Path]:
    """The stage files a staged raster output may create beside ``path`` (see :mod:`mmchange_core.io.cog`)."""
    return [path.with_name(f".{path.name}{part}.stage") for part in ("", ".invalid")]


class OutputPlan:
    """The inputs a command reads and the outputs it will write; :meth:`add` refuses any collision."""

    def __init__(self, inputs: Iterable[Path | None] = ()) -> None:
        self._inputs: dict[str, Path] = {}
        self._inodes: dict[tuple[int, int], Path] = {}
        self._folders: dict[str, Path] = {}
        self._outputs: dict[str, tuple[str, Path, str | None]] = {}
        self.protect(*inputs)

    def protect(self, *paths: Path | None) -> None:
        """Files that no output may overwrite (the command's inputs)."""
        for path in paths:
            if path is None:
                continue
            path = Path(path)
            self._inputs.setdefault(_key(path), path)
            inode = _inode(path)
            if inode is not None:
                self._inodes.setdefault(inode, path)

    def protect_folder(self, *folders: Path | None) -> None:
        """Input folders that must not receive outputs (their files would be read as inputs next time)."""
        for folder in folders:
            if folder is not None:
                self._folders.setdefault(_key(Path(folder)), Path(folder))

    def check_folder(self, folder: Path, what: str) -> None:
        """Refuse ``folder`` as an output folder when it is a protected input folder or an existing non-folder."""
        if os.path.lexists(folder) and not Path(folder).is_dir():
            raise InputError(f"{what} {folder} exists and is not a folder; give a folder path")
        source = self._folders.get(_key(folder))
        if source is not None:
            raise InputError(f"{what} {folder} is the input folder {source}; outputs there would mix with the "
                             f"inputs, choose another folder")

    def add(self, path: Path, what: str, suffixes: Iterable[str] | None = None, owner: str | None = None) -> Path:
        """Plan ``path`` as the ``what`` output (of input ``owner``); raise on a bad suffix or any collision."""
        path = Path(path)
        if suffixes is not None:
            check_output_suffix(path, what, suffixes)
        key = _key(path)
        source = self._inputs.get(key)
        inode = _inode(path)
        if source is None and inode is not None:
            source = self._inodes.get(inode)
        if source is not None:
            raise InputError(f"{what} {path} would overwrite the input {source}; choose another output path")
        if key in self._outputs:
            other_what, other, other_owner = self._outputs[key]
            first = f"{other_what} of {other_owner}" if other_owner else other_what
            second = f"{what} of {owner}" if owner else what
            raise InputError(f"{first} and {second} would both be written to {path}; rename one of the inputs "
                             f"or choose different output paths")
        if os.path.lexists(path) and not path.is_file():
            kind = "a folder" if path.is_dir() else "not a regular file"
            raise InputError(f"{what} {path} exists and is {kind}; give the path of a file to write")
        for name, kind in ((path, what), *((stage, "stage file") for stage in _stage_names(path))):
            refuse_unsafe(name, kind)  # a link or FIFO planted at the output's or a stage's name
        _check_writable_folder(path, what)
        self._outputs[key] = (what, path, owner)
        return path

    @property
    def outputs(self) -> list[Path]:
        """The planned outputs, in the order they were added."""
        return [path for _, path, _ in self._outputs.values()]
