import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from builder import proc
from builder.errors import EXIT_LOCKED, Locked
from builder.execute.command import Invocation, clear_leftovers
from builder.execute.lock import Heartbeat, RunLock, read_holder
from builder.layout import Layout
from builder.plan.graph import Node


def test_second_run_is_refused_with_exit_code_3(tmp_path):
    with RunLock(Layout(tmp_path), holder="first"):
        with pytest.raises(Locked) as err:
            RunLock(Layout(tmp_path), holder="second").acquire()
    assert err.value.exit_code == EXIT_LOCKED
    assert "another run holds the library lock (first" in str(err.value)
    assert not Layout(tmp_path).run_lock().exists()


def test_lock_records_holder_host_process_and_its_mtime_is_the_heartbeat(tmp_path):
    with RunLock(Layout(tmp_path), holder="cron", heartbeat=0.05) as lock:
        path = Layout(tmp_path).run_lock()
        os.utime(path, (time.time() - 3600, time.time() - 3600))
        time.sleep(0.3)
        info = read_holder(path) or {}
        assert lock.lost is None
    assert info["holder"] == "cron" and info["host"] == socket.gethostname() and info["pid"] == os.getpid()
    assert info["process_start"] == proc.started(os.getpid()) and info["token"] == info["id"]
    assert abs(info["heartbeat"] - time.time()) < 5  # renewed through the holder's open file


def test_dead_holder_is_taken_over_and_eb_locks_are_kept(tmp_path):
    """A Kubernetes Job outlives the runner that created it: its EasyBuild lock is still held."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    Layout(tmp_path).run_lock().parent.mkdir(parents=True)
    Layout(tmp_path).run_lock().write_text(json.dumps({"holder": "killed", "host": socket.gethostname(),
                                               "pid": int(dead.stdout), "heartbeat": time.time()}))
    held = Layout(tmp_path).eb_install_lock(tmp_path / "cpu" / "software" / "X-1" / "X" / "1")
    held.mkdir(parents=True)
    with RunLock(Layout(tmp_path)) as lock:
        assert (lock.took_over or {})["holder"] == "killed"
        assert held.exists()


def test_a_fresh_build_clears_only_its_own_leftovers(tmp_path):
    mine, other = (Node(tree="cpu", module=m, name=m.split("/")[0], easyconfig=tmp_path / "x.eb", target="cpu",
                        deps=(), installed=False, sha256="0") for m in ("X/1", "Y/.2"))
    layout = Layout(tmp_path)
    invs = {n.module: Invocation(argv=(), env=(), prefix=str(layout.prefix("cpu", f"{n.name}-0123")))
            for n in (mine, other)}
    for node in (mine, other):
        prefix = Path(invs[node.module].prefix)
        (layout.staging(node.tree, node.module) / "all").mkdir(parents=True)
        layout.eb_install_lock(layout.install_dir(prefix, node.module)).mkdir(parents=True)
        layout.install_dir(prefix, node.module).mkdir(parents=True)
    clear_leftovers(layout, mine, invs["X/1"])
    assert not layout.staging("cpu", "X/1").exists() and not Path(invs["X/1"].prefix).exists()
    assert layout.staging("cpu", "Y/.2").exists() and Path(invs["Y/.2"].prefix).exists()
    # EasyBuild's own name: the install dir with '/' as '_'; a hidden module installs without the dot
    assert {p.name for p in layout.eb_locks().iterdir()} == {
        str(tmp_path / "cpu" / "software" / "Y-0123" / "Y" / "2").replace("/", "_") + ".lock"}


def test_other_host_with_old_heartbeat_is_stale(tmp_path):
    Layout(tmp_path).run_lock().parent.mkdir(parents=True)
    Layout(tmp_path).run_lock().write_text(json.dumps({"holder": "pod", "host": "elsewhere", "pid": 1}))
    os.utime(Layout(tmp_path).run_lock(), (time.time() - 3600, time.time() - 3600))
    with RunLock(Layout(tmp_path), stale_after=120) as lock:
        assert (lock.took_over or {})["host"] == "elsewhere"


def test_wait_mode_gets_the_lock_when_the_holder_releases(tmp_path):
    first = RunLock(Layout(tmp_path)).acquire()
    import threading

    threading.Timer(0.5, first.release).start()
    with RunLock(Layout(tmp_path), wait=True, poll=0.1) as second:
        assert json.loads(Layout(tmp_path).run_lock().read_text())["token"] == second.info["token"]


def test_a_heartbeat_that_keeps_failing_loses_the_lock_and_says_so():
    """One failed write must not kill the heartbeat (another run would then take over a live run);
    failures are warned about, and only a run of them counts as losing the lock."""
    outcomes = iter([OSError(28, "No space left on device"), True, OSError(28, "No space left on device"),
                     OSError(5, "Input/output error")])
    warnings: list[str] = []

    def renew() -> bool:
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return bool(outcome)

    beat = Heartbeat("the test lock", renew, interval=0.01, max_failures=2, warn=warnings.append)
    beat.start()
    deadline = time.time() + 10
    while beat.lost is None and time.time() < deadline:
        time.sleep(0.01)
    beat.stop()
    assert beat.lost is not None and "could not be renewed 2 times in a row" in beat.lost
    assert "Input/output error" in beat.lost
    assert [w.split(" (")[1][:3] for w in warnings[:3]] == ["1/2", "1/2", "2/2"]  # the success reset the count
    assert warnings[-1] == "warning: lost the test lock: no new builds start"


def test_a_lock_taken_over_while_held_counts_as_lost(tmp_path):
    """A holder stopped past the stale bound finds another run's token in the file at its next beat."""
    warnings: list[str] = []
    with RunLock(Layout(tmp_path), heartbeat=0.05, warn=warnings.append) as lock:
        path = Layout(tmp_path).run_lock()
        path.write_text(json.dumps({**json.loads(path.read_text()), "token": "someone else"}))
        deadline = time.time() + 10
        while lock.lost is None and time.time() < deadline:
            time.sleep(0.02)
        assert lock.lost == f"the run lock {path} was taken over by another run"
    assert json.loads(path.read_text())["token"] == "someone else"  # release leaves the new holder's lock
