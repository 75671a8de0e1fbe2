"""The plan: one DAG of build nodes keyed by (tree, module), and the rules that shape it.

Pure data and pure functions: the planner fills it from EasyBuild, executors, ``--dry-run``,
``status`` and the scheduler only read it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from builder.errors import BadInput

#: Software names whose presence makes a node (and everything above it) CUDA-bound.
CUDA_NAMES = frozenset({"CUDA"})

NodeKey = tuple[str, str]  # (tree, module)


@dataclass(frozen=True)
class Node:
    tree: str
    module: str
    name: str
    easyconfig: Path
    target: str
    deps: tuple[NodeKey, ...]
    installed: bool
    sha256: str
    hidden: bool = False
    options: tuple[tuple[str, object], ...] = ()
    moduleclass: str = ""

    @property
    def key(self) -> NodeKey:
        return (self.tree, self.module)

    def as_json(self) -> dict:
        return {"module": self.module, "easyconfig": str(self.easyconfig), "target": self.target,
                "tree": self.tree, "deps": [m for _, m in self.deps], "installed": self.installed}


@dataclass(frozen=True)
class Plan:
    """Nodes in a topological order (dependencies first)."""

    nodes: tuple[Node, ...]
    index: Mapping[NodeKey, Node] = field(default_factory=dict, compare=False)
    #: The digest of every easyconfig the planner parsed to make the plan, nodes or not: what the plan cache
    #: watches. Empty for a plan from the cache.
    read: Mapping[Path, str] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, nodes: Iterable[Node], read: Mapping[Path, str] | None = None) -> Plan:
        ordered = topological(list(nodes))
        return cls(nodes=tuple(ordered), index={n.key: n for n in ordered}, read=read or {})

    def missing(self) -> list[Node]:
        return [n for n in self.nodes if not n.installed]

    def select(self, rebuild: list[str]) -> list[Node]:
        """What a run builds: missing nodes plus the installed ones the admin named (never implicitly)."""
        wanted = {n.key for name in rebuild for n in self.named(name, "--rebuild")}
        return [n for n in self.nodes if not n.installed or n.key in wanted]

    def named(self, name: str, source: str) -> list[Node]:
        """The nodes of one module (in every tree that holds it), by its full name or, when only one
        module of that software is planned, by the bare name (``tabulate``); anything else is bad input
        from ``source``, an ambiguous name listing its choices."""
        exact = [n for n in self.nodes if n.module == name]
        if exact:
            return exact
        modules = sorted({n.module for n in self.nodes if n.name == name})
        if len(modules) > 1:
            raise BadInput(source, f"{name} is ambiguous, name one of: {', '.join(modules)}")
        if not modules:
            raise BadInput(source, f"module(s) not in the plan: {name}")
        return [n for n in self.nodes if n.module == modules[0]]

    def as_json(self) -> dict:
        return {"nodes": [n.as_json() for n in self.nodes]}


def cuda_bound(deps: Mapping[str, Iterable[str]], names: Mapping[str, str]) -> set[str]:
    """Modules that are CUDA or depend on it, directly or through their dependencies."""
    bound: set[str] = set()
    state: dict[str, bool] = {}

    def visit(module: str) -> bool:
        if module not in state:
            state[module] = False  # cycles are reported by topological(); here they just stop the walk
            state[module] = names[module] in CUDA_NAMES or any([visit(d) for d in deps[module]])
            if state[module]:
                bound.add(module)
        return state[module]

    for module in deps:
        visit(module)
    return bound


def topological(nodes: list[Node]) -> list[Node]:
    """Order nodes dependencies-first (ties by key, so plans are stable); a cycle is bad input."""
    index = {n.key: n for n in nodes}
    done: set[NodeKey] = set()
    path: list[NodeKey] = []
    order: list[Node] = []

    def visit(key: NodeKey) -> None:
        if key in done:
            return
        if key in path:
            cycle = path[path.index(key):] + [key]
            files = " -> ".join(index[k].easyconfig.name for k in cycle)
            raise BadInput(index[key].easyconfig, f"dependency cycle: {files}")
        path.append(key)
        for dep in sorted(index[key].deps):
            if dep in index:
                visit(dep)
        path.pop()
        done.add(key)
        order.append(index[key])

    for key in sorted(index):
        visit(key)
    return order
