"""What a build is expected to cost (wall time, peak memory, CPU time), learned from the build records.

The run's scheduler ranks by it, Jobs request resources from it and ``plan`` shows it, so all three
agree on one answer per node: the node's own last successful build, else the latest successful build
of another version of the same software, else the build model that ships with the builder
(build_times.yaml: by software name, then moduleclass, then a default). Memory falls back the same
way on its own, since older records measured no memory; CPU time is known only from the record that
gave the time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

from builder.execute import records
from builder.layout import Layout
from builder.plan.graph import Node, NodeKey
from builder.plan.schedule import Scheduler

MODEL = Path(__file__).with_name("build_times.yaml")
GIB = 1 << 30


@dataclass(frozen=True)
class Expected:
    """``basis`` says where the time comes from and ``memory_basis`` where the memory does, for ``plan``
    and the Job's request: a record ("its last build", "Jinja2/3.1.4's last build") or the model
    ("model: GCCcore"). CPU time is None unless the record that gave the time measured it."""

    seconds: float
    basis: str
    peak_memory_bytes: int | None = None
    cpu_seconds: float | None = None
    memory_basis: str = ""
    cpus: int | None = None  # the cores the build that gave the time was given
    #: The memory its last try was killed with, when no build of it succeeded since: the next try starts above
    killed_with_memory: int | None = None

    @property
    def recorded(self) -> bool:
        return not self.basis.startswith("model")

    @property
    def memory_measured(self) -> bool:
        return bool(self.memory_basis) and not self.memory_basis.startswith("model")


@dataclass(frozen=True)
class Rule:
    """One figure of the model: by software name, then moduleclass, then the default."""

    default: float
    moduleclass: Mapping[str, float]
    names: Mapping[str, float]

    def __call__(self, node: Node) -> tuple[float, str]:
        if node.name in self.names:
            return float(self.names[node.name]), f"model: {node.name}"
        if node.moduleclass in self.moduleclass:
            return float(self.moduleclass[node.moduleclass]), f"model: moduleclass {node.moduleclass}"
        return float(self.default), "model: default"


@dataclass(frozen=True)
class Model:
    minutes: Rule
    peak_gib: Rule


@cache
def build_model(path: Path = MODEL) -> Model:
    data = yaml.safe_load(path.read_text())
    return Model(*(Rule(float(data[k]["default"]), data[k]["moduleclass"], data[k]["names"])
                   for k in ("minutes", "peak_gib")))


def expected(layout: Layout, node: Node, model: Model | None = None) -> Expected:
    return expectations(layout, [node], model)[node.key]


def expectations(layout: Layout, nodes: Iterable[Node], model: Model | None = None) -> dict[NodeKey, Expected]:
    """Each node's; the records of each software are read once (EESSI's 1,100 nodes share 600 names, and
    each read globs the whole records folder)."""
    model = model or build_model()
    runs: dict[str, list[dict]] = {}
    kin: dict[str, list[dict]] = {}
    out = {}
    for node in nodes:
        if node.name not in runs:
            runs[node.name] = records.of_software(layout, node.name)
            kin[node.name] = [r for r in runs[node.name] if took(r) is not None]
        killed = _killed_with(node, runs[node.name])
        out[node.key] = dataclasses.replace(_expect(node, kin[node.name], model), killed_with_memory=killed)
    return out


def _killed_with(node: Node, runs: list[dict]) -> int | None:
    """The memory of the node's last run if the kernel killed it for memory (a failed OOM retry, or one the
    bound left no room for): without it, every night would start again from the same too-small figure."""
    own = [r for r in runs if (r.get("tree"), r.get("module")) == node.key]
    last = own[-1] if own else {}
    memory, kills = last.get("memory_bytes"), last.get("oom_kills")
    return memory if isinstance(memory, int) and isinstance(kills, int) and kills > 0 else None


def scheduler(layout: Layout, todo: list[Node], costs: Mapping[NodeKey, Expected] | None = None) -> Scheduler:
    """The run's scheduler: ready nodes ranked by the longest remaining chain of expected durations. Every
    run, ``plan``'s forecast and bench/schedule_sim.py build it here, so what the benchmark measures is
    what production runs (``costs``: the nodes' expectations when the caller has them already)."""
    costs = costs if costs is not None else expectations(layout, todo)
    return Scheduler(todo, lambda node: costs[node.key].seconds)


def took(record: dict) -> float | None:
    """A successful run's wall time; None for a failed or unfinished one, which says nothing of the cost."""
    if record.get("exit_code") != 0 or record.get("end") is None:
        return None
    return float(record["end"]) - float(record["start"])


def _expect(node: Node, kin: list[dict], model: Model) -> Expected:
    own = [r for r in kin if (r.get("tree"), r.get("module")) == node.key]
    timed = own[-1] if own else kin[-1] if kin else None
    measured = [r for r in own if _measured(r)] or [r for r in kin if _measured(r)]
    if measured:
        memory, memory_basis = measured[-1]["peak_memory_bytes"], _basis(node, measured[-1])
    else:
        gib, memory_basis = model.peak_gib(node)
        memory = round(gib * GIB)
    if timed is None:
        minutes, basis = model.minutes(node)
        return Expected(60 * minutes, basis, memory, None, memory_basis)
    cpu = timed.get("cpu_seconds")
    seconds = took(timed)
    assert seconds is not None
    cpus = timed.get("cpus")
    return Expected(seconds, _basis(node, timed), memory, float(cpu) if isinstance(cpu, (int, float)) else None,
                    memory_basis, cpus if isinstance(cpus, int) else None)


def _measured(record: dict) -> bool:
    return isinstance(record.get("peak_memory_bytes"), int)


def _basis(node: Node, record: dict) -> str:
    return "its last build" if (record.get("tree"), record.get("module")) == node.key \
        else f"{record['module']}'s last build"
