"""Scheduling benchmark: the makespan of modlib's own scheduler on the EESSI DAG.

The simulation drives builder.plan.schedule.Scheduler -- the object both executors drive -- with
simulated executors and the build-time model in builder/execute/build_times.yaml, and compares its makespan with
the lower bound max(critical path, total work / executors) and with level-by-level waves (every
node of one dependency level must finish before the next level starts, as batch systems without
dependency support do).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from pathlib import Path

import yaml

from builder.execute.expected import MODEL
from builder.plan.graph import Node, Plan
from builder.plan.schedule import Scheduler


def cost_model(path: Path = MODEL) -> Callable[[Node], float]:
    data = yaml.safe_load(path.read_text())
    names, classes, default = data["names"], data["moduleclass"], float(data["default"])
    return lambda node: float(names.get(node.name, classes.get(node.moduleclass, default)))


def simulate(nodes: list[Node], executors: int, cost: Callable[[Node], float]) -> float:
    """Event-driven run of the real scheduler: start what is ready, advance to the next finish."""
    sched = Scheduler(nodes, cost)
    running: list[tuple[float, tuple[str, str]]] = []
    now = 0.0
    while not sched.done():
        for node in sched.take(executors - len(running)):
            heapq.heappush(running, (now + cost(node), node.key))
        now, key = heapq.heappop(running)
        sched.finish(key, True)
    return now


def critical_path(nodes: list[Node], cost: Callable[[Node], float]) -> float:
    return max(Scheduler(nodes, cost).priority.values(), default=0.0)


def waves(nodes: list[Node], executors: int, cost: Callable[[Node], float]) -> float:
    """Level by level: each level is list-scheduled (longest first) and must end before the next."""
    plan = Plan.of(nodes)
    level: dict = {}
    for node in plan.nodes:  # topological: dependencies already have their level
        level[node.key] = 1 + max((level[d] for d in node.deps if d in level), default=-1)
    total = 0.0
    for depth in range(max(level.values(), default=-1) + 1):
        loads = [0.0] * executors
        for c in sorted((cost(n) for n in plan.nodes if level[n.key] == depth), reverse=True):
            heapq.heapreplace(loads, loads[0] + c)
        total += max(loads)
    return total


def compare(nodes: list[Node], executor_counts: list[int], cost: Callable[[Node], float]) -> list[dict]:
    work, cp = sum(cost(n) for n in nodes), critical_path(nodes, cost)
    rows = []
    for e in executor_counts:
        bound = max(cp, work / e)
        made = simulate(nodes, e, cost)
        rows.append({"executors": e, "modlib_min": round(made, 1), "bound_min": round(bound, 1),
                     "waves_min": round(waves(nodes, e, cost), 1),
                     "over_bound_pct": round(100 * (made / bound - 1), 2)})
    return rows
