"""Cloud-Optimized GeoTIFF outputs, staged on disk so no process holds a whole scene.

A :class:`StagedRaster` is a raw, row-major staging file beside the final output
(``.<name>.stage``): one process creates it, others may attach to it, and any process writes its
rows with positioned writes (``os.pwrite``), so several ranks can fill disjoint rows of one scene.
:meth:`StagedRaster.finish` streams the stage by strips into a temporary tiled GeoTIFF (pixels
marked by an ``invalid`` stage become nodata: an internal per-dataset mask for integer data, NaN
for float data), converts it with GDAL's COG driver (512-pixel tiles, deflate with a predictor,
overviews by nearest for masks and by average for probabilities and colour images), renames the
result onto the final path atomically and removes the stage. PNG and JPEG finals (and TIFF when
rasterio, the ``geo`` extra, is missing: a plain TIFF) are written by Pillow from the whole array,
as those formats have no partial writes nor nodata (invalid pixels are 0). A class raster (the label values
of a K-class network) gets a colour table: a palette (mode ``P``) PNG, or a GeoTIFF colour table.

Stages are created exclusively (``O_EXCL | O_NOFOLLOW``: a link or special file at a stage name is
refused, never written through; a stale regular stage of a killed run is removed first) and are
transient (:func:`~mmchange_core.io.atomic.remove_transients`): a process that ends by an error or a
signal leaves none. A stage may carry a *token* after its pixels (:meth:`StagedRaster.create`), the
identity of one creation, so a resumed run trusts only records made for the very stage on disk.
"""

from __future__ import annotations

import contextlib
import os
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from mmchange_core.errors import InputError, MMChangeError, OutputError
from mmchange_core.io.atomic import (
    atomic_path,
    create_exclusive,
    forget_transient,
    is_write_fault,
    open_existing,
    refuse_unsafe,
    register_transient,
    write_error,
)
from mmchange_core.io.geo import GeoReference, rasterio_available, require_rasterio
from mmchange_core.io.classes import palette_of
from mmchange_core.io.images import JPEG_SUFFIXES, PNG_SUFFIXES, TIFF_SUFFIXES, write_palette_png

#: Tile side of the COG (pixels) and the strip height used to stream the stage into it.
COG_BLOCKSIZE = 512
#: Pillow format of each suffix written from a whole array.
PIL_FORMATS = {**dict.fromkeys(PNG_SUFFIXES, "PNG"), **dict.fromkeys(JPEG_SUFFIXES, "JPEG"),
               **dict.fromkeys(TIFF_SUFFIXES, "TIFF")}
#: Suffixes :meth:`StagedRaster.finish` can write.
STAGE_FINAL_SUFFIXES = tuple(PIL_FORMATS)
#: GDAL's block cache while converting (MiB): bounds the memory of the COG translation.
GDAL_CACHE_MB = 64
#: Deflate level of the temporary tiled GeoTIFF (fast: it is rewritten by the COG driver).
_TEMP_ZLEVEL = 1
#: The trailer after a tagged stage's pixels: this prefix, a 32-hex-digit token and a newline.
_TOKEN_PREFIX = b"mmchange-stage:"
TOKEN_BYTES = len(_TOKEN_PREFIX) + 32 + 1
_TOKEN = re.compile(rb"mmchange-stage:([0-9a-f]{32})\n")


def stage_path(final_path: str | Path, part: str = "") -> Path:
    """The staging file of ``final_path``: ``.<name>[.<part>].stage`` in the same folder."""
    final_path = Path(final_path)
    return final_path.with_name(f".{final_path.name}{'.' + part if part else ''}.stage")


