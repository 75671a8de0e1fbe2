"""Reading what a build left on the volume, and what others may have planted in the cache, as hostile data.

A build writes its prefix and its staging folder, and may leave there anything a shell can make: a
link to a file elsewhere (publishing it would let whoever owns the target change what notebooks load),
a FIFO (reading it blocks forever while the run's heartbeat keeps the lock fresh), a device, a socket,
a file of any size. So the runner opens build output only through these functions: every path
component without following links, without blocking (``O_NONBLOCK``), and reads only what ``fstat``
of the opened descriptor says is a regular file, in bounded chunks or up to a stated size. A file
swapped between a listing and its opening is caught the same way, since the check is on the descriptor.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

#: Read size of one chunk: what scanning or hashing a file holds in memory at a time.
CHUNK = 1 << 20

#: The largest module file the runner takes from a build (EasyBuild writes a few kilobytes).
MODULE_FILE_LIMIT = 4 << 20

_NOFOLLOW = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class NotRegular(OSError):
    """Build output that is not what the runner may read: a link, a FIFO, a device, a socket, a folder
    where a file is expected, or a file over its size limit. ``str()`` is the whole message."""

    def __init__(self, path: str | Path, problem: str):
        super().__init__(errno.EINVAL, f"{path}: {problem}")
        self.filename = str(path)

    def __str__(self) -> str:
        return str(self.strerror)


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return "not a regular file"


def open_regular(name: str | Path, folder: int | None = None, shown: str | Path | None = None) -> int:
    """A descriptor of the regular file ``name`` (relative to the open folder ``folder``, or a path whose
    last component must not be a link). Raises NotRegular for anything else, without blocking on it."""
    shown = shown if shown is not None else name
    try:
        fd = os.open(name, _NOFOLLOW, dir_fd=folder)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise NotRegular(shown, "is a symbolic link, not a regular file") from None
        if err.errno in (errno.ENXIO, errno.EOPNOTSUPP):  # a socket, a FIFO without writer on some systems
            raise NotRegular(shown, "is a special file, not a regular file") from None
        raise
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise NotRegular(shown, f"is {_kind(mode)}, not a regular file")
    return fd


def open_below(base: Path, rel: str) -> int:
    """A descriptor of the regular file ``rel`` below the folder ``base``, no component of ``rel`` (nor
    ``base`` itself) followed if it is a link: a build that replaced a folder on the way by a link to
    elsewhere is caught too."""
    parts = [p for p in rel.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise NotRegular(base / rel, "is not a plain relative path")
    try:
        folder = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.ENOTDIR):
            raise NotRegular(base, "is not a folder (a link or a file)") from None
        raise
    try:
        for i, part in enumerate(parts[:-1]):
            try:
                sub = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=folder)
            except OSError as err:
                if err.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise NotRegular(base.joinpath(*parts[:i + 1]), "is not a folder (a link or a file)") from None
                raise
            os.close(folder)
            folder = sub
        return open_regular(parts[-1], folder, shown=base / rel)
    finally:
        os.close(folder)


def read_below(base: Path, rel: str, limit: int) -> bytes:
    """The bytes of the regular file ``rel`` below ``base`` (see ``open_below``), at most ``limit``."""
    with os.fdopen(open_below(base, rel), "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise NotRegular(base / rel, f"is larger than {limit} bytes")
    return data


def chunks(fd: int) -> Iterator[bytes]:
    """The bytes of an open file, CHUNK at a time; closes ``fd``."""
    with os.fdopen(fd, "rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


def is_real_folder(path: Path) -> bool:
    """Whether ``path`` itself (not a link's target) is a folder."""
    try:
        return stat.S_ISDIR(path.lstat().st_mode)
    except FileNotFoundError:
        return False


def remove(path: Path, ignore_errors: bool = False) -> None:
    """Remove what is at ``path``, whatever a build made of it: a folder with everything in it (links in
    it removed, never followed), or a link, file, FIFO or socket itself. Nothing there is fine."""
    try:
        if stat.S_ISDIR(path.lstat().st_mode):
            shutil.rmtree(path, ignore_errors=ignore_errors)
        else:
            path.unlink()
    except FileNotFoundError:
        return
    except OSError:
        if not ignore_errors:
            raise
