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
"""

from __future__ import annotations

import contextlib
import os
import re
import time
import uuid
from pathlib import Path

ENTRY = re.compile(r"^(plan|parse|valid)-[0-9a-f]+\.json$")
MAX_PER_KIND = 16
MAX_BYTES = 128 << 20
#: A temporary file or a pruner's private name this old belongs to a process that died.
ABANDONED_S = 3600
#: A read refreshes an entry's mtime when it is older than this.
REFRESH_S = 3600


def read_entry(path: Path) -> bytes:
    """An entry's bytes, marked as used (see the module's docstring)."""
    with open(path, "rb") as f:
        data = f.read()
        if time.time() - os.fstat(f.fileno()).st_mtime > REFRESH_S:
            with contextlib.suppress(OSError):  # a read-only or foreign cache: it ages, nothing else
                os.utime(f.fileno())
    return data


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
        elif name.startswith((".plan-", ".parse-", ".valid-", ".prune-")) and now - st.st_mtime > ABANDONED_S:
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
