"""Integrity records: what a published install and its module file held at the moment of publishing.

The library lives for years on a volume that many hands can write, and "published" must keep
meaning the same bytes. At publish each install gets one record, a JSON-lines file: the first line
names the install's prefix and the module file's digest (so checking module files, which every
publish does, reads one line per module), each further line one entry of the prefix: a folder, a
symbolic link (its target, never followed) or a file (size, mode, mtime, sha256).

Checks read the install folder from the record, never from the layout: each build installs into a
prefix of its own (builder/execute/command.py), and what a record says it checked may not change.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NamedTuple

from builder.hostile_files import NotRegular, chunks, open_regular
from builder.jsonfile import Garbled, read_first_line
from builder.layout import Layout

#: Bumped when a record's shape changes; a reader refuses shapes it does not know.
VERSION = 1

#: How many paths of one kind (deleted, altered, added) a finding lists before it only counts them.
LISTED = 5


class Found(NamedTuple):
    """One entry on disk: ``name`` is opened relative to ``folder`` (a descriptor of its folder, so a
    network file system resolves one name per call, not every component of the path), or is a whole path
    when ``folder`` is None; ``path`` is relative to the prefix, as records hold it."""

    path: str
    name: str
    st: os.stat_result
    folder: int | None = None


def found(path: Path) -> Found:
    return Found(str(path), str(path), path.lstat())


def sha256(name: str | Path, folder: int | None = None) -> str:
    """The digest of a regular file; NotRegular for anything else (a link, FIFO, device or socket is never
    opened for reading, and a file swapped for one after it was listed is caught on its descriptor)."""
    digest = hashlib.sha256()
    for chunk in chunks(open_regular(name, folder)):
        digest.update(chunk)
    return digest.hexdigest()


def describe(entry: Found, digest: bool = True) -> dict:
    """One entry as a record holds it (links not followed); a file's digest only when ``digest``."""
    mode = entry.st.st_mode
    if stat.S_ISLNK(mode):
        return {"type": "link", "target": os.readlink(entry.name, dir_fd=entry.folder)}
    if stat.S_ISDIR(mode):
        return {"type": "dir", "mode": stat.S_IMODE(mode)}
    if not stat.S_ISREG(mode):
        return {"type": "other", "mode": mode}  # a fifo, socket or device: never opened
    described = {"type": "file", "size": entry.st.st_size, "mode": stat.S_IMODE(mode), "mtime_ns": entry.st.st_mtime_ns}
    if not digest:
        return described
    try:
        return {**described, "sha256": sha256(entry.name, entry.folder)}
    except NotRegular:  # replaced since it was listed: recorded as not a file, never read
        return {"type": "other", "mode": os.stat(entry.name, dir_fd=entry.folder, follow_symlinks=False).st_mode}


def matches(entry: Found, recorded: dict, thorough: bool) -> bool:
    """Whether ``entry`` still holds what was recorded. A file is read only when ``thorough`` or when its
    size or mtime moved: a quick check trusts an unchanged mtime, a thorough one trusts nothing. Regular
    files, nearly every entry, are compared field by field without describing them first."""
    st = entry.st
    if not stat.S_ISREG(st.st_mode) or recorded["type"] != "file":
        return describe(entry, digest=False) == {k: v for k, v in recorded.items() if k != "path"}
    if st.st_size != recorded["size"] or stat.S_IMODE(st.st_mode) != recorded["mode"]:
        return False
    if not thorough and st.st_mtime_ns == recorded["mtime_ns"]:
        return True
    try:
        return sha256(entry.name, entry.folder) == recorded["sha256"]
    except NotRegular:
        return False


