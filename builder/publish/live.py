"""Move a finished node's module file into the store, and remember what it was built from.

The store (``<root>/<tree>/modules/all``) is what builds and planning see; notebooks see it only
through a published view (builder/publish/view.py). Each file moves in with one rename, so the
store never holds half a module file, and older views keep the bytes they linked.
"""

from __future__ import annotations

import os
import shutil
import stat
import time
import uuid
from pathlib import Path

from builder import jsonfile
from builder.hostile_files import MODULE_FILE_LIMIT, NotRegular, read_below
from builder.layout import Layout
from builder.plan.graph import Node
from builder.publish.integrity import write_record


def read_manifest(layout: Layout, tree: str, module: str) -> dict | None:
    """A stored module's manifest, None when there is none; jsonfile.Garbled when it is not one."""
    return jsonfile.read_object(layout.manifest(tree, module))


def drifted(layout: Layout, node: Node) -> dict | None:
    """The recorded build of an installed node whose easyconfig changed since, or None. A garbled
    manifest says nothing about drift: verify and status report it as damage."""
    try:
        manifest = read_manifest(layout, node.tree, node.module) if node.installed else None
    except jsonfile.Garbled:
        return None
    return manifest if manifest and manifest.get("sha256") != node.sha256 else None


def _aside_paths(layout: Layout, tree: str, module: str) -> list[tuple[Path, Path]]:
    """(current, kept aside) for the module file, its manifest and its integrity record: what a rebuild
    replaces stays aside until its view is published, and goes back if it is not."""
    current = [layout.module_file(tree, module), layout.manifest(tree, module), layout.integrity(tree, module)]
    return [(path, layout.manifest(tree, module).with_name(f".{path.name}.previous")) for path in current]


def publish_node(layout: Layout, node: Node, record: str, prefix: str, references: list[str]) -> Path:
    """Copy the staged module file (and a ``default`` marker EasyBuild wrote) into the store, with a
    manifest naming the build's prefix; what it replaces is kept aside until ``settle_node``. The runner
    reads the staged file itself (hostile_files: a regular file, no link on the way, bounded) and writes
    the store's file from those bytes: what a build left there is never moved into the store as it is."""
    staging = layout.staging(node.tree, node.module)
    try:
        content = read_below(staging, f"all/{node.module}.lua", MODULE_FILE_LIMIT)
    except FileNotFoundError:
        raise FileNotFoundError(f"EasyBuild reported success but wrote no module file at "
                                f"{staging / 'all' / node.module}.lua") from None
    default = _default_marker(staging, node.module)
    live = layout.module_file(node.tree, node.module)
    live.parent.mkdir(parents=True, exist_ok=True)
    manifest = layout.manifest(node.tree, node.module)
    manifest.parent.mkdir(parents=True, exist_ok=True)
    if live.is_file() and manifest.is_file():
        for path, aside in _aside_paths(layout, node.tree, node.module):
            if path.exists():
                os.link(path, aside)  # a link: the store's file itself is replaced by a rename below
    jsonfile.write(manifest, {"module": node.module, "easyconfig": str(node.easyconfig), "sha256": node.sha256,
                              "moduleclass": node.moduleclass, "published": time.time(), "record": record,
                              "prefix": prefix, "references": references}, indent=2, sort_keys=True)
    # written beside the manifest, never in the store: a file in the store that no record names is damage
    fresh = manifest.with_name(f".{manifest.stem}.lua.{uuid.uuid4().hex[:8]}")
    try:
        fresh.write_bytes(content)
        write_record(layout, node.tree, node.module, layout.install_dir(Path(prefix), node.module), fresh)
        os.replace(fresh, live)
    finally:
        fresh.unlink(missing_ok=True)
    if default is not None:
        marker = manifest.with_name(f".{manifest.stem}.default.{uuid.uuid4().hex[:8]}")
        marker.symlink_to(default)
        os.replace(marker, live.parent / "default")
    shutil.rmtree(staging, ignore_errors=True)
    return live


def _default_marker(staging: Path, module: str) -> str | None:
    """The target of EasyBuild's ``default`` marker beside the staged module file, or None when it wrote
    none. EasyBuild makes it a link to the module file's own name; anything else (a link elsewhere, a
    file, a FIFO) is not EasyBuild's and fails the build."""
    marker = (staging / "all" / f"{module}.lua").with_name("default")
    try:
        st = marker.lstat()
    except FileNotFoundError:
        return None
    expected = f"{module.rsplit('/', 1)[-1]}.lua"
    if not stat.S_ISLNK(st.st_mode) or os.readlink(marker) != expected:
        raise NotRegular(marker, f"is not EasyBuild's default marker (a link to {expected})")
    return expected


def settle_node(layout: Layout, node: Node) -> None:
    """The node's view is live: what it replaced is no longer needed to take it back."""
    for _, aside in _aside_paths(layout, node.tree, node.module):
        aside.unlink(missing_ok=True)


def retract_node(layout: Layout, node: Node) -> None:
    """Take a module back out of the store when no view could be published with it: a rebuild puts back
    the module it replaced (still published in the live view), a first build leaves nothing, so the
    next run builds it again instead of trusting it."""
    kept = _aside_paths(layout, node.tree, node.module)
    if all(aside.exists() for _, aside in kept[:2]):
        for path, aside in kept:
            if aside.exists():
                os.replace(aside, path)
        return
    retract_node_files(layout, node.tree, node.module)


def retract_node_files(layout: Layout, tree: str, module: str) -> None:
    """The module file, its manifest and integrity record out of the store (older generations keep
    their links)."""
    for path, _ in _aside_paths(layout, tree, module):
        path.unlink(missing_ok=True)