def stage_token(path: str | Path, nbytes: int) -> str | None:
    """The token of the stage file ``path`` holding ``nbytes`` of pixels, or ``None`` when it is missing, has
    another size, carries no token, or is a link or special file (never followed)."""
    try:
        fd = open_existing(path, "stage file")
    except (OSError, MMChangeError):
        return None
    try:
        if os.fstat(fd).st_size != nbytes + TOKEN_BYTES:
            return None
        match = _TOKEN.fullmatch(os.pread(fd, TOKEN_BYTES, nbytes))
        return match.group(1).decode("ascii") if match else None
    except OSError:
        return None
    finally:
        os.close(fd)


def _pwrite(fd: int, data: memoryview, offset: int) -> int:
    """Write at ``offset`` without moving a shared file position (``lseek`` + ``write`` where there is no pwrite)."""
    if hasattr(os, "pwrite"):
        return os.pwrite(fd, data, offset)
    os.lseek(fd, offset, os.SEEK_SET)
    return os.write(fd, data)


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    done = 0
    while done < len(data):  # pwrite may write less than asked
        done += _pwrite(fd, data[done:], offset + done)


def _pread_into(fd: int, view: memoryview, offset: int) -> int:
    """Read into ``view`` from ``offset``; returns the bytes read (0 at the end of the file)."""
    if hasattr(os, "preadv"):
        return os.preadv(fd, [view], offset)
    os.lseek(fd, offset, os.SEEK_SET)
    data = os.read(fd, len(view))
    view[:len(data)] = data
    return len(data)


def default_resampling(dtype: np.dtype | type, bands: int) -> str:
    """Overview resampling: ``average`` for float data and colour images, ``nearest`` for masks."""
    return "average" if np.dtype(dtype).kind == "f" or bands >= 3 else "nearest"