def walk(prefix: Path, visit: Callable[[Found], None], skip: Callable[[str], bool] = lambda path: False) -> None:
    """``visit`` every entry below ``prefix`` (none when it is a link), links not followed, while its
    folder is open: each folder is read once through its descriptor and each entry stat-ed relative to it
    (one name per call on a network file system). Entries whose path ``skip`` names are not visited nor
    stat-ed (a folder among them is still entered)."""
    try:
        top = os.open(prefix, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return
    _walk_open(top, "", visit, skip)


def _walk_open(fd: int, rel: str, visit: Callable[[Found], None], skip: Callable[[str], bool]) -> None:
    """The open folder ``fd`` and below; closes ``fd``. A subfolder that cannot be opened (removed, or
    replaced by a link meanwhile) is not entered: its recorded entries show as deleted."""
    try:
        with os.scandir(fd) as listing:
            entries = list(listing)
        for item in entries:
            path = f"{rel}/{item.name}" if rel else item.name
            if skip(path):
                folder = item.is_dir(follow_symlinks=False)  # the listing's type: no stat
            else:
                try:
                    st = item.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue  # removed since it was listed
                visit(Found(path, item.name, st, fd))
                folder = stat.S_ISDIR(st.st_mode)
            if folder:
                try:
                    sub = os.open(item.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                except OSError:
                    continue
                _walk_open(sub, path, visit, skip)
    finally:
        os.close(fd)


def write_record(layout: Layout, tree: str, module: str, prefix: Path, module_file: Path) -> Path:
    """Record ``prefix``, ``module_file`` (its store path, whether or not it was moved there yet) and the
    module's manifest (written before, never changed after); the record replaces the previous one in one
    rename."""
    store_file = layout.module_file(tree, module)
    manifest = layout.manifest(tree, module)
    header = {"version": VERSION, "tree": tree, "module": module, "prefix": str(prefix), "recorded": time.time(),
              "module_file": {"path": str(store_file), **describe(found(module_file))}}
    if manifest.is_file():
        header["manifest"] = {"path": str(manifest), "sha256": sha256(manifest)}
    path = layout.integrity(tree, module)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    described: list[tuple[str, dict]] = []
    walk(prefix, lambda e: described.append((e.path, describe(e))))
    write_lines(tmp, header, described)
    os.replace(tmp, path)
    return path


def write_lines(path: Path, header: dict, described: list[tuple[str, dict]]) -> None:
    """A record: its header, then one line per entry in path order."""
    with open(path, "w") as out:
        out.write(json.dumps(header) + "\n")
        for rel, entry in sorted(described):
            out.write(json.dumps({"path": rel, **entry}) + "\n")


#: The fields each kind of entry must have for the checks to read it.
_FIELDS = {"file": ("size", "mode", "mtime_ns", "sha256"), "dir": ("mode",), "link": ("target",), "other": ("mode",)}


def read_header(path: Path) -> dict | None:
    """A record's first line, or None when there is no record. A record that is there but cannot be
    read (torn, garbled, another shape or version) is Garbled: damage, never "no record"."""
    header = read_first_line(path, "integrity record")
    if header is None:
        return None
    if header.get("version") != VERSION:
        raise Garbled(path, f"not an integrity record of version {VERSION}")
    module_file = header.get("module_file")
    if not isinstance(header.get("prefix"), str) or not isinstance(module_file, dict) \
            or not _entry_ok({**module_file, "path": module_file.get("path")}):
        raise Garbled(path, "integrity record lacks its prefix or module file")
    return header


def _entry_ok(entry: object) -> bool:
    return isinstance(entry, dict) and isinstance(entry.get("path"), str) \
        and all(k in entry for k in _FIELDS.get(entry.get("type"), ("",)))  # type: ignore[arg-type]


def read_entries(path: Path) -> list[dict]:
    """A record's entries, decoded as one JSON array (a call per line costs more than the check itself);
    Garbled when a line is torn or not an entry."""
    with open(path, "rb") as f:
        f.readline()
        lines = f.read().decode(errors="replace").splitlines()
    try:
        entries = json.loads("[" + ",".join(lines) + "]")
    except ValueError as err:
        raise Garbled(path, f"integrity record is torn or garbled ({err})") from None
    bad = next((i for i, e in enumerate(entries) if not _entry_ok(e)), None)
    if bad is not None:
        raise Garbled(path, f"line {bad + 2} of the integrity record is not an entry")
    return entries


def check_module_file(header: dict, thorough: bool = True) -> str | None:
    """What is wrong with the store's module file of a record, or None."""
    recorded = header["module_file"]
    path = Path(recorded["path"])
    try:
        entry = found(path)
    except FileNotFoundError:
        return f"module file {path} is missing from the store"
    if not matches(entry, recorded, thorough):
        return f"module file {path} was altered since publish (every kept generation shares it)"
    return None


def check_manifest(header: dict) -> str | None:
    """What is wrong with the module's manifest, or None (records written before they covered manifests
    do not check them)."""
    recorded = header.get("manifest")
    if not isinstance(recorded, dict):
        return None
    path = Path(str(recorded.get("path")))
    try:
        same = sha256(path) == recorded.get("sha256")
    except FileNotFoundError:
        return f"manifest {path} is missing"
    except NotRegular as err:
        return str(err)
    return None if same else f"manifest {path} was altered since publish"


def check_prefix(prefix: Path, entries: Iterable[dict], thorough: bool,
                 ignore: Callable[[str], bool] = lambda path: False) -> list[str]:
    """What differs between the install prefix (or a generation) and its record: deleted, altered and added
    entries; paths that ``ignore`` names (what a generation's record leaves to other records) are not
    looked at."""
    if not prefix.is_dir():
        return [f"install folder {prefix} is gone"]
    expected = {recorded["path"]: recorded for recorded in entries}
    changed: dict[str, list[str]] = {"deleted": [], "altered": [], "added": []}

    def visit(entry: Found) -> None:
        recorded = expected.pop(entry.path, None)
        if recorded is None:
            changed["added"].append(entry.path)
        elif not matches(entry, recorded, thorough):
            changed["altered"].append(entry.path)

    walk(prefix, visit, ignore)
    changed["deleted"] = [path for path in expected if not ignore(path)]
    return [_listed(kind, prefix, sorted(paths)) for kind, paths in changed.items() if paths]


def _listed(kind: str, prefix: Path, paths: list[str]) -> str:
    shown = ", ".join(paths[:LISTED]) + (f" and {len(paths) - LISTED} more" if len(paths) > LISTED else "")
    return f"{len(paths)} {'entry' if len(paths) == 1 else 'entries'} of {prefix} {kind}: {shown}"
