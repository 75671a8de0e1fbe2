"""A read-only FUSE passthrough that adds a fixed delay to every file-system operation.

Notebook pods read the module library from a Kubernetes RWX volume (NFS, CephFS, ...), where each
metadata call (stat, open, readdir) is a network round trip. Lmod makes thousands of such calls on a
1000-module tree, so its speed there is dominated by the number of calls times the round-trip time.
This file system reproduces that on one machine: it mirrors SRC at MOUNTPOINT and sleeps
``--delay-ms`` (default 1 ms) before answering each request the kernel sends it.

The kernel's own attribute and directory-entry caches are switched off by default
(``--cache-timeout 0``), so every lookup reaches the daemon and pays the delay. That is the pessimistic
end of what network file systems do (NFS revalidates attributes on every open, and caches them for a
few seconds); pass e.g. ``--cache-timeout 3`` to model NFS's attribute cache instead.

Command line::

    python bench/latencyfs.py SRC MOUNTPOINT [--delay-ms 1] [--cache-timeout 0] [--background] [--stats FILE]

From Python::

    with mounted(src, mountpoint, delay_ms=1.0, stats_path=None):
        ...  # mountpoint mirrors src; unmounted with fusermount -u on exit

Needs Debian's ``fuse`` and ``libfuse2`` and PyPI's ``fusepy``.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import errno
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from fuse import FUSE, FuseOSError, Operations

#: How long to wait for a mount to appear or disappear before giving up.
_MOUNT_TIMEOUT_S = 20.0


class LatencyPassthrough(Operations):
    """Mirror of a source folder, read-only, with a sleep before every operation.

    The delay sits in ``__call__``, fusepy's single entry point for all operations, so no operation
    (including release, flush, getxattr, opendir) escapes it. Operations are counted, so that a
    benchmark can tell how many round trips a command made.
    """

    use_ns = True  # fusepy: timestamps as integer nanoseconds (the float form is deprecated)

    def __init__(self, source: str, delay_ms: float, stats_path: str | None = None):
        self.source = os.path.realpath(source)
        self.delay_s = delay_ms / 1000.0
        self.stats_path = stats_path
        self.counts: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()

    def __call__(self, op, *args):
        with self._lock:
            self.counts[op] += 1
        if self.delay_s > 0:
            time.sleep(self.delay_s)
        return super().__call__(op, *args)

    def _real(self, path: str) -> str:
        """The source path behind a path inside the mount (fusepy passes absolute, mount-relative paths)."""
        return os.path.join(self.source, path.lstrip("/"))

    # -- metadata -------------------------------------------------------------------------------------

    def getattr(self, path, fh=None):
        st = os.lstat(self._real(path))
        keys = ("st_mode", "st_nlink", "st_uid", "st_gid", "st_size", "st_ino", "st_dev", "st_blocks")
        attrs = {key: getattr(st, key) for key in keys}
        attrs.update(st_atime=st.st_atime_ns, st_mtime=st.st_mtime_ns, st_ctime=st.st_ctime_ns)
        return attrs

    def access(self, path, amode):
        if amode & os.W_OK:
            raise FuseOSError(errno.EROFS)
        if not os.access(self._real(path), amode):
            raise FuseOSError(errno.EACCES)
        return 0

    def readlink(self, path):
        return os.readlink(self._real(path))

    def readdir(self, path, fh):
        return [".", ".."] + os.listdir(self._real(path))

    def statfs(self, path):
        sv = os.statvfs(self._real(path))
        keys = ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree", "f_files",
                "f_flag", "f_frsize", "f_namemax")
        return {key: getattr(sv, key) for key in keys}

    # -- file contents --------------------------------------------------------------------------------

    def open(self, path, flags):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC):
            raise FuseOSError(errno.EROFS)
        return os.open(self._real(path), os.O_RDONLY)

    def read(self, path, size, offset, fh):
        return os.pread(fh, size, offset)

    def release(self, path, fh):
        os.close(fh)
        return 0

    def destroy(self, path):
        """Called at unmount: leave the operation counts where the benchmark can read them."""
        if self.stats_path:
            Path(self.stats_path).write_text(json.dumps(dict(self.counts), sort_keys=True))


def serve(source: str, mountpoint: str, delay_ms: float, cache_timeout: float,
          stats_path: str | None = None, foreground: bool = True, allow_other: bool = False) -> None:
    """Mount and serve until unmounted (blocks when foreground). ``allow_other``: users other than the
    mounting one may read it (root may always ask; others need user_allow_other in /etc/fuse.conf)."""
    ops = LatencyPassthrough(source, delay_ms, stats_path)
    options = {"attr_timeout": cache_timeout, "entry_timeout": cache_timeout,
               "negative_timeout": cache_timeout, **({"allow_other": True} if allow_other else {})}
    FUSE(ops, mountpoint, foreground=foreground, nothreads=False, ro=True,
         fsname=f"latencyfs:{ops.source}", subtype="latencyfs", **options)


def _wait_until(predicate, what: str, proc: subprocess.Popen | None = None) -> None:
    """Poll ``predicate`` until true; fail early if the FUSE process died, so errors are not hidden."""
    deadline = time.monotonic() + _MOUNT_TIMEOUT_S
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"latencyfs exited with {proc.returncode} before {what}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)


def unmount(mountpoint: str | os.PathLike) -> None:
    """Unmount with fusermount, the unprivileged way that also works for root."""
    subprocess.run(["fusermount", "-u", os.fspath(mountpoint)], check=True)


@contextlib.contextmanager
def mounted(source: str | os.PathLike, mountpoint: str | os.PathLike, delay_ms: float = 1.0,
            cache_timeout: float = 0.0, stats_path: str | os.PathLike | None = None,
            allow_other: bool = False) -> Iterator[Path]:
    """Mount ``source`` at ``mountpoint`` in a child process for the duration of the block.

    A separate process, not a thread: the FUSE loop holds the GIL for Python callbacks, and a daemon
    inside the benchmark process would slow the benchmark's own timing code and vice versa.
    """
    mnt = Path(mountpoint)
    mnt.mkdir(parents=True, exist_ok=True)
    if os.path.ismount(mnt):
        raise RuntimeError(f"{mnt} is already a mount point")
    cmd = [sys.executable, os.path.abspath(__file__), os.fspath(source), os.fspath(mnt),
           "--delay-ms", str(delay_ms), "--cache-timeout", str(cache_timeout)]
    if stats_path:
        cmd += ["--stats", os.fspath(stats_path)]
    if allow_other:
        cmd.append("--allow-other")
    proc = subprocess.Popen(cmd)
    try:
        _wait_until(lambda: os.path.ismount(mnt), f"{mnt} to be mounted", proc)
        yield mnt
    finally:
        if os.path.ismount(mnt):
            unmount(mnt)
        try:
            proc.wait(timeout=_MOUNT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.terminate()
            proc.wait()


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="folder to mirror")
    parser.add_argument("mountpoint", help="where to mount it (an existing empty folder)")
    parser.add_argument("--delay-ms", type=float, default=1.0, help="sleep before every operation (ms)")
    parser.add_argument("--cache-timeout", type=float, default=0.0,
                        help="kernel attribute/entry cache timeout in seconds (0: every lookup pays)")
    parser.add_argument("--stats", help="write operation counts (JSON) here at unmount")
    parser.add_argument("--allow-other", action="store_true", help="let other users read it (FUSE's allow_other)")
    parser.add_argument("--background", action="store_true", help="daemonize after mounting")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    stats = os.path.abspath(args.stats) if args.stats else None
    serve(args.source, args.mountpoint, args.delay_ms, args.cache_timeout, stats,
          foreground=not args.background, allow_other=args.allow_other)


if __name__ == "__main__":
    main()
