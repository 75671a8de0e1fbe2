"""Print builder/'s package-level import graph, read from the source with ``ast``, as a Mermaid flowchart.

CONTRIBUTING.md's architecture diagram is this script's output, so the picture is the code's imports and
not someone's memory of them. A node is a subpackage of builder (``read``, ``plan``, ...) or a top-level
module (``cli``, ``run``, ...); an edge ``a --> b`` says some module of ``a`` imports one of ``b``, lazy
imports inside functions included (they are dependencies too); a dotted edge goes against the layers of
``make lint``'s contract (one of its listed exceptions). The small modules that import only each
other (errors, layout, proc, ...) are listed in one box rather than drawn. ``--edges`` prints the module-level imports
that make each edge instead, to find which line to change::

    .venv/bin/python -m bench.import_graph            # the diagram
    .venv/bin/python -m bench.import_graph --edges    # module -> module, grouped by edge
"""

from __future__ import annotations

import argparse
import ast
import tomllib
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "builder"
PYPROJECT = PACKAGE.parent / "pyproject.toml"


def layers() -> list[str]:
    """The pipeline's layers, highest first, as make lint's import contract (pyproject.toml) has them."""
    contracts = tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]["contracts"]
    return next(c["layers"] for c in contracts if c["type"] == "layers")


def module_name(path: Path, package: Path) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path, package_dir: Path) -> set[str]:
    """The modules (or packages) of ``package_dir`` that ``path`` imports, relative imports resolved."""
    root = package_dir.name
    here = module_name(path, package_dir).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[:len(package) - node.level + 1]) if node.level else ""
            source = ".".join(p for p in (base, node.module or "") if p)
            # ``from builder.execute import k8s_objects`` imports the module builder.execute.k8s_objects
            found |= {f"{source}.{alias.name}" for alias in node.names} | {source}
    return {name for name in found if name == root or name.startswith(f"{root}.")}


def node_of(module: str) -> str | None:
    """``builder.read.config`` -> ``read``; ``builder.cli`` -> ``cli``; the ``builder`` package itself: None."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def module_edges(package: Path = PACKAGE) -> dict[tuple[str, str], set[tuple[str, str]]]:
    """(importing node, imported node) -> the (module, imported name) pairs behind it."""
    modules = {module_name(p, package): p for p in sorted(package.rglob("*.py"))}
    edges: dict[tuple[str, str], set[tuple[str, str]]] = defaultdict(set)
    for name, path in modules.items():
        for target in imported(path, package):
            while target not in modules and "." in target:  # a name imported from a module
                target = target.rsplit(".", 1)[0]
            source_node, target_node = node_of(name), node_of(target)
            if source_node and target_node and source_node != target_node:
                edges[source_node, target_node].add((name, target))
    return edges


def utilities(edges: dict[tuple[str, str], set[tuple[str, str]]], packages: set[str]) -> set[str]:
    """Top-level modules that import nothing but each other (errors, layout, proc, ...): imported from
    everywhere, so the diagram lists them once instead of drawing an arrow from every node to each."""
    nodes = {n for edge in edges for n in edge} - packages
    leaves: set[str] = set()
    while True:
        more = {n for n in nodes - leaves if all(b in leaves for a, b in edges if a == n)}
        if not more:
            return leaves
        leaves |= more


def mermaid(edges: dict[tuple[str, str], set[tuple[str, str]]], package: Path = PACKAGE) -> str:
    packages = {p.name for p in package.iterdir() if (p / "__init__.py").is_file()}
    leaves = utilities(edges, packages)
    drawn = sorted((a, b) for a, b in edges if b not in leaves)
    lines = ["flowchart LR"]
    lines += [f"    {name}[[{name}/]]" for name in sorted(packages) if any(name in edge for edge in drawn)]
    order = layers()
    upward = {(a, b) for a, b in drawn if a in order and b in order and order.index(a) > order.index(b)}
    lines += [f"    {a} -.->|exception| {b}" if (a, b) in upward else f"    {a} --> {b}" for a, b in drawn]
    lines.append(f'    utilities["imported from anywhere: {", ".join(sorted(leaves))}"]')
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edges", action="store_true", help="the module imports behind each edge")
    args = parser.parse_args()
    edges = module_edges()
    if not args.edges:
        print(mermaid(edges))
        return
    for (a, b), pairs in sorted(edges.items()):
        print(f"{a} -> {b}")
        for importer, target in sorted(pairs):
            print(f"    {importer} -> {target}")


if __name__ == "__main__":
    main()
