"""Move a finished node's module file into the store, and remember what it was built from.

The store (``<root>/<tree>/modules/all``) is what builds and planning see; notebooks see it only
through a published view (builder/publish/view.py). Each file moves in with one rename, so the
store never holds half a module file, and older views keep the bytes they linked.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from builder import jsonfile
from builder.layout import Layout
from builder.plan.graph import Node
from builder.publish.integrity import write_record


def read_manifest(layout: Layout, tree: str, module: str) -> dict | None:
    return jsonfile.read(layout.manifest(tree, module))


def drifted(layout: Layout, node: Node) -> dict | None:
    """The recorded build of an installed node whose easyconfig changed since, or None."""
    manifest = read_manifest(layout, node.tree, node.module) if node.installed else None
    return manifest if manifest and manifest["sha256"] != node.sha256 else None


def _kept(layout: Layout, tree: str, module: str) -> list[tuple[Path, Path]]:
    """(current, kept aside) for the module file, its manifest and its integrity record: what a rebuild
    replaces stays aside until its view is published, and goes back if it is not."""
    current = [layout.module_file(tree, module), layout.manifest(tree, module), layout.integrity(tree, module)]
    return [(path, layout.manifest(tree, module).with_name(f".{path.name}.previous")) for path in current]


def publish_node(layout: Layout, node: Node, record: str, prefix: str, references: list[str]) -> Path:
    """Move the staged module file (and a ``default`` marker EasyBuild wrote) into the store, with a
    manifest naming the build's prefix; what it replaces is kept aside until ``settle_node``."""
    staged_all = layout.staging(node.tree, node.module) / "all"
    staged = staged_all / f"{node.module}.lua"
    if not staged.is_file():
        raise FileNotFoundError(f"EasyBuild reported success but wrote no module file at {staged}")
    live = layout.module_file(node.tree, node.module)
    live.parent.mkdir(parents=True, exist_ok=True)
    manifest = layout.manifest(node.tree, node.module)
    manifest.parent.mkdir(parents=True, exist_ok=True)
    if live.is_file() and manifest.is_file():
        for path, aside in _kept(layout, node.tree, node.module):
            if path.exists():
                os.link(path, aside)  # a link: the store's file itself is replaced by a rename below
    jsonfile.write(manifest, {"module": node.module, "easyconfig": str(node.easyconfig), "sha256": node.sha256,
                              "moduleclass": node.moduleclass, "published": time.time(), "record": record,
                              "prefix": prefix, "references": references}, indent=2, sort_keys=True)
    write_record(layout, node.tree, node.module, layout.install_dir(Path(prefix), node.module), staged)
    os.replace(staged, live)
    default = staged.parent / "default"
    if default.is_symlink():
        os.replace(default, live.parent / "default")
    shutil.rmtree(layout.staging(node.tree, node.module), ignore_errors=True)
    return live


def settle_node(layout: Layout, node: Node) -> None:
    """The node's view is live: what it replaced is no longer needed to take it back."""
    for _, aside in _kept(layout, node.tree, node.module):
        aside.unlink(missing_ok=True)


def retract_node(layout: Layout, node: Node) -> None:
    """Take a module back out of the store when no view could be published with it: a rebuild puts back
    the module it replaced (still published in the live view), a first build leaves nothing, so the
    next run builds it again instead of trusting it."""
    kept = _kept(layout, node.tree, node.module)
    if all(aside.exists() for _, aside in kept[:2]):
        for path, aside in kept:
            if aside.exists():
                os.replace(aside, path)
        return
    retract_node_files(layout, node.tree, node.module)


def retract_node_files(layout: Layout, tree: str, module: str) -> None:
    """The module file, its manifest and integrity record out of the store (older generations keep
    their links)."""
    for path, _ in _kept(layout, tree, module):
        path.unlink(missing_ok=True)

