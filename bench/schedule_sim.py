"""Scheduling benchmark: the makespan of modlib's own scheduler on the EESSI DAG.

The simulation drives the scheduler that every run builds (builder.execute.expected.scheduler: the
longest remaining chain of expected durations first) with simulated executors. The builds take what
the build model in builder/execute/build_times.yaml says, and the scheduler ranks them as production
would for a library with no records yet (the layout given has none), that is by the same model. The
makespan is compared with the lower bound max(critical path, total work / executors) and with
level-by-level waves (every node of one dependency level must finish before the next level starts, as
batch systems without dependency support do); the memory the running builds hold at once, from the
model's peak per build, is compared with a cluster's capacity. Real builds are not the model's: the
same runs with each build taking between half and twice the model's time (the priority still the
model's) say how much the order depends on the model being right, and the priority the run had before
(chain length in nodes) is measured beside it.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable

from builder.execute import expected
from builder.execute.forecast import Forecast, simulate
from builder.layout import Layout
from builder.plan.graph import Node, Plan
from builder.plan.schedule import Scheduler

#: The cluster the memory is compared with: 16 build nodes of 64 GiB (4 GiB per core on 16 cores, the
#: model's build node), so one build per node at 16 executors.
CAPACITY_GIB = 16 * 64


def minutes(node: Node) -> float:
    """A build's true duration in the simulation: the model's."""
    return expected.build_model().minutes(node)[0]


def peak_gib(node: Node) -> float:
    return expected.build_model().peak_gib(node)[0]


def off_model(seed: int) -> Callable[[Node], float]:
    """True durations the model got wrong: each build's off by a factor between 1/2 and 2 (log-uniform),
    drawn from the seed and the module, so the same in every run."""
    return lambda node: minutes(node) * 2 ** random.Random(f"{seed}:{node.key}").uniform(-1, 1)


def run(nodes: list[Node], executors: int, layout: Layout,
        truth: Callable[[Node], float] = minutes) -> Forecast:
    """The production scheduler for ``layout`` (its records, else the model), builds taking ``truth``."""
    return simulate(expected.scheduler(layout, nodes), executors, truth, peak_gib)


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


def over_bound(nodes: list[Node], executors: int, layout: Layout, truth: Callable[[Node], float]) -> float:
    """How far over the lower bound, in %, when the builds take ``truth``."""
    bound = max(critical_path(nodes, truth), sum(truth(n) for n in nodes) / executors)
    return 100 * (run(nodes, executors, layout, truth).makespan / bound - 1)


def compare(nodes: list[Node], executor_counts: list[int], layout: Layout, seeds: int = 3) -> list[dict]:
    work, cp = sum(minutes(n) for n in nodes), critical_path(nodes, minutes)
    rows = []
    for e in executor_counts:
        bound = max(cp, work / e)
        made = run(nodes, e, layout)
        counted = simulate(Scheduler(nodes), e, minutes).makespan
        rows.append({"executors": e, "modlib_min": round(made.makespan, 1), "bound_min": round(bound, 1),
                     "waves_min": round(waves(nodes, e, minutes), 1), "by_count_min": round(counted, 1),
                     "over_bound_pct": round(100 * (made.makespan / bound - 1), 2),
                     "off_model_worst_pct": round(max(over_bound(nodes, e, layout, off_model(s))
                                                      for s in range(seeds)), 2),
                     "peak_gib": round(made.peak_memory, 1), "capacity_gib": CAPACITY_GIB})
    return rows
