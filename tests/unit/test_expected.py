"""What a build is expected to cost, and the run's scheduler that ranks by it (builder/execute/expected.py)."""

from pathlib import Path

from builder.execute import expected
from builder.execute.expected import GIB
from builder.execute.resources import requested
from builder.layout import Layout
from builder.plan.graph import Node
from builder.plan.schedule import Scheduler
from tests.helpers import record
from tests.unit.test_resources import SETTINGS


def node(module, moduleclass="", deps=(), tree="cpu"):
    return Node(tree=tree, module=module, name=module.split("/")[0], easyconfig=Path(f"/ec/{module}.eb"),
                target=tree, deps=tuple((tree, d) for d in deps), installed=False, sha256="0",
                moduleclass=moduleclass)


def order(layout, nodes):
    return [n.module for n in expected.scheduler(layout, nodes).ready()]


def test_a_chain_of_long_builds_outranks_a_longer_chain_of_short_ones(tmp_path):
    layout = Layout(tmp_path / "none")  # no records: the model ranks
    llvm = node("LLVM/20.1", "compiler")
    short = [node(f"b{i}/1", "toolchain", deps=[f"b{i - 1}/1"] if i else []) for i in range(5)]
    assert order(layout, [*short, llvm])[0] == "LLVM/20.1"  # 120 min against 5 x 0.2 min
    counted = Scheduler([*short, llvm])  # what the run ranked by before: nodes in the chain
    assert counted.ready()[0].module == "b0/1"


def test_a_recorded_duration_beats_the_model(tmp_path):
    layout = Layout(tmp_path / "library")
    zlib, llvm = node("zlib/1.3", "lib"), node("LLVM/20.1", "compiler")
    assert order(layout, [zlib, llvm]) == ["LLVM/20.1", "zlib/1.3"]
    record(layout, "zlib/1.3", 3 * 3600)
    got = expected.expected(layout, zlib)
    assert (got.seconds, got.basis, got.recorded) == (3 * 3600, "its last build", True)
    assert order(layout, [zlib, llvm]) == ["zlib/1.3", "LLVM/20.1"]


def test_another_versions_record_beats_the_model_and_its_own_beats_both(tmp_path):
    layout = Layout(tmp_path / "library")
    zlib, llvm = node("zlib/1.3", "lib"), node("LLVM/20.1", "compiler")
    record(layout, "zlib/1.2", 3 * 3600, tree="other")
    record(layout, "zlibber/1.0", 9 * 3600)  # another software whose name starts alike: not kin
    got = expected.expected(layout, zlib)
    assert (got.seconds, got.basis) == (3 * 3600, "zlib/1.2's last build")
    assert order(layout, [zlib, llvm]) == ["zlib/1.3", "LLVM/20.1"]
    record(layout, "zlib/1.3", 60, start=500.0)  # older than the kin's build, and still the one that counts
    record(layout, "zlib/1.3", 7, start=2000.0, exit_code=1)  # a failure says nothing of the cost
    assert expected.expected(layout, zlib).seconds == 60


def test_the_model_goes_by_name_then_moduleclass_then_default(tmp_path):
    layout = Layout(tmp_path / "none")
    costs = expected.expectations(layout, [node("GCCcore/14.2.0", "compiler"), node("zlib/1.3", "lib"),
                                           node("odd/1", "nosuchclass")])
    assert [(e.seconds, e.basis) for e in costs.values()] == [
        (75 * 60, "model: GCCcore"), (6 * 60, "model: moduleclass lib"), (5 * 60, "model: default")]
    assert [(e.peak_memory_bytes, e.memory_basis) for e in costs.values()] == [
        (8 * GIB, "model: GCCcore"), (2 * GIB, "model: moduleclass lib"), (2 * GIB, "model: default")]
    assert not any(e.recorded or e.cpu_seconds is not None for e in costs.values())


def test_memory_falls_back_on_its_own_and_cpu_time_comes_with_the_time(tmp_path):
    layout = Layout(tmp_path / "library")
    zlib = node("zlib/1.3", "lib")
    record(layout, "zlib/1.3", 100, start=1000.0)  # before builds measured memory
    got = expected.expected(layout, zlib)
    assert (got.seconds, got.peak_memory_bytes, got.memory_basis, got.cpu_seconds) == (
        100, 2 * GIB, "model: moduleclass lib", None)
    record(layout, "zlib/1.2", 50, start=900.0, peak_memory_bytes=3 << 20, cpu_seconds=400.0)
    got = expected.expected(layout, zlib)
    assert (got.basis, got.peak_memory_bytes, got.memory_basis, got.cpu_seconds) == (
        "its last build", 3 << 20, "zlib/1.2's last build", None)
    record(layout, "zlib/1.3", 120, start=3000.0, peak_memory_bytes=5 << 20, cpu_seconds=900.5)
    got = expected.expected(layout, zlib)
    assert (got.seconds, got.peak_memory_bytes, got.memory_basis, got.cpu_seconds) == (
        120, 5 << 20, "its last build", 900.5)


def test_a_last_try_killed_for_memory_starts_the_next_above_it(tmp_path):
    layout = Layout(tmp_path / "library")
    zlib = node("zlib/1.3", "lib")
    record(layout, "zlib/1.3", 60, start=1000.0, peak_memory_bytes=GIB, memory_bytes=2 * GIB)
    record(layout, "zlib/1.3", 60, start=2000.0, exit_code=1, memory_bytes=3 * GIB, oom_kills=1)
    got = expected.expected(layout, zlib)
    assert got.killed_with_memory == 3 * GIB
    assert requested(SETTINGS, zlib, got).memory_bytes == 6 * GIB  # above the measured 1 GiB x margin
    record(layout, "zlib/1.3", 60, start=3000.0, peak_memory_bytes=GIB, memory_bytes=6 * GIB, oom_kills=0)
    assert expected.expected(layout, zlib).killed_with_memory is None  # a success since: its peak counts
