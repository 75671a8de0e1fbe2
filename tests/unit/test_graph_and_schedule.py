from pathlib import Path

import pytest

from builder.errors import ModlibError
from builder.plan.graph import Node, Plan, cuda_bound
from builder.plan.schedule import Scheduler


def node(module, deps=(), tree="cpu", installed=False):
    return Node(tree=tree, module=module, name=module.split("/")[0],
                easyconfig=Path(f"/ec/{module.replace('/', '-')}.eb"),
                target=tree, deps=tuple((tree, d) for d in deps), installed=installed, sha256="0")


def test_topological_order_puts_dependencies_first():
    plan = Plan.of([node("C/1", ["B/1"]), node("B/1", ["A/1"]), node("A/1"), node("D/1", ["A/1"])])
    order = [n.module for n in plan.nodes]
    assert order.index("A/1") < order.index("B/1") < order.index("C/1")
    assert order.index("A/1") < order.index("D/1")


def test_cycle_is_bad_input_naming_the_easyconfigs():
    with pytest.raises(ModlibError) as err:
        Plan.of([node("A/1", ["B/1"]), node("B/1", ["A/1"])])
    assert err.value.exit_code == 2
    assert "dependency cycle: A-1.eb -> B-1.eb -> A-1.eb" in str(err.value)


def test_cuda_bound_follows_dependencies_upwards():
    deps = {"CUDA/13": [], "GCCcore/system": [], "zlib/1": ["GCCcore/system"],
            "saxpy/1": ["CUDA/13", "GCCcore/system"], "app/1": ["saxpy/1", "zlib/1"]}
    names = {m: m.split("/")[0] for m in deps}
    assert cuda_bound(deps, names) == {"CUDA/13", "saxpy/1", "app/1"}


def test_scheduler_runs_longest_chain_first_and_waits_for_dependencies():
    a, b, c, x = node("A/1"), node("B/1", ["A/1"]), node("C/1", ["B/1"]), node("X/1")
    sched = Scheduler([a, b, c, x])
    assert [n.module for n in sched.ready()] == ["A/1", "X/1"]  # A heads a chain of 3
    assert sched.take(1) == [a]
    assert [n.module for n in sched.ready()] == ["X/1"]
    sched.finish(a.key, True)
    assert "B/1" in [n.module for n in sched.ready()]


def test_failure_stops_only_dependents():
    a, b, c, x = node("A/1"), node("B/1", ["A/1"]), node("C/1", ["B/1"]), node("X/1")
    sched = Scheduler([a, b, c, x])
    assert sched.take(1) == [a]
    sched.finish(a.key, False)
    assert sched.blocked == {b.key: a.key, c.key: a.key}
    assert [n.module for n in sched.ready()] == ["X/1"]
    assert sched.take(5) == [x]  # never more than is ready, never a node twice
    assert sched.take(5) == []
    sched.finish(x.key, True)
    assert sched.done() and sched.failed == [a.key] and sched.succeeded == [x.key]


def test_installed_dependencies_do_not_hold_a_node_back():
    b = node("B/1", ["A/1"])
    sched = Scheduler([b])  # A/1 is installed, so it is not part of the work
    assert [n.module for n in sched.ready()] == ["B/1"]


def test_rebuild_takes_a_bare_name_when_one_module_of_it_is_planned():
    plan = Plan.of([node("tabulate/0.9", installed=True), node("Jinja2/3.1.4", installed=True),
                    node("Jinja2/3.1.5", installed=True), node("Jinja2/3.1.4", tree="x86", installed=True)])
    assert [n.key for n in plan.select(["tabulate"])] == [("cpu", "tabulate/0.9")]
    assert {n.key for n in plan.select(["Jinja2/3.1.4"])} == {("cpu", "Jinja2/3.1.4"), ("x86", "Jinja2/3.1.4")}
    with pytest.raises(ModlibError) as err:
        plan.select(["Jinja2"])
    assert err.value.exit_code == 2
    assert str(err.value) == "--rebuild: Jinja2 is ambiguous, name one of: Jinja2/3.1.4, Jinja2/3.1.5"
