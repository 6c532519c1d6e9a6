"""Safe writes: the one way mmchange creates and replaces files.

* :func:`atomic_path` / :func:`atomic_open` / :func:`atomic_write_bytes` / :func:`atomic_write_text`:
  a temporary file created exclusively (``O_CREAT | O_EXCL | O_NOFOLLOW``: never through a link, never
  an existing file) beside the target, written, fsynced and renamed onto the target; the folder is
  fsynced. A crash or kill at any point leaves either the old file or the new one, never a partial file.
* :func:`create_exclusive`: a file that this process creates and nobody else (the stages of
  :mod:`mmchange_core.io.cog`), and :func:`open_existing` / :func:`open_append`: an existing regular file
  opened without following a link and without blocking on a FIFO.
* :func:`refuse_unsafe`: an existing symbolic link, folder, FIFO, device or socket at the name of an
  output (or of a stage) is refused with one line naming it; mmchange never writes through a link.
* :func:`write_error`: a full disk, an exhausted quota, a read-only or forbidden folder while writing
  become one :class:`~mmchange_core.errors.OutputError` line naming the path and what to do.
* Temporaries and stages this process created are *transient*: :func:`remove_transients` deletes the
  ones still there; the CLI calls it on every error and signal, and it runs at interpreter exit.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import os
import secrets
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from mmchange_core.errors import MMChangeError, OutputError
from mmchange_core.interrupts import signals_deferred

#: Test hook: seconds to sleep after each committed write or log append (so a test can signal a process mid-run).
TEST_PAUSE_ENV = "MMCHANGE_TEST_PAUSE_AFTER_WRITE"

_O_BINARY = getattr(os, "O_BINARY", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
#: errno values that mean "this storage cannot take the write", whatever the file.
STORAGE_FAULTS = {errno.ENOSPC, errno.EROFS, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}
_PERMISSION = {errno.EACCES, errno.EPERM}


# --------------------------------------------------------------------------------------------------
# what is at a name, and the errors of writing


def special_kind(mode: int) -> str | None:
    """What a file of ``mode`` is when it is not a regular file (``"a symbolic link"``, ``"a FIFO"``, ...)."""
    for test, kind in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a folder"),
                       (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return None if stat.S_ISREG(mode) else "not a regular file"


def refuse_unsafe(path: str | Path, what: str = "output") -> None:
    """Raise :class:`OutputError` when ``path`` exists and is not a regular file (a link, folder, FIFO, ...)."""
    try:
        info = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as exc:
        raise write_error(exc, path) from exc
    kind = special_kind(info.st_mode)
    if kind is not None:
        raise OutputError(f"{what} {path} is {kind}; mmchange never writes through links or into special files: "
                          f"remove it or choose another path")


def is_write_fault(exc: BaseException, *paths: str | Path) -> bool:
    """Whether ``exc`` is a storage fault (full disk, quota, read-only, too large) or a permission error on ``paths``."""
    if not isinstance(exc, OSError) or exc.errno is None:
        return False
    if exc.errno in STORAGE_FAULTS:
        return True
    return exc.errno in _PERMISSION and (exc.filename is None or str(exc.filename) in {str(p) for p in paths})


def write_error(exc: OSError, path: str | Path) -> OutputError:
    """The one-line :class:`OutputError` for ``exc`` raised while writing ``path``: what happened, what to do."""
    path = Path(path)
    folder = path.absolute().parent
    code = exc.errno
    if code == errno.ENOSPC:
        text = f"no space left on the device of {folder} while writing {path}; free space on it or write elsewhere"
    elif code == getattr(errno, "EDQUOT", None):
        text = (f"disk quota exceeded in {folder} while writing {path}; free space within your quota or "
                f"write elsewhere")
    elif code == errno.EROFS:
        text = f"{folder} is on a read-only file system, so {path} cannot be written; write elsewhere"
    elif code in _PERMISSION:
        text = f"no permission to write {path}; make {folder} writable or write elsewhere"
    elif code == errno.EFBIG:
        text = f"{path} is too large for the file system of {folder}; write elsewhere"
    else:
        text = f"cannot write {path} ({exc.strerror or exc}); check {folder} or write elsewhere"
    return OutputError(text)


def pause_for_tests() -> None:
    """The :data:`TEST_PAUSE_ENV` hook (tests only): sleep after a committed write."""
    seconds = os.environ.get(TEST_PAUSE_ENV)
    if seconds:
        time.sleep(float(seconds))


# --------------------------------------------------------------------------------------------------
# transient files: removed on every exit path the process controls


_TRANSIENT: dict[str, tuple[int, int | None]] = {}
_TRANSIENT_LOCK = threading.Lock()


def register_transient(path: str | Path, fd: int | None = None) -> None:
    """Remember ``path`` (created by this process; with ``fd``, that very file) for :func:`remove_transients`."""
    inode = os.fstat(fd).st_ino if fd is not None else None
    with _TRANSIENT_LOCK:
        _TRANSIENT[os.path.abspath(path)] = (os.getpid(), inode)


def forget_transient(path: str | Path) -> None:
    """``path`` was renamed into place, deleted or handed over: :func:`remove_transients` leaves it alone."""
    with _TRANSIENT_LOCK:
        _TRANSIENT.pop(os.path.abspath(path), None)


def remove_transients() -> list[Path]:
    """Delete the temporaries and stages this process created that are still there; returns them."""
    with _TRANSIENT_LOCK:
        items = list(_TRANSIENT.items())
        _TRANSIENT.clear()
    removed = []
    for name, (pid, inode) in items:
        if pid != os.getpid():  # inherited by a forked child: the parent's to remove
            continue
        try:
            info = os.lstat(name)
            if stat.S_ISREG(info.st_mode) and inode in (None, info.st_ino):
                os.unlink(name)
                removed.append(Path(name))
        except OSError:
            continue
    return removed


atexit.register(remove_transients)


# --------------------------------------------------------------------------------------------------
# creating and opening


def create_exclusive(path: str | Path, what: str = "output") -> int:
    """Create ``path`` as a new, empty regular file (``O_EXCL | O_NOFOLLOW``, read-write) and return its descriptor.

    An existing file of any kind at ``path`` is refused (:class:`OutputError`), so nothing is ever
    written through a link planted there. The file is registered as transient (see :func:`remove_transients`).
    """
    refuse_unsafe(path, what)
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_CLOEXEC | _O_BINARY
    try:
        fd = os.open(path, flags, 0o666)  # the umask applies
    except FileExistsError:
        raise OutputError(f"{what} {path} appeared while mmchange was creating it (another process?); "
                          f"make sure one command writes there, then run again") from None
    except OSError as exc:
        raise write_error(exc, path) from exc
    register_transient(path, fd)
    return fd


def _open_regular(path: Path, flags: int, what: str, *, create: bool = False, follow: bool = False) -> int:
    """Open ``path`` with ``flags`` without blocking on a FIFO (nor following a link unless ``follow``);
    anything but a regular file is refused (:class:`OutputError`)."""
    flags |= _O_NONBLOCK | _O_CLOEXEC | _O_BINARY | (0 if follow else _O_NOFOLLOW)
    try:
        fd = os.open(path, flags, 0o666)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if exc.errno == errno.ELOOP and not follow:
            refuse_unsafe(path, what)  # a link at the name
        if create and is_write_fault(exc, path):
            raise write_error(exc, path) from exc
        raise
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise OutputError(f"{what} {path} is {special_kind(info.st_mode)}, not a regular file; "
                          f"remove it or choose another path")
    if _O_NONBLOCK:
        os.set_blocking(fd, True)
    return fd


def open_existing(path: str | Path, what: str = "file", *, write: bool = False, follow: bool = False) -> int:
    """Open the existing regular file ``path`` (read, or read-write) without following a link at its name
    (unless ``follow``) and without blocking on a FIFO.

    ``FileNotFoundError`` when it is missing; :class:`OutputError` for a link or special file.
    """
    return _open_regular(Path(path), os.O_RDWR if write else os.O_RDONLY, what, follow=follow)


def open_append(path: str | Path, what: str = "log") -> int:
    """Open (create) the log ``path`` for appending and reading, never through a link; see :func:`append_line`."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(exc, path) from exc
    return _open_regular(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, what, create=True)


