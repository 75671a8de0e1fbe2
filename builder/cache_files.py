"""The upkeep of ``$MODLIB_CACHE``: every change of a plan's inputs makes new entries (``plan-*.json``,
``parse-*.json``; ``valid-*.json`` for each library.yaml that passed its schema) and leaves the old ones
behind, so each write prunes the folder to the most recently used entries, a bounded count of each kind
and a bounded size in all.

The folder may be a volume shared by runs on several hosts, so nothing here may break another process:

* entries are written whole and renamed into place (``builder/jsonfile.py``); temporary files are
  removed only when they are an hour old (their writer died between writing and renaming);
* a reader holds no entry open beyond one read, and every read failure is a cache miss, so an entry
  removed under a reader (or gone stale on a network file system) costs that reader a fresh plan;
* an entry is removed by renaming it to a private name first, then checking it is still the file that
  was judged old: one rewritten in between (a new inode, or its mtime refreshed by a reader) is linked
  back, unless an even newer one took the name meanwhile. Two pruners never remove one entry twice: one
  rename wins, the other finds nothing;
* "recently used" is the mtime, which a read refreshes at most once an hour, so that hits do not write
  to the volume on every ``modlib status``.

Every entry is signed: an entry's digest alone is no proof, as whoever can write the folder can
recompute it. The folder's ``secret`` (32 random bytes, mode 0600, the runner's own) keys an HMAC over
each entry; an entry whose MAC does not match is a miss (parsed, planned or validated again), never an
error. The secret is made once, whole (written to a private name, then linked to ``secret``, which fails
when another process made it first), and trusted only as a regular file of this user that nobody else
can read: otherwise entries are neither read nor written.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import os
import re
import time
import uuid
from pathlib import Path

from builder.hostile_files import open_regular

ENTRY = re.compile(r"^(plan|parse|valid)-[0-9a-f]+\.json$")
MAX_PER_KIND = 16
MAX_BYTES = 128 << 20
#: A temporary file or a pruner's private name this old belongs to a process that died.
ABANDONED_S = 3600
#: A read refreshes an entry's mtime when it is older than this.
REFRESH_S = 3600
#: The key of the folder's signed entries (the module's docstring).
SECRET = "secret"
SECRET_BYTES = 32
#: Names of files being written (jsonfile's temporaries, a new secret) and of entries being removed.
_TEMPORARY = (".plan-", ".parse-", ".valid-", ".prune-", f".{SECRET}-")


def read_entry(path: Path) -> bytes:
    """An entry's bytes, marked as used (see the module's docstring). Only a regular file of at most
    ``MAX_BYTES`` is read: a link, FIFO or device planted under an entry's name is a miss (OSError), not a
    hang or a read of another file."""
    fd = open_regular(path)
    with open(fd, "rb") as f:
        st = os.fstat(fd)
        if st.st_size > MAX_BYTES:
            raise OSError(f"{path}: not a regular file of at most {MAX_BYTES} bytes")
        data = f.read(MAX_BYTES + 1)
        if time.time() - st.st_mtime > REFRESH_S:
            with contextlib.suppress(OSError):  # a read-only or foreign cache: it ages, nothing else
                os.utime(fd)
    return data


@functools.cache
def secret(folder: Path) -> bytes | None:
    """The folder's signing key, made on first use; None where it cannot be made or is not this user's
    alone (then no signed entry is trusted or written). Read once per process."""
    try:
        return _read_secret(folder / SECRET)
    except FileNotFoundError:
        pass
    except OSError:
        return None
    try:
        _make_secret(folder)
        return _read_secret(folder / SECRET)
    except OSError:
        return None


def _read_secret(path: Path) -> bytes | None:
    fd = open_regular(path)
    try:
        st = os.fstat(fd)
        if st.st_uid != os.geteuid() or st.st_mode & 0o077 or st.st_size != SECRET_BYTES:
            return None
        data = os.read(fd, SECRET_BYTES + 1)
        return data if len(data) == SECRET_BYTES else None
    finally:
        os.close(fd)


def _make_secret(folder: Path) -> None:
    """Write a fresh secret to a private name and link it to ``secret``: readers see it whole or not at all,
    and of two processes making it at once, the first link wins and both use that one."""
    folder.mkdir(parents=True, exist_ok=True)
    private = folder / f".{SECRET}-{uuid.uuid4().hex}"
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(os.urandom(SECRET_BYTES))
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(private, folder / SECRET)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(private)


def sign(key: bytes, *parts: bytes) -> str:
    """An entry's MAC under the folder's secret: ``parts`` are what the entry must not be moved or edited off."""
    mac = hmac.new(key, digestmod=hashlib.sha256)
    for part in parts:
        mac.update(len(part).to_bytes(8, "big"))
        mac.update(part)
    return mac.hexdigest()


def signed(key: bytes, mac: object, *parts: bytes) -> bool:
    return isinstance(mac, str) and hmac.compare_digest(mac, sign(key, *parts))


def prune(folder: Path, max_per_kind: int = MAX_PER_KIND, max_bytes: int = MAX_BYTES) -> None:
    """Keep the most recently used entries, ``max_per_kind`` of each kind and ``max_bytes`` in all (the
    newest entry always), and remove abandoned temporary files."""
    try:
        names = os.listdir(folder)
    except OSError:
        return
    now, entries = time.time(), []
    for name in names:
        try:
            st = os.lstat(folder / name)
        except OSError:
            continue  # removed by another process meanwhile
        if ENTRY.match(name):
            entries.append((st.st_mtime_ns, name, st))
        elif name.startswith(_TEMPORARY) and now - st.st_mtime > ABANDONED_S:
            with contextlib.suppress(OSError):
                os.unlink(folder / name)
    kept: dict[str, int] = {}
    total = 0
    for _, name, st in sorted(entries, reverse=True):
        kind = name.split("-", 1)[0]
        if kept.get(kind, 0) < max_per_kind and (total + st.st_size <= max_bytes or total == 0):
            kept[kind] = kept.get(kind, 0) + 1
            total += st.st_size
        else:
            remove(folder / name, st)


def remove(path: Path, judged: os.stat_result) -> None:
    """Remove the entry at ``path`` if it is still the file ``judged`` describes (see the docstring)."""
    private = path.with_name(f".prune-{path.name}.{uuid.uuid4().hex[:8]}")
    try:
        os.rename(path, private)
    except OSError:
        return  # removed or renamed by another pruner first
    try:
        now = os.lstat(private)
        if (now.st_ino, now.st_mtime_ns) != (judged.st_ino, judged.st_mtime_ns):
            os.link(private, path)  # rewritten or used since it was judged: put it back
    except OSError:
        pass  # a newer entry holds the name already
    finally:
        with contextlib.suppress(OSError):
            os.unlink(private)
