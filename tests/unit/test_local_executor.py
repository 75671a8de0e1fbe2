"""The run's dispatch loop with the local executor: ordering and bounds, driven with tiny real
processes in place of eb (the loop and the executor are the real ones)."""

import json
import re
import socket
import sys
import time
from pathlib import Path

from builder.commands.run import dispatch
from builder.execute.command import Invocation
from builder.execute.local import LocalExecutor
from builder.layout import Layout
from builder.plan.graph import Node
from builder.plan.schedule import Scheduler
from tests.helpers import Handler

STEP = "import json, sys, time; s = time.time(); time.sleep(0.3); " \
       "open(sys.argv[1], 'a').write(json.dumps([sys.argv[2], s, time.time()]) + '\\n'); sys.exit(int(sys.argv[3]))"


def wait_for(what, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not what():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def node(module, deps=()):
    return Node(tree="cpu", module=module, name=module.split("/")[0], easyconfig=Path(f"/ec/{module}.eb"),
                target="cpu", deps=tuple(("cpu", d) for d in deps), installed=False, sha256="0")


def run(tmp_path, nodes, jobs, fail=()):
    trace = tmp_path / "trace.jsonl"
    results = {}

    def invocation(n):
        return Invocation(argv=(sys.executable, "-c", STEP, str(trace), n.module, "1" if n.module in fail else "0"),
                          env=(("MODLIB_TEST", "1"),), prefix=str(tmp_path / "prefixes" / n.name))

    def finished(n, inv, r):
        results[n.module] = r
        return r.exit_code == 0

    sched = Scheduler(nodes)
    executor = LocalExecutor(cwd=tmp_path, layout=Layout(tmp_path / "library"),
                             host_env={"PATH": "/usr/bin:/bin", "EASYBUILD_BUILDPATH": str(tmp_path / "build")})
    with executor:
        dispatch(sched, executor, jobs, Handler(invocation, lambda n: tmp_path / "logs" / f"{n.name}.log", finished))
    spans = {m: (s, e) for m, s, e in (json.loads(line) for line in trace.read_text().splitlines())}
    return sched, spans, results


def test_dependencies_finish_before_dependents_start_and_jobs_bound_holds(tmp_path):
    nodes = [node("A/1"), node("B/1", ["A/1"]), node("C/1", ["A/1"]), node("D/1", ["B/1", "C/1"]), node("E/1")]
    sched, spans, results = run(tmp_path, nodes, jobs=2)
    assert sched.done() and len(sched.succeeded) == 5
    for n in nodes:
        for _, dep in n.deps:
            assert spans[dep][1] <= spans[n.module][0]
    for t in {s for s, _ in spans.values()}:
        assert sum(1 for s, e in spans.values() if s <= t < e) <= 2
    assert all(Path(r.log).parent == tmp_path / "logs" for r in results.values())
    # built without a sandbox (no view given): the record says so
    assert all(re.fullmatch(rf"{re.escape(socket.gethostname())} \(pid \d+, unisolated\)", r.where)
               for r in results.values())


def test_failure_blocks_dependents_but_the_rest_runs(tmp_path):
    nodes = [node("A/1"), node("B/1", ["A/1"]), node("X/1")]
    sched, spans, results = run(tmp_path, nodes, jobs=2, fail={"A/1"})
    assert results["A/1"].exit_code == 1 and "B/1" not in spans and "X/1" in spans
    assert sched.blocked == {("cpu", "B/1"): ("cpu", "A/1")}


def test_independent_nodes_run_at_the_same_time(tmp_path):
    _, spans, _ = run(tmp_path, [node(f"N{i}/1") for i in range(4)], jobs=4)
    latest_start = max(s for s, _ in spans.values())
    assert all(latest_start < e for _, e in spans.values())  # all four were running at once


def test_a_lost_lock_starts_nothing_new(tmp_path):
    trace = tmp_path / "trace.jsonl"
    lost: list[str] = []

    def finished(n, inv, r):
        lost.append("lost the run lock")  # the lock goes while the first build runs
        return r.exit_code == 0

    nodes = [node("A/1"), node("B/1", ["A/1"]), node("X/1")]
    sched = Scheduler(nodes)
    with local_executor(tmp_path) as ex:
        dispatch(sched, ex, 1, Handler(lambda n: Invocation(argv=(sys.executable, "-c", STEP, str(trace), n.module,
                                                                  "0"), env=(), prefix=str(tmp_path / n.name)),
                                       lambda n: tmp_path / f"{n.name}.log", finished,
                                       lambda: lost[0] if lost else None))
    assert [json.loads(line)[0] for line in trace.read_text().splitlines()] == ["A/1"]
    assert not sched.done() and sched.succeeded == [("cpu", "A/1")]


def local_executor(tmp_path):
    return LocalExecutor(cwd=tmp_path, layout=Layout(tmp_path / "library"),
                         host_env={"PATH": "/usr/bin:/bin", "EASYBUILD_BUILDPATH": str(tmp_path / "build")})


def sleeper(tmp_path, n):
    """A build that says it started and then runs for a minute, unless it is stopped."""
    return Invocation(argv=("sh", "-c", f"touch {tmp_path / n.name}.started; exec sleep 60"), env=(),
                      prefix=str(tmp_path / "prefixes" / n.name))


def test_an_executor_is_made_without_io_and_waits_no_longer_than_asked(tmp_path):
    executor = local_executor(tmp_path)
    assert list(tmp_path.iterdir()) == []
    with executor:
        t0 = time.monotonic()
        assert executor.wait(0.3) == [] and executor.poll() == []
        assert 0.3 <= time.monotonic() - t0 < 5


def test_a_cancelled_build_is_stopped_and_still_comes_back(tmp_path):
    a = node("A/1")
    with local_executor(tmp_path) as executor:
        executor.submit(a, sleeper(tmp_path, a), tmp_path / "A.log")
        assert wait_for(lambda: (tmp_path / "A.started").exists())
        assert executor.poll() == []  # it runs
        t0 = time.monotonic()
        executor.cancel(a)
        [(ended, run)] = executor.wait(30)
        assert ended == a and run.exit_code != 0 and time.monotonic() - t0 < 15
        assert not executor._running


def test_a_lost_lock_cancels_what_runs_and_still_finishes_it(tmp_path):
    """A run that lost its lock publishes nothing more and another may build the same nodes: its running
    builds are stopped rather than waited for, and each one's end is still handed on to be recorded."""
    nodes = [node("A/1"), node("B/1", ["A/1"]), node("C/1")]
    ended: dict[str, int] = {}
    sched = Scheduler(nodes)
    t0 = time.monotonic()
    with local_executor(tmp_path) as executor:
        dispatch(sched, executor, 2, Handler(
            lambda n: sleeper(tmp_path, n), lambda n: tmp_path / f"{n.name}.log",
            lambda n, inv, r: ended.setdefault(n.module, r.exit_code) == 0,
            lambda: "lost the run lock" if (tmp_path / "A.started").exists() else None))
    assert time.monotonic() - t0 < 30  # not the builds' minute
    assert set(ended) == {"A/1", "C/1"} and all(code != 0 for code in ended.values())
    assert not (tmp_path / "B.started").exists() and sched.succeeded == []