def read_regular(path: str | Path, what: str = "file", *, follow: bool = False) -> bytes:
    """The bytes of the regular file ``path`` (``FileNotFoundError`` when missing; FIFOs, and links unless
    ``follow``, refused)."""
    fd = open_existing(path, what, follow=follow)
    with os.fdopen(fd, "rb") as handle:
        return handle.read()


def write_all(fd: int, data: bytes, path: str | Path) -> None:
    """Write every byte of ``data`` at the descriptor's position; faults become :func:`write_error`."""
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view):]
    except OSError as exc:
        raise write_error(exc, path) from exc


def append_line(fd: int, payload: bytes, path: str | Path) -> None:
    """Append ``payload`` (whole lines) to the log open as ``fd`` (hold its lock), starting on a fresh line, fsynced.

    A log whose last byte is not a newline ends in a torn line (a writer was killed mid-write): a
    newline is written first, so the new records are never glued to it.
    """
    with signals_deferred():  # a signal waits until the record is whole and on disk
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            payload = b"\n" + payload
        try:
            write_all(fd, payload, path)
            os.fsync(fd)
        except (OSError, MMChangeError) as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)  # a write cut short by a full disk leaves no torn line behind
            if isinstance(exc, OSError):
                raise write_error(exc, path) from exc
            raise


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _temporary(path: Path) -> Path:
    """Create an exclusive temporary file beside ``path`` (``.<stem>.<random><suffix>``) and return its name."""
    for _ in range(100):
        tmp = path.with_name(f".{path.stem}.{secrets.token_hex(4)}{path.suffix or '.tmp'}")
        try:
            fd = create_exclusive(tmp, "temporary file")
        except OutputError:
            if os.path.lexists(tmp):  # a name already taken: draw another
                continue
            raise
        os.close(fd)
        return tmp
    raise OutputError(f"cannot create a temporary file beside {path}; clean up its folder")  # pragma: no cover


