"""The scheduling benchmark's simulation, on graphs small enough to check by hand: it drives the scheduler
the run builds (expected.scheduler), so what it measures is production's order."""

from pathlib import Path

from bench import schedule_sim
from builder.execute import expected, forecast
from builder.layout import Layout
from builder.plan.graph import Node
from builder.plan.schedule import Scheduler
from tests.helpers import record


def node(module, deps=(), cost=1.0, moduleclass=""):
    return Node(tree="cpu", module=module, name=module.split("/")[0], easyconfig=Path(f"/ec/{module}.eb"), target="cpu",
                deps=tuple(("cpu", d) for d in deps), installed=False, sha256=str(cost), moduleclass=moduleclass)


def cost(n):
    return float(n.sha256)


def test_longest_chain_first_beats_waves(tmp_path):
    # a long chain A -> B -> C (3 x 10) and many short independent nodes at level 0 and 1; the model gives
    # every one of these names the default, so production ranks them by chain length
    nodes = [node("A", cost=10), node("B", ["A"], 10), node("C", ["B"], 10)]
    nodes += [node(f"s{i}", cost=5) for i in range(4)] + [node(f"t{i}", [f"s{i}"], 5) for i in range(4)]
    assert schedule_sim.critical_path(nodes, cost) == 30
    assert schedule_sim.run(nodes, 2, Layout(tmp_path / "none"), cost).makespan == 35  # work 70 / 2: the bound
    assert schedule_sim.waves(nodes, 2, cost) == 40  # each level waits for its slowest member


def test_the_simulation_ranks_as_production_does_from_the_records(tmp_path):
    """The simulated builds all take the same time; which starts first is the production priority's
    choice, and a record that says a build is long moves it ahead of what the model ranks first."""
    nodes = [node("GCCcore/14", moduleclass="compiler"), node("zlib/1.3", moduleclass="lib")]
    layout = Layout(tmp_path / "library")
    first = schedule_sim.run(nodes, 1, layout, lambda n: 1.0)
    assert first.started == [("cpu", "GCCcore/14"), ("cpu", "zlib/1.3")]  # the model: 75 min against 6
    record(layout, "zlib/1.3", 10 * 3600)
    ran = schedule_sim.run(nodes, 1, layout, lambda n: 1.0)
    assert ran.started == [("cpu", "zlib/1.3"), ("cpu", "GCCcore/14")] and ran.makespan == 2


def test_one_executor_runs_everything_in_sequence(tmp_path):
    nodes = [node("A", cost=2), node("B", ["A"], 3), node("C", cost=4)]
    assert schedule_sim.run(nodes, 1, Layout(tmp_path / "none"), cost).makespan == 9


def test_peak_memory_is_what_the_running_builds_hold_together():
    a, b, c = node("A", cost=2), node("B", cost=1), node("C", ["B"], 1)
    memory = {"A": 4.0, "B": 1.0, "C": 2.0}
    ran = forecast.simulate(Scheduler([a, b, c], cost), 2, cost, lambda n: memory[n.module])
    assert ran.makespan == 2 and ran.peak_memory == 6  # A with B, then A with C (B's memory given back)
    ran = forecast.simulate(Scheduler([a, b, c], cost), 1, cost, lambda n: memory[n.module])
    assert ran.makespan == 4 and ran.peak_memory == 4
    # builds that end together free their executors together: D, next in line, starts when A and B have
    # both ended, never counted beside B
    ran = forecast.simulate(Scheduler([node("A", cost=1), b, node("D", cost=1)], cost), 2, cost,
                            lambda n: memory.get(n.module, 8.0))
    assert ran.started == [("cpu", "A"), ("cpu", "B"), ("cpu", "D")] and ran.peak_memory == 8 and ran.makespan == 2


def test_model_is_not_uniform():
    model = expected.build_model()
    gcc = Node(tree="cpu", module="GCCcore/14.2.0", name="GCCcore", easyconfig=Path("x"), target="cpu", deps=(),
               installed=False, sha256="", moduleclass="compiler")
    small = Node(tree="cpu", module="zlib/1.3.1", name="zlib", easyconfig=Path("x"), target="cpu", deps=(),
                 installed=False, sha256="", moduleclass="lib")
    assert model.minutes(gcc)[0] > 10 * model.minutes(small)[0]
    assert model.peak_gib(gcc)[0] > model.peak_gib(small)[0]
