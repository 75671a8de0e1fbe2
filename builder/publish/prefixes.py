"""Old build prefixes: removed only when nothing published names them, and a grace period after that.

Every build installs into a fresh prefix (builder/execute/command.py), so a rebuild leaves the prefix it
replaced behind. A running kernel may still have its files open, and a kept generation's module files
(shells that resolved ``live`` a moment before a swap) or another install's files (RPATHs, scripts,
``.pth`` files of dependents built against it) may still name it. A prefix goes when none of those
name it and it has been unreferenced for the grace period (``installs.grace_period_hours``); the time
it was first found unreferenced is kept in a marker beside the prefixes.
"""

from __future__ import annotations

import re
import stat
import time
from collections.abc import Iterable
from pathlib import Path

from builder import jsonfile
from builder.hostile_files import NotRegular, chunks, is_real_folder, open_regular, remove
from builder.layout import Layout
from builder.publish.integrity import Found, walk


def _names(text: bytes, pattern: re.Pattern[bytes]) -> set[str]:
    return {m.decode(errors="replace") for m in pattern.findall(text)}


#: Bytes kept from one chunk to the next while scanning, so that a path cut by a chunk's end is found
#: whole in the next (longer than any path: PATH_MAX).
_OVERLAP = 4096


def scan(fd: int, pattern: re.Pattern[bytes]) -> set[str]:
    """The prefixes named in an open regular file, read a chunk at a time (memory stays bounded whatever
    the file's size); a name touching a chunk's end is taken from the next window, where it ends."""
    out: set[str] = set()
    carry = b""
    for chunk in chunks(fd):
        window = carry + chunk
        out |= {m.group(1).decode(errors="replace") for m in pattern.finditer(window) if m.end() < len(window)}
        carry = window[-_OVERLAP:]
    return out | _names(carry, pattern)


def _scan_entry(entry: Found, pattern: re.Pattern[bytes]) -> set[str]:
    """A regular file's names; links, FIFOs, sockets and devices are never opened."""
    if not stat.S_ISREG(entry.st.st_mode):
        return set()
    try:
        return scan(open_regular(entry.name, entry.folder, shown=entry.path), pattern)
    except NotRegular:
        return set()  # replaced by something else since it was listed


def prefix_pattern(layout: Layout, trees: Iterable[str]) -> re.Pattern[bytes]:
    """Matches a prefix path of any tree in bytes (module files, scripts, binaries' RPATHs)."""
    roots = "|".join(re.escape(str(layout.software(t))) for t in sorted(trees))
    return re.compile(rb"((?:" + roots.encode() + rb")/[^/\s\"':;]+)")


def references(install_dir: Path, pattern: re.Pattern[bytes], own: Path) -> list[str]:
    """Other prefixes the files of a new install name: recorded at publish, so one that a dependent
    was built against is kept while the dependent is published. The install is the build's output:
    walked without following links, and only its regular files are read."""
    found: set[str] = set()
    walk(install_dir, lambda entry: found.update(_scan_entry(entry, pattern)))
    return sorted(found - {str(own)})


def referenced(layout: Layout, trees: list[str], generations: list[Path]) -> set[str]:
    """Prefixes named by a module file of the store or of a kept generation, or by a published install."""
    pattern = prefix_pattern(layout, trees)
    out: set[str] = set()
    seen: set[int] = set()
    folders = [layout.store(t) for t in trees] + [layout.view_tree(g, t) for g in generations for t in trees]

    def visit(entry: Found) -> None:
        # generations hard-link the store's files: read each once
        if entry.name.endswith(".lua") and entry.st.st_ino not in seen:
            seen.add(entry.st.st_ino)
            out.update(_scan_entry(entry, pattern))

    for folder in folders:
        walk(folder, visit)
    for tree in trees:
        for manifest in sorted(layout.manifests(tree).glob("*.json")):
            data = jsonfile.read_object(manifest) or {}
            refs = data.get("references", [])
            out |= {str(data.get("prefix", ""))} | {str(r) for r in (refs if isinstance(refs, list) else [])}
    return out


def _named_by(prefix: Path, keep: set[str]) -> bool:
    return str(prefix) in keep or any(k.startswith(f"{prefix}/") for k in keep)


def in_use(layout: Layout, trees: list[str], generations: list[Path], tree: str, prefix: Path) -> bool:
    """Whether anything still names ``prefix``: what ``collect`` keeps, or its grace period (a removed or
    replaced install that kernels may still have open). Such a prefix is never built into again."""
    if _named_by(prefix, referenced(layout, trees, generations)):
        return True
    return prefix.name in _markers(layout.unreferenced(tree))


def _markers(path: Path) -> dict:
    """When each prefix was first found unreferenced; a garbled file restarts every grace period."""
    try:
        return jsonfile.read_object(path) or {}
    except jsonfile.Garbled:
        return {}


def _since(markers: dict, name: str, now: float) -> float:
    try:
        return float(markers.get(name, now))
    except (TypeError, ValueError):
        return now  # a garbled marker: the grace period starts again, never ends early


def collect(layout: Layout, trees: list[str], generations: list[Path], grace_seconds: float,
            now: float | None = None) -> list[Path]:
    """Remove the prefixes unreferenced for longer than the grace period; returns them. Whatever else is
    in ``software/`` (a link, a file, a FIFO a build left) counts as a prefix: it is removed itself,
    never followed, so nothing there can stop a run's cleanup."""
    now = time.time() if now is None else now
    keep = referenced(layout, trees, generations)
    removed = []
    for tree in trees:
        software = layout.software(tree)
        markers_path = layout.unreferenced(tree)
        markers = _markers(markers_path)
        current = {}
        names = sorted(p for p in software.iterdir() if not p.name.startswith(".")) if is_real_folder(software) else []
        for prefix in names:
            if _named_by(prefix, keep):
                continue
            since = _since(markers, prefix.name, now)
            if now - since >= grace_seconds:
                remove(prefix)
                removed.append(prefix)
            else:
                current[prefix.name] = since
        if current or markers_path.exists():
            jsonfile.write(markers_path, current, indent=1, sort_keys=True)
    return removed