def _fsync_file(tmp: Path) -> None:
    fd = os.open(tmp, os.O_RDONLY | _O_NOFOLLOW | _O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path, what: str = "output") -> Iterator[Path]:
    """Yield a temporary path for a library that writes files itself; renamed onto ``path`` on success.

    ``path`` must not be a link or special file (:func:`refuse_unsafe`). On any error the temporary
    is removed; a full disk, quota, read-only or forbidden folder is reported as one
    :class:`OutputError` line naming ``path``.
    """
    path = Path(path)
    refuse_unsafe(path, what)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(exc, path) from exc
    tmp = _temporary(path)
    try:
        yield tmp
        _fsync_file(tmp)
        refuse_unsafe(path, what)  # a link planted while the file was written
        os.replace(tmp, path)
        forget_transient(tmp)
        _fsync_dir(path.parent)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        forget_transient(tmp)
        if not isinstance(exc, MMChangeError) and is_write_fault(exc, tmp, path):
            raise write_error(exc, path) from exc  # type: ignore[arg-type]
        raise
    pause_for_tests()


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb", what: str = "output") -> Iterator[IO]:
    """Open a temporary file that replaces ``path`` only when the block exits without error."""
    with atomic_path(path, what) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_TRUNC | _O_NOFOLLOW | _O_CLOEXEC | _O_BINARY)
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as handle:
            yield handle


def atomic_write_bytes(path: str | Path, data: bytes, what: str = "output") -> Path:
    """Write ``data`` to ``path`` atomically and return the path."""
    with atomic_path(path, what) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_TRUNC | _O_NOFOLLOW | _O_CLOEXEC | _O_BINARY)
        try:
            write_all(fd, data, path)
        finally:
            os.close(fd)
    return Path(path)


def atomic_write_text(path: str | Path, text: str, what: str = "output") -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically and return the path."""
    return atomic_write_bytes(path, text.encode("utf-8"), what)
