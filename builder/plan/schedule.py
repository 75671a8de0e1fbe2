"""Which node may start next: dependencies first, longest remaining chain first.

Executors (and the scheduler simulation) drive this one object, so what they do with the
plan is the same everywhere: a node starts once all its dependencies succeeded, a failure
stops its dependents and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping

from builder.plan.graph import Node, NodeKey


class Scheduler:
    def __init__(self, todo: list[Node], cost: Callable[[Node], float] = lambda n: 1.0):
        self._todo = {n.key: n for n in todo}
        self._waiting_on: dict[NodeKey, set[NodeKey]] = {
            k: {d for d in n.deps if d in self._todo} for k, n in self._todo.items()}
        self._dependents: dict[NodeKey, list[NodeKey]] = {k: [] for k in self._todo}
        for key, deps in self._waiting_on.items():
            for dep in deps:
                self._dependents[dep].append(key)
        self.priority = _critical_path(self._todo, self._dependents, cost)
        self.running: set[NodeKey] = set()
        self.succeeded: list[NodeKey] = []
        self.failed: list[NodeKey] = []
        self.blocked: dict[NodeKey, NodeKey] = {}  # node -> the failed node that stopped it

    @property
    def total(self) -> int:
        return len(self._todo)

    def ready(self) -> list[Node]:
        """Nodes whose dependencies all succeeded, most critical first."""
        keys = [k for k, deps in self._waiting_on.items() if not deps and k not in self.running]
        keys.sort(key=lambda k: (-self.priority[k], k))
        return [self._todo[k] for k in keys]

    def take(self, slots: int, among: Collection[NodeKey] | None = None,
             fits: Callable[[Node], bool] = lambda n: True) -> list[Node]:
        """Up to ``slots`` ready nodes (only those ``among``, if given), marked running: a node handed
        out once is never handed out again. In priority order, up to the first one that does not ``fits``
        (the memory left): a lower one never overtakes it, so that the most critical build is not
        starved by smaller ones starting whenever a little memory comes free; it waits only for builds
        already running."""
        ready = self.ready() if among is None else [n for n in self.ready() if n.key in among]
        nodes = []
        for node in ready[: max(0, slots)]:
            if not fits(node):
                break
            nodes.append(node)
        self.running.update(n.key for n in nodes)
        return nodes

    def finish(self, key: NodeKey, ok: bool) -> None:
        self.running.discard(key)
        del self._waiting_on[key]
        if ok:
            self.succeeded.append(key)
            for dependent in self._dependents[key]:
                if dependent in self._waiting_on:
                    self._waiting_on[dependent].discard(key)
            return
        self.failed.append(key)
        self._block(key, key)

    def _block(self, key: NodeKey, cause: NodeKey) -> None:
        for dependent in self._dependents[key]:
            if dependent in self._waiting_on:
                del self._waiting_on[dependent]
                self.blocked[dependent] = cause
                self._block(dependent, cause)

    def done(self) -> bool:
        return not self._waiting_on and not self.running


def _critical_path(todo: Mapping[NodeKey, Node], dependents: Mapping[NodeKey, list[NodeKey]],
                   cost: Callable[[Node], float]) -> dict[NodeKey, float]:
    """Cost of the longest chain from each node to the end of the plan (its own cost included)."""
    memo: dict[NodeKey, float] = {}

    def length(key: NodeKey) -> float:
        if key not in memo:
            memo[key] = cost(todo[key]) + max((length(d) for d in dependents[key]), default=0.0)
        return memo[key]

    return {k: length(k) for k in todo}
