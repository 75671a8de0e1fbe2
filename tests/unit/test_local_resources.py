"""What a local build is given and what it used: real processes in real cgroups (skipped where this
runner cannot make cgroups, e.g. a user without a delegated subtree), the rusage measure where there
are none, and the pool's memory budget, driven through the real dispatch loop and scheduler."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from builder import proc
from builder.commands.run import dispatch
from builder.errors import RunFailed
from builder.execute import cgroups, sandbox
from builder.execute.command import Invocation
from builder.execute.local import LocalExecutor, Pool
from builder.layout import Layout
from builder.plan.graph import Node
from builder.plan.schedule import Scheduler
from builder.read.config import LocalPool, load_settings
from tests.helpers import Handler, write_config

MiB, GiB = 1 << 20, 1 << 30
HIERARCHY, WHY_NOT = cgroups.find()
needs_cgroups = pytest.mark.skipif(HIERARCHY is None, reason=f"this runner cannot make cgroups: {WHY_NOT}")

#: A build that touches ``argv[1]`` MiB, keeps a core busy for ``argv[2]`` seconds and says its cgroups.
HUNGRY = ("import sys, time; block = b'x' * (int(sys.argv[1]) << 20); t = time.process_time()\n"
          "while time.process_time() - t < float(sys.argv[2]): pass\n"
          "print(open('/proc/self/cgroup').read())")


def node(module: str) -> Node:
    return Node(tree="cpu", module=module, name=module.split("/")[0], easyconfig=Path(f"/ec/{module}.eb"),
                target="cpu", deps=(), installed=False, sha256="0")


def executor(tmp_path: Path, pool: Pool, view: sandbox.View | None = None, report=lambda msg: None) -> LocalExecutor:
    env = {"PATH": "/usr/bin:/bin", "EASYBUILD_BUILDPATH": str(tmp_path / "build"),
           "EASYBUILD_TMPDIR": str(tmp_path / "tmp")}
    return LocalExecutor(cwd=tmp_path, layout=Layout(tmp_path / "library"), host_env=env, view=view, pool=pool,
                         report=report)


def build(tmp_path: Path, pool: Pool, mebibytes: int, seconds: float, memory: int | None = None,
          view: sandbox.View | None = None):
    """One build of ``HUNGRY`` through the executor: how it ended, and its log."""
    n = node("Hungry/1")
    inv = Invocation(argv=(sys.executable, "-c", HUNGRY, str(mebibytes), str(seconds)), env=(),
                     prefix=str(tmp_path / "prefix"), memory_bytes=memory)
    with executor(tmp_path, pool, view) as ex:
        ex.submit(n, inv, tmp_path / "hungry.log")
        [(ended, run)] = ex.wait(120)
    assert ended == n
    return run, (tmp_path / "hungry.log").read_text()


def ours() -> list[Path]:
    """The build cgroups this runner has now."""
    assert HIERARCHY is not None
    mine = f"{cgroups.prefix()}{os.getpid()}-*"
    return [p for parent in {HIERARCHY.memory, HIERARCHY.cpu} for p in parent.glob(mine)]


@needs_cgroups
def test_a_build_in_its_cgroup_is_measured_there_and_the_cgroup_goes(tmp_path):
    run, log = build(tmp_path, Pool(cgroups=HIERARCHY, memory_default={"cpu": 1 << 30}), 200, 1.0)
    assert run.exit_code == 0 and HIERARCHY is not None, log
    usage = run.usage
    assert usage is not None and usage.measured_by == f"cgroup v{HIERARCHY.version}"
    assert usage.peak_memory_bytes is not None and 200 * MiB <= usage.peak_memory_bytes < 1 << 30
    assert usage.cpu_seconds is not None and 1.0 <= usage.cpu_seconds < 30
    assert usage.oom_kills == 0
    # the build was in it from its start: the guard joined before it started the build
    assert f"{cgroups.prefix()}{os.getpid()}-" in log
    assert ours() == []


@needs_cgroups
@pytest.mark.parametrize("given", ["its own", "its target's default"])
def test_a_build_over_its_memory_is_oom_killed_in_its_cgroup_and_the_runner_lives(tmp_path, given):
    own = given == "its own"
    pool = Pool(cgroups=HIERARCHY, memory_default={"cpu": (1 << 30) if own else 64 * MiB})
    run, log = build(tmp_path, pool, 400, 0, memory=64 * MiB if own else None)
    assert run.exit_code != 0
    assert run.usage is not None and run.usage.oom_kills is not None and run.usage.oom_kills >= 1
    assert run.usage.peak_memory_bytes is not None and run.usage.peak_memory_bytes <= 64 * MiB
    assert ours() == []  # and this process, the runner, is still here to check


@needs_cgroups
def test_a_sandboxed_build_runs_inside_its_cgroup(tmp_path):
    why = sandbox.unavailable()
    if why:
        pytest.skip(why)
    view = sandbox.View(readonly=(Path(sys.prefix), Path(sys.base_prefix)))
    run, log = build(tmp_path, Pool(cgroups=HIERARCHY, memory_default={"cpu": 1 << 30}), 150, 0.5, view=view)
    assert run.exit_code == 0, log
    assert run.usage is not None and run.usage.peak_memory_bytes is not None
    assert run.usage.peak_memory_bytes >= 150 * MiB and run.usage.cpu_seconds >= 0.5
    assert ours() == []


@needs_cgroups
def test_a_killed_runners_cgroups_are_removed_by_the_next_with_what_is_left_in_them(tmp_path):
    assert HIERARCHY is not None
    gone = subprocess.Popen(["sleep", "60"])  # the runner, killed
    ident = (gone.pid, proc.started(gone.pid))
    gone.kill()
    gone.wait()
    name = f"{cgroups.prefix()}{ident[0]}-{ident[1]}-1-Left--1"
    folders = list(dict.fromkeys((HIERARCHY.memory / name, HIERARCHY.cpu / name)))
    for folder in folders:
        folder.mkdir()
    left = subprocess.Popen(["sleep", "60"])
    for folder in folders:
        (folder / "cgroup.procs").write_text(str(left.pid))
    mine = cgroups.Cgroup(HIERARCHY, "Mine/1", None)  # a living runner's: kept
    try:
        assert cgroups.remove_leftovers(HIERARCHY) == [name]
        assert left.wait(10) == -9 and not any(f.exists() for f in folders)
        assert all(f.is_dir() for f in mine.folders)
    finally:
        mine.remove()


def test_without_a_cgroup_the_process_trees_rusage_is_the_measure(tmp_path):
    run, log = build(tmp_path, Pool(), 100, 0.5)
    assert run.exit_code == 0, log
    usage = run.usage
    assert usage is not None and usage.measured_by == "rusage" and usage.oom_kills is None
    assert usage.peak_memory_bytes is not None and usage.peak_memory_bytes >= 100 * MiB
    assert usage.cpu_seconds is not None and usage.cpu_seconds >= 0.5


STEP = "import json, sys, time; s = time.time(); time.sleep(1.0); " \
       "open(sys.argv[1], 'a').write(json.dumps([sys.argv[2], s, time.time()]) + '\\n')"


def run_in_budget(tmp_path, memory: dict[str, int], budget: int, jobs: int = 4,
                  said: list[str] | None = None) -> dict[str, tuple[float, float]]:
    """Build independent nodes (priority by name) that each are given ``memory[module]`` (they use little:
    the budget counts what builds are given); each one's span."""
    trace = tmp_path / "trace.jsonl"

    def invocation(n):
        return Invocation(argv=(sys.executable, "-c", STEP, str(trace), n.module), env=(),
                          prefix=str(tmp_path / n.name), memory_bytes=memory[n.module])

    sched = Scheduler([node(m) for m in memory])
    with executor(tmp_path, Pool(memory_budget=budget), report=(said if said is not None else []).append) as ex:
        dispatch(sched, ex, jobs, Handler(invocation, lambda n: tmp_path / f"{n.name}.log",
                                          lambda n, inv, r: r.exit_code == 0))
    assert sched.done() and len(sched.succeeded) == len(memory)
    return {m: (s, e) for m, s, e in (json.loads(line) for line in trace.read_text().splitlines())}


