"""What a build is expected to cost (wall time, peak memory, CPU time), learned from the build records.

The run's scheduler ranks by it, Jobs request resources from it and ``plan`` shows it, so all three
agree on one answer per node: the node's own last successful build, else the latest successful build
of another version of the same software, else (for the time only) the build-time model that ships
with the builder, by software name, then moduleclass, then a default.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

from builder.execute import records
from builder.layout import Layout
from builder.plan.graph import Node

MODEL = Path(__file__).with_name("build_times.yaml")


@dataclass(frozen=True)
class Expected:
    """``basis`` says where the figures come from, for ``plan`` and the record. Memory and CPU time are
    known only from a record that measured them (None otherwise)."""

    seconds: float
    basis: str
    peak_memory_bytes: int | None = None
    cpu_seconds: float | None = None
    cpus: int | None = None  # the cores the recorded build was given

    @property
    def recorded(self) -> bool:
        return not self.basis.startswith("model")


def expected(layout: Layout, node: Node, model: Callable[[Node], tuple[float, str]] | None = None) -> Expected:
    own = [r for r in records.every(layout, node.tree, node.module) if took(r) is not None]
    if own:
        return _from(own[-1], "its last build")
    kin = [r for r in records.of_software(layout, node.name) if took(r) is not None]
    if kin:
        return _from(kin[-1], f"{kin[-1]['module']}'s last build")
    seconds, basis = (model or build_time_model())(node)
    return Expected(seconds, basis)


def took(record: dict) -> float | None:
    """A successful run's wall time; None for a failed or unfinished one, which says nothing of the cost."""
    if record.get("exit_code") != 0 or record.get("end") is None:
        return None
    return float(record["end"]) - float(record["start"])


def _from(record: dict, basis: str) -> Expected:
    seconds = took(record)
    assert seconds is not None
    peak, cpu, cpus = record.get("peak_memory_bytes"), record.get("cpu_seconds"), record.get("cpus")
    return Expected(seconds, basis, peak if isinstance(peak, int) else None,
                    float(cpu) if isinstance(cpu, (int, float)) else None, cpus if isinstance(cpus, int) else None)


@cache
def build_time_model(path: Path = MODEL) -> Callable[[Node], tuple[float, str]]:
    """Seconds and the model's rule that gave them; the file holds minutes, as build logs report them."""
    data = yaml.safe_load(path.read_text())
    names, classes, default = data["names"], data["moduleclass"], float(data["default"])

    def model(node: Node) -> tuple[float, str]:
        if node.name in names:
            return 60 * float(names[node.name]), f"model ({node.name})"
        if node.moduleclass in classes:
            return 60 * float(classes[node.moduleclass]), f"model (moduleclass {node.moduleclass})"
        return 60 * default, "model (default)"

    return model
