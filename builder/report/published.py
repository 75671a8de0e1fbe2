"""Which module an admin means: ``show`` and ``logs`` take the names people type.

A full name (``Jinja2/3.1.4-GCCcore-system``), a short one (``Jinja2/3.1.4``: the version without
its toolchain suffix), a bare software name when the library holds one version of it (``saxpy``),
or any of them after its tree (``cuda/saxpy``) where two trees hold the same module.
"""

from __future__ import annotations

import difflib

from builder import jsonfile
from builder.commands.verify import published
from builder.errors import BadInput
from builder.layout import Layout
from builder.plan.graph import NodeKey


def published_keys(layout: Layout, trees: list[str]) -> list[NodeKey]:
    return [(tree, module) for tree in trees for module in published(layout, tree)]


def recorded_keys(layout: Layout, trees: list[str]) -> list[NodeKey]:
    """Every (tree, module) with a build record, built or failed: the module name as its records say."""
    keys = []
    for tree in trees:
        top = layout.records(tree, "module").parent
        for folder in sorted(top.iterdir()) if top.is_dir() else []:
            first = next(iter(sorted(folder.glob("*.json"))), None)
            data = jsonfile.read(first) if first else None
            if data and "module" in data:
                keys.append((tree, data["module"]))
    return keys


def _matches(module: str, name: str) -> int:
    """How well ``module`` answers ``name``: 3 exactly, 2 by its short name, 1 by its software; 0 not."""
    if module == name:
        return 3
    if module.startswith(name + "-") and "/" in name:
        return 2
    return 1 if module.split("/")[0] == name else 0


def resolve(keys: list[NodeKey], name: str) -> NodeKey:
    """The one (tree, module) ``name`` means among ``keys``; none or several is bad input naming ``name``,
    with the closest names when there is none (``show``, ``logs`` and ``remove`` take the same names)."""
    tree, _, rest = name.partition("/")
    trees = {t for t, _ in keys}
    wanted, pool = (rest, [k for k in keys if k[0] == tree]) if tree in trees and rest else (name, keys)
    for quality in (3, 2, 1):
        found = [k for k in pool if _matches(k[1], wanted) == quality]
        if len(found) == 1:
            return found[0]
        if found:
            raise BadInput(name, f"ambiguous, name one of: {', '.join('/'.join(k) for k in found)}")
    elsewhere = ["/".join(k) for k in keys if _matches(k[1], wanted)]  # in another tree than the one named
    close = sorted(elsewhere or difflib.get_close_matches(name, {n for k in keys for n in ("/".join(k), k[1])},
                                                          n=3, cutoff=0.5))[:3]
    raise BadInput(name, "no such module in this library" + (f"; did you mean {' or '.join(close)}?" if close else
                                                             " (`modlib status --json` lists them)"))
