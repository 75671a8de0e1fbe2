"""Builds die with their runner and never run twice side by side: real processes under builder/proc.py's
guard, a runner killed with SIGKILL, and the local executor finding an earlier build still alive."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from builder import proc
from builder.commands.run import dispatch
from builder.execute.command import Invocation
from builder.execute.executors import NodeRun
from builder.execute.local import LocalExecutor
from builder.layout import Layout
from builder.plan.graph import Node
from builder.plan.schedule import Scheduler
from tests.helpers import Handler

#: A build with a child and a grandchild, as eb running a build step's shell command has.
FAMILY = ["sh", "-c", "sh -c 'sleep 60' & sleep 60 & wait"]

RUNNER = """
import json, sys, time
from pathlib import Path
from builder import proc
child = proc.start(json.loads(sys.argv[1]), env={"PATH": "/usr/bin:/bin"}, cwd=Path("."), log_path=Path(sys.argv[2]))
print(child.pid, flush=True)
time.sleep(60)
"""


def wait_until(what, timeout: float = 10.0) -> bool:
    deadline = time.time() + timeout
    while not what():
        if time.time() > deadline:
            return False
        time.sleep(0.05)
    return True


def family(group: int) -> list[int]:
    """The group's processes once all four are up: the guard, sh, and its two sleeps' shells."""
    assert wait_until(lambda: len(proc.group_members(group)) >= 4), proc.group_members(group)
    return proc.group_members(group)


def test_a_runner_killed_with_sigkill_takes_its_builds_whole_group_with_it(tmp_path):
    runner = subprocess.Popen([sys.executable, "-c", RUNNER, json.dumps(FAMILY), str(tmp_path / "log")],
                              stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert runner.stdout is not None
    group = int(runner.stdout.readline())
    members = family(group)
    os.kill(runner.pid, signal.SIGKILL)  # the runner alone, not its group: as the OOM killer does
    runner.wait()
    assert wait_until(lambda: not proc.group_members(group), timeout=5), \
        f"left behind: {[Path(f'/proc/{p}/cmdline').read_bytes() for p in proc.group_members(group)]}"
    assert all(not proc.alive(pid) for pid in members)


def test_stop_ends_the_whole_group(tmp_path):
    child = proc.start(FAMILY, env={"PATH": "/usr/bin:/bin"}, cwd=tmp_path, log_path=tmp_path / "log")
    family(child.pid)
    proc.stop(child, grace=5)
    assert wait_until(lambda: not proc.group_members(child.pid), timeout=5)


def test_no_build_starts_beside_an_earlier_one_that_still_runs(tmp_path):
    """A runner killed before it could stop its build (or a guard killed itself) leaves eb running:
    the next run fails that node with a message and leaves the running build's files alone."""
    layout = Layout(tmp_path / "library")
    node = Node(tree="cpu", module="X/1", name="X", easyconfig=tmp_path / "X.eb", target="cpu", deps=(),
                installed=False, sha256="0")
    earlier = proc.start(["sleep", "60"], env={"PATH": "/usr/bin:/bin"}, cwd=tmp_path, log_path=tmp_path / "e.log")
    try:
        layout.build_process("cpu", "X/1").parent.mkdir(parents=True)
        layout.build_process("cpu", "X/1").write_text(json.dumps(proc.identity(earlier)))
        (layout.staging("cpu", "X/1") / "all").mkdir(parents=True)
        runs: dict[str, NodeRun] = {}
        executor = LocalExecutor(cwd=tmp_path, layout=layout, host_env={"PATH": "/usr/bin:/bin",
                                                                          "EASYBUILD_BUILDPATH": str(tmp_path / "b")})
        with executor:
            dispatch(Scheduler([node]), executor, 1,
                     Handler(lambda n: Invocation(argv=("touch", str(tmp_path / "built")), env=(),
                                                  prefix=str(layout.prefix("cpu", "X-0"))),
                             lambda n: tmp_path / "X.log",
                             lambda n, inv, r: runs.setdefault(n.module, r).exit_code == 0))
        assert runs["X/1"].exit_code == 1 and not (tmp_path / "built").exists()
        assert f"an earlier build of cpu/X/1 still runs on this host (process group {earlier.pid}" in \
               (tmp_path / "X.log").read_text()
        assert (layout.staging("cpu", "X/1") / "all").is_dir()  # its files were not cleared from under it
    finally:
        proc.stop(earlier)
    assert not proc.running(json.loads(layout.build_process("cpu", "X/1").read_text()))
