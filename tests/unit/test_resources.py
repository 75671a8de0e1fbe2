"""What a build asks for follows what its records measured, within the target's bounds in library.yaml."""

import dataclasses

import pytest

from builder.execute.expected import Expected
from builder.execute.resources import after_oom, requested
from builder.plan.graph import Node
from builder.read.config import load_settings, quantity_bytes
from tests.helpers import REPO


def _parallel(settings, cores):
    return dataclasses.replace(settings, targets={
        **settings.targets, "cpu": dataclasses.replace(settings.targets["cpu"], parallel=cores)})


SETTINGS = _parallel(load_settings(REPO / "easyconfigs" / "library.yaml", env={"MODLIB_ROOT": "/srv/library"}), None)
GIB = 1 << 30
NODE = Node(tree="cpu", module="zlib/1.3.1", name="zlib", easyconfig=REPO / "zlib.eb", target="cpu", deps=(),
            installed=False, sha256="0")


def test_quantities_in_bytes():
    assert quantity_bytes("4Gi") == 4 * GIB and quantity_bytes("500M") == 500_000_000 and quantity_bytes("2") == 2


def _measured(peak):
    return Expected(60, "its last build", peak, memory_basis="its last build")


def test_unmeasured_build_asks_for_the_defaults():
    bounds = SETTINGS.targets["cpu"].resources
    model = Expected(60, "model: default", 9 * GIB, memory_basis="model: default")
    for unmeasured in (Expected(60, "model: default"), model):
        request = requested(SETTINGS, NODE, unmeasured)  # the model's memory is for planning, not for a limit
        assert (request.memory_bytes, request.cpus) == (bounds.memory_default, bounds.cpu_default)


def test_measured_peak_gets_the_margin_within_bounds():
    bounds = SETTINGS.targets["cpu"].resources
    assert requested(SETTINGS, NODE, _measured(8 * GIB)).memory_bytes == round(8 * GIB * bounds.margin)
    assert requested(SETTINGS, NODE, _measured(1 << 20)).memory_bytes == bounds.memory_min
    assert requested(SETTINGS, NODE, _measured(1 << 50)).memory_bytes == bounds.memory_max


@pytest.mark.parametrize(("cpu_seconds", "had", "cores"), [(590, 4, 8), (150, 4, 2), (30, 4, 1)])
def test_cores_double_for_a_busy_build_and_shrink_to_what_an_idle_one_used(cpu_seconds, had, cores):
    assert requested(SETTINGS, NODE, Expected(100, "its last build", GIB, cpu_seconds, cpus=had)).cpus == cores


def test_pinned_parallel_wins():
    assert requested(_parallel(SETTINGS, 3), NODE, Expected(100, "its last build", GIB, 400, cpus=4)).cpus == 3


def test_oom_retry_doubles_once_up_to_the_bound():
    bounds = SETTINGS.targets["cpu"].resources
    first = requested(SETTINGS, NODE, Expected(60, "model: default"))
    retry = after_oom(SETTINGS, NODE, first)
    assert retry is not None and retry.memory_bytes == 2 * first.memory_bytes
    at_bound = dataclasses.replace(first, memory_bytes=bounds.memory_max)
    assert after_oom(SETTINGS, NODE, at_bound) is None