def test_builds_start_only_while_their_memory_fits_the_budget_in_priority_order(tmp_path):
    """A (2) runs; B (2) does not fit beside it, and C (1), which would, does not overtake B: both start
    once A ended, together (2 + 1 fits)."""
    spans = run_in_budget(tmp_path, {"A/1": 2 * GiB, "B/1": 2 * GiB, "C/1": 1 * GiB}, budget=3 * GiB)
    assert spans["A/1"][1] <= spans["B/1"][0] and spans["A/1"][1] <= spans["C/1"][0]
    assert spans["C/1"][0] < spans["B/1"][1] and spans["B/1"][0] < spans["C/1"][1]  # B and C side by side


def test_a_build_larger_than_the_budget_runs_alone_and_the_run_says_so(tmp_path):
    said: list[str] = []
    spans = run_in_budget(tmp_path, {"A/1": 5 * GiB, "B/1": 1 * GiB, "C/1": 1 * GiB}, budget=3 * GiB, said=said)
    assert said == ["cpu/A/1 runs alone: its memory (5.0 GiB) is more than local.memory_budget (3.0 GiB)"]
    assert spans["A/1"][1] <= min(spans["B/1"][0], spans["C/1"][0])
    assert spans["B/1"][0] < spans["C/1"][1] and spans["C/1"][0] < spans["B/1"][1]


def test_a_cgroup_counter_that_is_not_a_number_is_never_read_as_zero():
    assert cgroups._field("oom_kill 3\n", "oom_kill") == 3
    for text, key in (("oom_kill -1\n", "oom_kill"), ("oom_kill 3\n", "oom_kills"), ("oom_kill 1e9\n", "oom_kill")):
        with pytest.raises(RunFailed):
            cgroups._field(text, key)


def test_the_budget_is_a_share_of_the_hosts_memory_by_default(tmp_path):
    easystack = tmp_path / "cpu.easystack.yaml"
    easystack.write_text("easyconfigs: []\n")
    config = write_config(tmp_path, {"cpu": {"kind": "cpu", "tree": "cpu", "easystacks": [str(easystack)]}})
    settings = load_settings(config, env={"MODLIB_ROOT": str(tmp_path / "library")})
    assert settings.local.memory_budget(64 << 30) == 48 << 30
    assert LocalPool("20Gi").memory_budget(64 << 30) == 20 << 30