class StagedRaster:
    """A ``height x width [x bands]`` raster on disk, written row by row by one or more processes.

    Create it in one process with :meth:`create`, attach other processes with :meth:`attach`, write
    disjoint rows with :meth:`write` (the ``RowWriter`` interface of :mod:`mmchange_core.io.raster`),
    :meth:`flush` before another process reads or finishes, and let one process call :meth:`finish`.
    A failed finish leaves no final file and keeps the stage (call it again, or :meth:`abort`).
    """

    def __init__(self, final_path: Path, height: int, width: int, dtype: np.dtype | type, bands: int,
                 path: Path, fd: int, georef: GeoReference | None = None, token: str | None = None) -> None:
        self.final_path = final_path
        self.height, self.width, self.bands = height, width, bands
        self.dtype = np.dtype(dtype)
        self.path = path
        self.georef = georef
        self.token = token
        """The identity of the creation of this stage (``None``: an untagged stage)."""
        self._fd: int | None = fd
        self.row_bytes = width * bands * self.dtype.itemsize

    @property
    def nbytes(self) -> int:
        """Size of the staging file in bytes."""
        return self.height * self.row_bytes

    @classmethod
    def _check(cls, final_path: str | Path, height: int, width: int, dtype: np.dtype | type,
               bands: int) -> tuple[Path, np.dtype]:
        final_path = Path(final_path)
        suffix = final_path.suffix.lower()
        if suffix not in STAGE_FINAL_SUFFIXES:
            raise InputError(f"{final_path}: a staged raster is written as {', '.join(STAGE_FINAL_SUFFIXES)}, "
                             f"not '{final_path.suffix}'; rename the output")
        if height < 1 or width < 1 or bands < 1:
            raise InputError(f"{final_path}: bad raster size {width}x{height}x{bands}")
        dtype = np.dtype(dtype)
        if suffix in TIFF_SUFFIXES and not rasterio_available():  # Pillow writes 8-bit gray/RGB and float32 gray
            if not (dtype in (np.uint8, np.bool_) and bands in (1, 3) or dtype == np.float32 and bands == 1):
                require_rasterio(f"writing {final_path} ({dtype} x{bands})")
        elif suffix not in TIFF_SUFFIXES and (dtype not in (np.uint8, np.bool_) or bands not in (1, 3)):
            raise InputError(f"{final_path}: {PIL_FORMATS[suffix]} holds 8-bit gray or RGB, not {dtype} x{bands}; "
                             f"name it .tif")
        return final_path, dtype

    @classmethod
    def create(cls, final_path: str | Path, height: int, width: int, dtype: np.dtype | type = np.uint8,
               bands: int = 1, *, part: str = "", georef: GeoReference | None = None,
               token: str | None = None) -> StagedRaster:
        """Create the stage of ``final_path``, all zeros; other processes may then :meth:`attach`.

        ``part`` names a second stage of the same output (e.g. ``"invalid"`` for its nodata rows);
        ``georef`` is the default of :meth:`close`; ``token`` (32 hex digits) tags this creation (see
        :func:`stage_token`). A stale stage (a regular file left by a killed run) is removed first; a
        link or special file at the stage's name is refused (:class:`OutputError`), and so is the
        final output's name when it is one.
        """
        final_path, dtype = cls._check(final_path, height, width, dtype, bands)
        if token is not None and not re.fullmatch(r"[0-9a-f]{32}", token):
            raise ValueError(f"a stage token is 32 hex digits, not {token!r}")
        path = stage_path(final_path, part)
        refuse_unsafe(final_path, "output")
        refuse_unsafe(path, "stage file")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)  # a regular file (checked above): the stale stage of a killed run
        except OSError as exc:
            raise write_error(exc, final_path) from exc
        fd = create_exclusive(path, "stage file")
        nbytes = height * width * bands * dtype.itemsize
        try:
            os.ftruncate(fd, nbytes)  # sparse: zeros cost no disk until written
            if token is not None:
                _pwrite_all(fd, memoryview(_TOKEN_PREFIX + token.encode("ascii") + b"\n"), nbytes)
        except BaseException as exc:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(path)
            forget_transient(path)
            if isinstance(exc, OSError):
                raise write_error(exc, final_path) from exc
            raise
        return cls(final_path, height, width, dtype, bands, path, fd, georef, token)

    @classmethod
    def attach(cls, final_path: str | Path, height: int, width: int, dtype: np.dtype | type = np.uint8,
               bands: int = 1, *, part: str = "", georef: GeoReference | None = None) -> StagedRaster:
        """Open the existing stage of ``final_path`` made by :meth:`create` (in this or another process).

        The stage is never opened through a link. It is transient in this process too, until
        :meth:`detach`, :meth:`finish` or :meth:`abort`.
        """
        final_path, dtype = cls._check(final_path, height, width, dtype, bands)
        path = stage_path(final_path, part)
        try:
            fd = open_existing(path, "stage file", write=True)
        except OSError as exc:
            raise InputError(f"cannot open the staging file {path} ({exc.strerror}); "
                             f"it is created by StagedRaster.create first") from exc
        expected = height * width * bands * dtype.itemsize
        size = os.fstat(fd).st_size
        token = None
        if size == expected + TOKEN_BYTES:
            token = stage_token(path, expected)
        if size != expected and token is None:
            os.close(fd)
            raise InputError(f"staging file {path} has {size} bytes, not the {expected} of a {width}x{height}x{bands} "
                             f"{dtype} raster; delete it and start the output again")
        register_transient(path, fd)
        return cls(final_path, height, width, dtype, bands, path, fd, georef, token)

    @property
    def fd(self) -> int:
        """This process's handle on the stage (an error once detached)."""
        if self._fd is None:
            raise InputError(f"staging file {self.path} is closed")
        return self._fd

    def _shape(self, rows: int) -> tuple[int, ...]:
        return (rows, self.width) if self.bands == 1 else (rows, self.width, self.bands)

    def _check_rows(self, y0: int, height: int) -> None:
        if y0 < 0 or height < 0 or y0 + height > self.height:
            raise ValueError(f"rows {y0}..{y0 + height} outside 0..{self.height} of {self.path}")

    def write(self, y0: int, rows: np.ndarray) -> None:
        """Store rows ``y0 .. y0 + len(rows)`` (``[h, W]`` or ``[h, W, bands]``, cast to the stage dtype)."""
        rows = np.asarray(rows)
        if rows.shape not in (self._shape(len(rows)), (len(rows), self.width, self.bands)):
            raise ValueError(f"rows of shape {list(rows.shape)} do not fit {self.path} "
                             f"({self.width} wide, {self.bands} band(s))")
        self._check_rows(y0, len(rows))
        data = np.ascontiguousarray(rows, dtype=self.dtype).data.cast("B")
        try:
            _pwrite_all(self.fd, data, y0 * self.row_bytes)
        except OSError as exc:
            raise write_error(exc, self.final_path) from exc

    def read(self, y0: int, height: int) -> np.ndarray:
        """Rows ``y0 .. y0 + height`` as a fresh array (``[h, W]`` or ``[h, W, bands]``)."""
        self._check_rows(y0, height)
        out = np.empty(self._shape(height), dtype=self.dtype)
        view = memoryview(out).cast("B")
        offset, done = y0 * self.row_bytes, 0
        while done < len(view):
            got = _pread_into(self.fd, view[done:], offset + done)
            if got == 0:
                raise InputError(f"staging file {self.path} is shorter than expected; it was changed while in use")
            done += got
        return out

    def strips(self, rows: int = COG_BLOCKSIZE) -> Iterator[tuple[int, np.ndarray]]:
        """``(y0, rows)`` strips of the whole raster, in order, one in memory at a time."""
        for y0 in range(0, self.height, rows):
            yield y0, self.read(y0, min(rows, self.height - y0))

    def flush(self) -> None:
        """Push written rows to the disk, so processes on other hosts (shared file systems) see them."""
        try:
            os.fsync(self.fd)
        except OSError as exc:
            raise write_error(exc, self.final_path) from exc

    def close(self) -> Path:
        """Finish the final file with the ``georef`` given at creation (the ``RowWriter`` interface)."""
        return self.finish(self.georef)

    def detach(self) -> None:
        """Close this process's handle and keep the stage (another process finishes it)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        forget_transient(self.path)

    def abort(self) -> None:
        """Close and delete the stage; no final file is written."""
        self.detach()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def finish(self, georef: GeoReference | None = None, *, invalid: StagedRaster | None = None,
               resampling: str | None = None, tags: Mapping[str, str] | None = None,
               colormap: Mapping[int, Sequence[int]] | None = None) -> Path:
        """Write the final file atomically, then delete the stage; returns the final path.

        ``.tif``: a Cloud-Optimized GeoTIFF with ``georef``'s CRS and transform; pixels where
        ``invalid`` (a same-sized 1-band stage) is nonzero become nodata. ``resampling`` of the
        overviews defaults to :func:`default_resampling`; ``tags`` are written as GeoTIFF metadata (e.g. the
        dates of a series). ``.png``/``.jpg`` (and ``.tif`` without rasterio): written by Pillow, invalid
        pixels 0, no tags. The ``invalid`` stage is left in place (it
        may serve several outputs): abort it when done. ``colormap`` (value -> RGB(A), a uint8 1-band raster
        only) makes it a class raster: a GeoTIFF colour table, or a palette (mode ``P``) image whose ``tags``
        are PNG text.
        """
        if invalid is not None and (invalid.height, invalid.width, invalid.bands) != (self.height, self.width, 1):
            raise ValueError(f"invalid-pixel stage {invalid.path} is {invalid.width}x{invalid.height}x{invalid.bands}, "
                             f"not {self.width}x{self.height}x1")
        if colormap is not None and (self._out_dtype != np.uint8 or self.bands != 1):
            raise ValueError(f"a colour table needs a uint8 1-band raster, not {self.dtype} x{self.bands}")
        if self.final_path.suffix.lower() in TIFF_SUFFIXES and (georef is not None or rasterio_available()):
            write_cog(self.final_path, self._strips(invalid), self.height, self.width, self.bands, self._out_dtype,
                      georef, masked=invalid is not None,
                      resampling=resampling or default_resampling(self.dtype, self.bands), tags=tags,
                      colormap=colormap)
        elif colormap is not None:
            write_palette_png(self.final_path, np.concatenate([rows for _, rows, _ in self._strips(invalid)]),
                              palette_of(colormap), text=tags)
        else:
            write_with_pillow(self.final_path, np.concatenate([rows for _, rows, _ in self._strips(invalid)]))
        self.abort()
        return self.final_path

    @property
    def _out_dtype(self) -> np.dtype:
        return np.dtype(np.uint8) if self.dtype == np.bool_ else self.dtype

    def _strips(self, invalid: StagedRaster | None) -> Iterator[tuple[int, np.ndarray, np.ndarray | None]]:
        """``(y0, rows, bad)``: output-ready strips (bool as 0/255; invalid pixels 0, or NaN for float)."""
        for y0, rows in self.strips():
            if self.dtype == np.bool_:
                rows = rows.view(np.uint8) * np.uint8(255)
            bad = None
            if invalid is not None:
                bad = invalid.read(y0, len(rows)).astype(bool, copy=False)
                rows[bad] = np.nan if rows.dtype.kind == "f" else 0
            yield y0, rows, bad


def write_with_pillow(path: Path, array: np.ndarray) -> Path:
    """Write a whole uint8 gray/RGB (or float32 gray, TIFF) array as PNG, JPEG or plain TIFF by suffix, atomically."""
    fmt = PIL_FORMATS[path.suffix.lower()]
    with atomic_path(path) as tmp:
        image = Image.fromarray(np.ascontiguousarray(array))
        image.save(tmp, format=fmt, **({"quality": 92} if fmt == "JPEG" else {}))
    return path


def write_cog(path: Path, strips: Iterator[tuple[int, np.ndarray, np.ndarray | None]], height: int, width: int,
              bands: int, dtype: np.dtype, georef: GeoReference | None, *, masked: bool, resampling: str,
              tags: Mapping[str, str] | None = None, colormap: Mapping[int, Sequence[int]] | None = None) -> Path:
    """Stream ``(y0, rows, invalid)`` strips into a COG at ``path`` (atomically), through a temporary tiled TIFF.

    Float data gets NaN as its nodata value; other data with ``masked`` gets an internal per-dataset mask.
    ``colormap`` (value -> RGB(A)) is written as band 1's colour table (a class raster).
    """
    rasterio = require_rasterio(f"writing {path}")
    from rasterio.shutil import copy as gdal_copy
    from rasterio.windows import Window

    is_float = dtype.kind == "f"
    profile: dict[str, Any] = {
        "driver": "GTiff", "height": height, "width": width, "count": bands, "dtype": dtype.name,
        "tiled": True, "blockxsize": COG_BLOCKSIZE, "blockysize": COG_BLOCKSIZE,
        "compress": "deflate", "zlevel": _TEMP_ZLEVEL, "predictor": 3 if is_float else 2,
        "interleave": "pixel", "BIGTIFF": "IF_SAFER",
    }
    if bands == 3:
        profile["photometric"] = "RGB"
    if is_float:  # probabilities: NaN is the nodata value, whether or not any pixel is invalid
        profile["nodata"] = float("nan")
    if georef is not None:
        profile.update(crs=georef.crs, transform=georef.transform)
    refuse_unsafe(path, "output")
    tiled = path.with_name(f".{path.stem}.{os.urandom(4).hex()}.tiled.tif")
    os.close(create_exclusive(tiled, "temporary file"))
    try:
        with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB, GDAL_TIFF_INTERNAL_MASK=True), warnings.catch_warnings():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)  # a plain TIFF is intended
            with rasterio.open(tiled, "w", **profile) as dst:
                if tags:
                    dst.update_tags(**tags)
                if colormap is not None:
                    dst.write_colormap(1, {int(v): tuple(int(c) for c in (*rgb[:3], *(rgb[3:4] or (255,))))
                                           for v, rgb in colormap.items()})
                for y0, rows, bad in strips:
                    window = Window(0, y0, width, len(rows))
                    dst.write(rows[None] if rows.ndim == 2 else np.moveaxis(rows, -1, 0), window=window)
                    if masked and not is_float:
                        dst.write_mask(np.where(bad, 0, 255).astype(np.uint8) if bad is not None
                                       else np.full((len(rows), width), 255, np.uint8), window=window)
            with atomic_path(path) as tmp:
                gdal_copy(tiled, tmp, driver="COG", BLOCKSIZE=COG_BLOCKSIZE, COMPRESS="DEFLATE", PREDICTOR="YES",
                          OVERVIEW_RESAMPLING=resampling.upper(), BIGTIFF="IF_SAFER", NUM_THREADS="ALL_CPUS")
    except (rasterio.errors.RasterioError, rasterio._err.CPLE_BaseError) as exc:  # GDAL's own errors
        raise _gdal_write_error(exc, path) from exc
    except OSError as exc:
        if is_write_fault(exc, path, tiled):
            raise write_error(exc, path) from exc
        raise
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tiled)
        forget_transient(tiled)
    return path


def _gdal_write_error(exc: Exception, path: Path) -> OutputError:
    """GDAL reports a full disk or a read-only folder in words; name the cause as :func:`write_error` does."""
    import errno
    import shutil

    text = " ".join(str(exc).split())
    lowered = text.lower()
    code = None
    if "no space left" in lowered or "disk space" in lowered or "disk full" in lowered:
        code = errno.ENOSPC
    elif "quota" in lowered:
        code = getattr(errno, "EDQUOT", errno.ENOSPC)
    elif "read-only" in lowered:
        code = errno.EROFS
    elif "permission denied" in lowered:
        code = errno.EACCES
    else:
        with contextlib.suppress(OSError):
            if shutil.disk_usage(path.absolute().parent).free < 1 << 20:
                code = errno.ENOSPC
    if code is not None:
        return write_error(OSError(code, os.strerror(code)), path)
    return OutputError(f"cannot write {path} ({text}); check the free disk space and permissions of "
                       f"{path.absolute().parent}")


def validate_cog(path: str | Path) -> list[str]:
    """Why ``path`` is not a valid Cloud-Optimized GeoTIFF (empty list: valid).

    Checks GDAL's own view (``LAYOUT=COG``, tiled, compressed, overviews when larger than a tile)
    and, when rio-cogeo is installed, its validator (strict: its warnings count as problems).
    """
    rasterio = require_rasterio(f"checking {path}")
    problems: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        try:
            with rasterio.open(path) as ds:
                structure = ds.tags(ns="IMAGE_STRUCTURE")
                if ds.driver != "GTiff":
                    problems.append(f"not a GeoTIFF ({ds.driver})")
                if structure.get("LAYOUT") != "COG":
                    problems.append("GDAL does not report LAYOUT=COG (no COG ghost header)")
                if not ds.profile.get("tiled", False):
                    problems.append(f"not tiled (blocks {ds.block_shapes[0]})")
                if ds.compression is None:
                    problems.append("not compressed")
                if max(ds.height, ds.width) > COG_BLOCKSIZE and not ds.overviews(1):
                    problems.append("no overviews although larger than one tile")
        except rasterio.errors.RasterioError as exc:
            return [f"cannot open {path}: {exc}"]
    try:
        from rio_cogeo.cogeo import cog_validate
    except ImportError:
        return problems
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, errors, cog_warnings = cog_validate(str(path), strict=False, quiet=True)
    return problems + [f"rio-cogeo: {m}" for m in [*errors, *cog_warnings]]
