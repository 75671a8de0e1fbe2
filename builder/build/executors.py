"""The executor registry: one explicit table of names to classes behind one small interface.

An executor starts nodes the scheduler hands out and reports each result back; it never plans,
fetches or publishes, so every executor does exactly the same build.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from builder.build.command import Invocation
from builder.errors import bad_input
from builder.plan.graph import Node
from builder.plan.schedule import Scheduler
from builder.read.config import Settings


@dataclass(frozen=True)
class NodeRun:
    """What one node's build did: exit code, times, where its log is."""

    exit_code: int
    start: float
    end: float
    log: str


class Executor(Protocol):
    @classmethod
    def from_settings(cls, settings: Settings, jobs: int, scratch: Path) -> Executor:
        """One shape for every executor: at most ``jobs`` builds at once; ``scratch`` is this
        host's temporary space for the run."""

    def run(self, scheduler: Scheduler, invocation: Callable[[Node], Invocation],
            started: Callable[[Node], str], finished: Callable[[Node, NodeRun], bool]) -> None:
        """Drive ``scheduler`` to the end. ``started`` gives a node's log path; ``finished`` returns
        whether the node counts as succeeded (the publish step can still fail it)."""


#: name -> "module:Class"; modules are imported only when chosen, so optional clients stay optional.
EXECUTORS: dict[str, str] = {
    "local": "builder.build.local:LocalExecutor",
    "kubernetes": "builder.build.kubernetes:KubernetesExecutor",
}


def get_executor(name: str, settings: Settings, jobs: int, scratch: Path) -> Executor:
    if name not in EXECUTORS:
        raise bad_input("--executor", f"no such executor '{name}' (available: {', '.join(EXECUTORS)})")
    module, cls = EXECUTORS[name].split(":")
    return getattr(importlib.import_module(module), cls).from_settings(settings, jobs, scratch)
