"""The executor registry and the one interface every executor implements (ReFrame's backends).

The run owns the dispatch loop (builder/run.py): it asks the plan's scheduler what may start, submits
those nodes, and waits for results. An executor only starts builds and reports how each ended; it never
plans, fetches or publishes, so every executor does exactly the same build and none can start a node
twice or out of order.
"""

from __future__ import annotations

import abc
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from builder.errors import BadInput

if TYPE_CHECKING:  # the CLI imports the registry for --executor's choices: no planning code with it
    from builder.execute.command import Invocation
    from builder.plan.graph import Node
    from builder.read.config import Settings


@dataclass(frozen=True)
class NodeRun:
    """How one node's build ended, and where it ran (a host and process, or a pod), for its record."""

    exit_code: int
    start: float
    end: float
    log: str
    where: str


class Executor(abc.ABC):
    """Starts the builds the run submits; a context manager, so a run that stops early closes it."""

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
    def wait(self) -> list[tuple[Node, NodeRun]]:
        """Block until at least one submitted node has finished; return every node that has."""

    def lost(self) -> str | None:
        """Why this executor may create no more work (it lost a lock of its own), or None."""
        return None

    @abc.abstractmethod
    def close(self) -> None:
        """Release what the executor holds; builds it alone owns are stopped."""

    def __enter__(self) -> Executor:
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
