"""What one build asks for, memory and cores, from what its earlier builds measured, within its target's bounds.

Kubernetes Jobs request it, the local pool admits builds by it and eb's ``--parallel`` follows its cores: a
build that peaked at 20 GiB last time is not squeezed into the default, and a small one does not hold a node's
memory. Memory is the measured peak times the target's margin. Cores follow how busy the build kept the
cores it had: one that kept them busy gets twice as many next time (up to the bound), one that did not gets
what it used. A build killed for memory is retried once with twice the memory, up to the bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from builder.execute.expected import Expected
from builder.plan.graph import Node
from builder.read.config import Settings

#: Above this share of its cores in use on average, a build is taken to scale with more of them.
BUSY = 0.75


@dataclass(frozen=True)
class Request:
    memory_bytes: int
    cpus: int
    basis: str  # where the figures come from, for ``render`` and the record


def requested(settings: Settings, node: Node, expected: Expected) -> Request:
    target = settings.targets[node.target]
    bounds = target.resources
    if expected.peak_memory_bytes is None or not expected.memory_measured:  # the model's figure is for planning
        memory, basis = bounds.memory_default, "the target's default"
    else:
        memory, basis = round(expected.peak_memory_bytes * bounds.margin), f"measured ({expected.memory_basis})"
    if expected.killed_with_memory is not None and 2 * expected.killed_with_memory > memory:
        memory, basis = 2 * expected.killed_with_memory, "twice the memory its last try was killed with"
    memory = min(max(memory, bounds.memory_min), bounds.memory_max)
    if target.parallel:  # library.yaml pins the cores
        return Request(memory, target.parallel, basis)
    return Request(memory, min(max(_cores(expected, bounds.cpu_default), bounds.cpu_min), bounds.cpu_max), basis)


def _cores(expected: Expected, default: int) -> int:
    if expected.cpu_seconds is None or not expected.cpus or expected.seconds <= 0:
        return default
    busy = expected.cpu_seconds / expected.seconds
    return 2 * expected.cpus if busy >= BUSY * expected.cpus else max(1, math.ceil(busy))


def after_oom(settings: Settings, node: Node, request: Request) -> Request | None:
    """Twice the memory for the one retry of a build killed for memory; None when the bound leaves no more."""
    most = settings.targets[node.target].resources.memory_max
    if request.memory_bytes >= most:
        return None
    return replace(request, memory_bytes=min(2 * request.memory_bytes, most),
                   basis="twice the memory after an OOM kill")
