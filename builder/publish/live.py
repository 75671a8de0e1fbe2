"""Move a finished node's module file into the store, and remember what it was built from.

The store (``<root>/<tree>/modules/all``) is what builds and planning see; notebooks see it only
through a published view (builder/publish/view.py). Each file moves in with one rename, so the
store never holds half a module file, and older views keep the bytes they linked.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from builder.layout import Layout
from builder.plan.graph import Node


def read_manifest(layout: Layout, tree: str, module: str) -> dict | None:
    try:
        return json.loads(layout.manifest(tree, module).read_text())
    except (FileNotFoundError, ValueError):
        return None


def _previous(manifest: Path) -> tuple[Path, Path]:
    """Where a rebuild keeps the module file and manifest it replaces until its view is published."""
    return manifest.with_name(manifest.name + ".previous"), manifest.with_name(manifest.name + ".previous.lua")


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
    old_manifest, old_module = _previous(manifest)
    if live.is_file() and manifest.is_file():
        os.replace(manifest, old_manifest)
        os.link(live, old_module)
    tmp = manifest.with_name(manifest.name + ".tmp")
    tmp.write_text(json.dumps({"module": node.module, "easyconfig": str(node.easyconfig), "sha256": node.sha256,
                               "moduleclass": node.moduleclass, "published": time.time(), "record": record,
                               "prefix": prefix, "references": references}, indent=2, sort_keys=True))
    os.replace(tmp, manifest)
    os.replace(staged, live)
    default = staged.parent / "default"
    if default.is_symlink():
        os.replace(default, live.parent / "default")
    shutil.rmtree(layout.staging(node.tree, node.module), ignore_errors=True)
    return live


def settle_node(layout: Layout, node: Node) -> None:
    """The node's view is live: what it replaced is no longer needed to take it back."""
    for path in _previous(layout.manifest(node.tree, node.module)):
        path.unlink(missing_ok=True)


def retract_node(layout: Layout, node: Node) -> None:
    """Take a module back out of the store when no view could be published with it: a rebuild puts back
    the module it replaced (still published in the live view), a first build leaves nothing, so the
    next run builds it again instead of trusting it."""
    module, manifest = layout.module_file(node.tree, node.module), layout.manifest(node.tree, node.module)
    old_manifest, old_module = _previous(manifest)
    if old_module.is_file() and old_manifest.is_file():
        os.replace(old_module, module)
        os.replace(old_manifest, manifest)
        return
    retract_node_files(layout, node.tree, node.module)


def retract_node_files(layout: Layout, tree: str, module: str) -> None:
    """The module file and its manifest out of the store (older generations keep their links)."""
    layout.module_file(tree, module).unlink(missing_ok=True)
    layout.manifest(tree, module).unlink(missing_ok=True)

