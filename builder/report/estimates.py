"""How long building what ``plan`` and ``plan --diff`` list would take, as both print it.

The figures are builder/execute/expected.py's, the ones the run's scheduler ranks by: a module's own
last build is shown as it is, anything else (another version's build, the build model) with ``~`` and
where it comes from. The run's length is forecast by playing the run's own scheduler with those
durations at the number of builds at once that ``modlib build`` would use.
"""

from __future__ import annotations

from dataclasses import dataclass

from builder.execute.expected import Expected, expectations, scheduler
from builder.execute.forecast import simulate
from builder.layout import Layout
from builder.plan.graph import Node, NodeKey


def duration(seconds: float) -> str:
    """Seconds only where they are not noise: under ten minutes."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 10 and secs:
        return f"{minutes} min {secs} s"
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


def exact(exp: Expected) -> bool:
    """Whether the figure is the module's own last build, not an estimate from elsewhere."""
    return exp.basis == "its last build"


def label(exp: Expected) -> str:
    """``12 min`` for the module's own last build, else ``~25 min (model)`` or ``~8 min (Jinja2/3.1.4's last
    build)`` (the model's rule is in ``plan --json``)."""
    if exact(exp):
        return duration(exp.seconds)
    return f"~{duration(exp.seconds)} ({exp.basis if exp.recorded else 'model'})"


@dataclass(frozen=True)
class RunEstimate:
    """What building ``costs``' nodes takes: each one's expectation, and the run's length at ``jobs``."""

    costs: dict[NodeKey, Expected]
    jobs: int
    makespan: float

    def work(self, nodes: list[Node]) -> float:
        """Seconds of these builds one after another."""
        return sum(self.costs[n.key].seconds for n in nodes)

    def as_json(self) -> dict:
        return {"jobs": self.jobs, "makespan_seconds": round(self.makespan, 1),
                "seconds": round(sum(e.seconds for e in self.costs.values()), 1),
                "from_model": sum(not e.recorded for e in self.costs.values())}


def estimate_run(layout: Layout, todo: list[Node], jobs: int) -> RunEstimate:
    """``todo`` built ``jobs`` at a time, each taking what it is expected to: the run's own scheduler,
    handed the builds as the dispatch loop hands them out."""
    costs = expectations(layout, todo)
    forecast = simulate(scheduler(layout, todo, costs), jobs, lambda node: costs[node.key].seconds)
    return RunEstimate(costs, jobs, forecast.makespan)
