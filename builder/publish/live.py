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
from builder.publish.integrity import install_prefix, write_record


def read_manifest(layout: Layout, tree: str, module: str) -> dict | None:
    try:
        return json.loads(layout.manifest(tree, module).read_text())
    except (FileNotFoundError, ValueError):
        return None


def publish_node(layout: Layout, node: Node, record: str) -> Path:
    """Move the staged module file (and a ``default`` marker EasyBuild wrote) into the live tree."""
    staged_all = layout.staging(node.tree, node.module) / "all"
    staged = staged_all / f"{node.module}.lua"
    if not staged.is_file():
        raise FileNotFoundError(f"EasyBuild reported success but wrote no module file at {staged}")
    live = layout.module_file(node.tree, node.module)
    live.parent.mkdir(parents=True, exist_ok=True)
    manifest = layout.manifest(node.tree, node.module)
    manifest.parent.mkdir(parents=True, exist_ok=True)
    tmp = manifest.with_name(manifest.name + ".tmp")
    tmp.write_text(json.dumps({"module": node.module, "easyconfig": str(node.easyconfig), "sha256": node.sha256,
                               "moduleclass": node.moduleclass, "published": time.time(), "record": record},
                              indent=2, sort_keys=True))
    os.replace(tmp, manifest)
    write_record(layout, node.tree, node.module, install_prefix(layout, node.tree, node.module), staged)
    os.replace(staged, live)
    default = staged.parent / "default"
    if default.is_symlink():
        os.replace(default, live.parent / "default")
    shutil.rmtree(layout.staging(node.tree, node.module), ignore_errors=True)
    return live


def retract_node(layout: Layout, node: Node) -> None:
    """Take a module back out of the store when no view could be published with it, so the next run
    builds it again instead of trusting it."""
    layout.module_file(node.tree, node.module).unlink(missing_ok=True)
    layout.manifest(node.tree, node.module).unlink(missing_ok=True)

