"""Old build prefixes: removed only when nothing published names them, and a grace period after that.

Every build installs into a fresh prefix (builder/execute/command.py), so a rebuild leaves the prefix it
replaced behind. A running kernel may still have its files open, and a kept generation's module files
(shells that resolved ``live`` a moment before a swap) or another install's files (RPATHs, scripts,
``.pth`` files of dependents built against it) may still name it. A prefix goes when none of those
name it and it has been unreferenced for the grace period (``installs.grace_period_hours``); the time
it was first found unreferenced is kept in a marker beside the prefixes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Iterable
from pathlib import Path

from builder import jsonfile
from builder.layout import Layout


def _names(text: bytes, pattern: re.Pattern[bytes]) -> set[str]:
    return {m.decode() for m in pattern.findall(text)}


def prefix_pattern(layout: Layout, trees: Iterable[str]) -> re.Pattern[bytes]:
    """Matches a prefix path of any tree in bytes (module files, scripts, binaries' RPATHs)."""
    roots = "|".join(re.escape(str(layout.software(t))) for t in sorted(trees))
    return re.compile(rb"((?:" + roots.encode() + rb")/[^/\s\"':;]+)")


def references(install_dir: Path, pattern: re.Pattern[bytes], own: Path) -> list[str]:
    """Other prefixes the files of a new install name: recorded at publish, so one that a dependent
    was built against is kept while the dependent is published."""
    found: set[str] = set()
    for folder, _, files in os.walk(install_dir):
        for name in files:
            path = Path(folder, name)
            if not path.is_symlink():
                found |= _names(path.read_bytes(), pattern)
    return sorted(found - {str(own)})


def referenced(layout: Layout, trees: list[str], generations: list[Path]) -> set[str]:
    """Prefixes named by a module file of the store or of a kept generation, or by a published install."""
    pattern = prefix_pattern(layout, trees)
    out: set[str] = set()
    seen: set[int] = set()
    folders = [layout.store(t) for t in trees] + [layout.view_tree(g, t) for g in generations for t in trees]
    for folder in folders:
        for path in folder.rglob("*.lua") if folder.is_dir() else []:
            inode = path.stat().st_ino
            if inode not in seen:  # generations hard-link the store's files: read each once
                seen.add(inode)
                out |= _names(path.read_bytes(), pattern)
    for tree in trees:
        for manifest in layout.manifests(tree).glob("*.json"):
            data = json.loads(manifest.read_text())
            out |= {data.get("prefix", "")} | set(data.get("references", []))
    return out


def _kept(prefix: Path, keep: set[str]) -> bool:
    return str(prefix) in keep or any(k.startswith(f"{prefix}/") for k in keep)


def in_use(layout: Layout, trees: list[str], generations: list[Path], tree: str, prefix: Path) -> bool:
    """Whether anything still names ``prefix``: what ``collect`` keeps, or its grace period (a removed or
    replaced install that kernels may still have open). Such a prefix is never built into again."""
    if _kept(prefix, referenced(layout, trees, generations)):
        return True
    return prefix.name in (jsonfile.read(layout.unreferenced(tree)) or {})


def collect(layout: Layout, trees: list[str], generations: list[Path], grace_seconds: float,
            now: float | None = None) -> list[Path]:
    """Remove the prefixes unreferenced for longer than the grace period; returns them."""
    now = time.time() if now is None else now
    keep = referenced(layout, trees, generations)
    removed = []
    for tree in trees:
        software = layout.software(tree)
        markers_path = layout.unreferenced(tree)
        markers = jsonfile.read(markers_path) or {}
        current = {}
        for prefix in sorted(p for p in software.iterdir() if p.is_dir()) if software.is_dir() else []:
            if _kept(prefix, keep):
                continue
            since = float(markers.get(prefix.name, now))
            if now - since >= grace_seconds:
                shutil.rmtree(prefix)
                removed.append(prefix)
            else:
                current[prefix.name] = since
        if current or markers_path.exists():
            jsonfile.write(markers_path, current, indent=1, sort_keys=True)
    return removed
