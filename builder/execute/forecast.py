"""A run played out ahead of time: the scheduler handed builds of known duration, as the dispatch loop
hands them to executors, to tell how long the run takes and how much memory its builds hold at once.

``plan`` forecasts a run with the expected durations; bench/schedule_sim.py measures the production
scheduler with it. Both drive the scheduler that expected.scheduler builds, the one every run uses.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field

from builder.plan.graph import Node, NodeKey
from builder.plan.schedule import Scheduler


@dataclass(frozen=True)
class Forecast:
    makespan: float  # in the unit of the durations given
    peak_memory: float  # the most the running builds held at once, in the unit of the memory given
    started: list[NodeKey] = field(default_factory=list)  # in the order the scheduler handed them out


def simulate(sched: Scheduler, executors: int, duration: Callable[[Node], float],
             memory: Callable[[Node], float] = lambda node: 0.0) -> Forecast:
    """Event-driven: start what is ready on the free executors, advance to the next finish. Builds that
    end at the same moment all end before the next ones start, as their executors free together."""
    running: list[tuple[float, NodeKey, float]] = []
    started: list[NodeKey] = []
    now = in_use = peak = 0.0
    while not sched.done():
        for node in sched.take(executors - len(running)):
            held = memory(node)
            heapq.heappush(running, (now + duration(node), node.key, held))
            started.append(node.key)
            in_use += held
        peak = max(peak, in_use)
        now = running[0][0]
        while running and running[0][0] == now:
            _, key, held = heapq.heappop(running)
            in_use -= held
            sched.finish(key, True)
    return Forecast(now, peak, started)
