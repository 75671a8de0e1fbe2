"""The executor registry and the one interface every executor implements (ReFrame's backends).

The run owns the dispatch loop (builder/commands/run.py): it asks the plan's scheduler what may start, submits
those nodes, and waits for results. An executor only starts (and cancels) builds and reports how each
ended; it never plans, fetches or publishes, so every executor does exactly the same build and none can
start a node twice or out of order. Constructing one does no I/O: what it takes from outside (a
cluster's Lease, staged inputs) it takes in ``open``, which entering it as a context manager calls.
"""

from __future__ import annotations

import abc
import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from builder.errors import BadInput

if TYPE_CHECKING:  # the CLI imports the registry for --executor's choices: no planning code with it
    from builder.execute.command import Invocation
    from builder.plan.graph import Node, NodeKey
    from builder.read.config import Settings


@dataclass(frozen=True)
class Usage:
    """What one build used, as its cgroup measured it (``measured_by`` "cgroup v2" or "cgroup v1"), or the
    process tree's rusage where the build had no cgroup of its own ("rusage": the largest process's peak,
    not the tree's, and no OOM count)."""

    peak_memory_bytes: int | None
    cpu_seconds: float | None
    oom_kills: int | None
    measured_by: str


@dataclass(frozen=True)
class NodeRun:
    """How one node's build ended, and where it ran (a host and process, or a pod), for its record."""

    exit_code: int
    start: float
    end: float
    log: str
    where: str
    usage: Usage | None = None


class Executor(abc.ABC):
    """Starts the builds the run submits; a context manager, so a run that stops early closes it.
    Every submitted node comes back from ``wait`` or ``poll`` exactly once, cancelled ones included."""

    #: The name the CLI's ``--executor`` and build records use.
    name: ClassVar[str]

    @classmethod
    @abc.abstractmethod
    def from_settings(cls, settings: Settings, scratch: Path, report: Callable[[str], None]) -> Executor:
        """One constructor shape for every executor; ``scratch`` is this host's temporary space for the
        run, ``report`` takes messages for the admin."""

    @abc.abstractmethod
    def submit(self, node: Node, inv: Invocation, log: Path) -> None:
        """Start building ``node`` with ``inv`` and return at once; the build's output goes to ``log``."""

    @abc.abstractmethod
    def wait(self, timeout: float | None = None) -> list[tuple[Node, NodeRun]]:
        """Block until at least one submitted node has finished, or ``timeout`` seconds passed (None: no
        limit); return every node that has finished (none when the time ran out)."""

    def poll(self) -> list[tuple[Node, NodeRun]]:
        """The nodes that have finished, without blocking."""
        return self.wait(0)

    @abc.abstractmethod
    def cancel(self, node: Node) -> None:
        """Stop building a submitted node and return at once; its end still comes back from ``wait`` (a
        failure, unless it finished first), so the run records it. For a run that lost its lock: what
        it builds would never be published, and another run may be building the same node."""

    def admits(self, node: Node, inv: Invocation, starting: Sequence[tuple[Node, Invocation]] = ()) -> bool:
        """Whether ``node`` may start now beside the builds running and those ``starting`` in the same
        round: always, but where the executor keeps a budget of its own (the local pool's memory; a
        cluster's scheduler places pods by their requests itself)."""
        return True

    def orphans(self) -> list[NodeKey]:
        """Nodes whose builds a previous run left running here (one entry per build): the run adopts
        them before it starts anything new, and counts them against its ``jobs`` until then."""
        return []

    def lost(self) -> str | None:
        """Why this executor may create no more work (it lost a lock of its own), or None."""
        return None

    @abc.abstractmethod
    def open(self) -> None:
        """Take what building needs from outside (a lock of its own, inputs staged for it); on an error
        release what was taken and raise."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release what the executor holds; builds it alone owns are stopped."""

    def __enter__(self) -> Executor:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: name -> "module:Class"; modules are imported only when chosen, so optional clients stay optional.
EXECUTORS: dict[str, str] = {
    "local": "builder.execute.local:LocalExecutor",
    "kubernetes": "builder.execute.kubernetes:KubernetesExecutor",
}


def get_executor(name: str, settings: Settings, scratch: Path, report: Callable[[str], None]) -> Executor:
    """The registry's one way in: the name is checked here, so a typo in a CronJob's arguments is bad
    input, and the executor's module (and its client library) is imported only now."""
    if name not in EXECUTORS:
        raise BadInput("--executor", f"no such executor '{name}' (available: {', '.join(EXECUTORS)})")
    module, cls = EXECUTORS[name].split(":")
    executor_class: type[Executor] = getattr(importlib.import_module(module), cls)
    return executor_class.from_settings(settings, scratch, report)
