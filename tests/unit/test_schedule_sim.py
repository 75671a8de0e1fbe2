"""The scheduling benchmark's simulation, on graphs small enough to check by hand."""

from pathlib import Path

from bench import schedule_sim
from builder.plan.graph import Node


def node(module, deps=(), cost=1.0):
    return Node(tree="cpu", module=module, name=module, easyconfig=Path(f"/ec/{module}.eb"), target="cpu",
                deps=tuple(("cpu", d) for d in deps), installed=False, sha256=str(cost))


def cost(n):
    return float(n.sha256)


def test_longest_chain_first_beats_waves():
    # a long chain A -> B -> C (3 x 10) and many short independent nodes at level 0 and 1
    nodes = [node("A", cost=10), node("B", ["A"], 10), node("C", ["B"], 10)]
    nodes += [node(f"s{i}", cost=5) for i in range(4)] + [node(f"t{i}", [f"s{i}"], 5) for i in range(4)]
    assert schedule_sim.critical_path(nodes, cost) == 30
    assert schedule_sim.simulate(nodes, 2, cost) == 35  # = total work 70 / 2 executors: the bound
    assert schedule_sim.waves(nodes, 2, cost) == 40  # each level waits for its slowest member


def test_one_executor_runs_everything_in_sequence():
    nodes = [node("A", cost=2), node("B", ["A"], 3), node("C", cost=4)]
    assert schedule_sim.simulate(nodes, 1, cost) == 9


def test_model_is_not_uniform():
    model = schedule_sim.cost_model()
    gcc = Node(tree="cpu", module="GCCcore/14.2.0", name="GCCcore", easyconfig=Path("x"), target="cpu", deps=(),
               installed=False, sha256="", moduleclass="compiler")
    small = Node(tree="cpu", module="zlib/1.3.1", name="zlib", easyconfig=Path("x"), target="cpu", deps=(),
                 installed=False, sha256="", moduleclass="lib")
    assert model(gcc) > 10 * model(small)
