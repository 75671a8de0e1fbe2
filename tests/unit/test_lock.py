import json
import os
import socket
import subprocess
import sys
import time

import pytest

from builder.build.command import clear_leftovers, staging_dir
from builder.build.lock import RunLock, eb_install_lock, eb_locks_dir, lock_path
from builder.errors import EXIT_LOCKED, ModlibError
from builder.plan.graph import Node


def test_second_run_is_refused_with_exit_code_3(tmp_path):
    with RunLock(tmp_path, holder="first"):
        with pytest.raises(ModlibError) as err:
            RunLock(tmp_path, holder="second").acquire()
    assert err.value.exit_code == EXIT_LOCKED
    assert "another run holds the library lock (first" in str(err.value)
    assert not lock_path(tmp_path).exists()


def test_lock_records_holder_host_process_heartbeat(tmp_path):
    with RunLock(tmp_path, holder="cron"):
        info = json.loads(lock_path(tmp_path).read_text())
    assert info["holder"] == "cron" and info["host"] == socket.gethostname() and info["pid"] == os.getpid()
    assert abs(info["heartbeat"] - time.time()) < 5


def test_dead_holder_is_taken_over_and_eb_locks_are_kept(tmp_path):
    """A Kubernetes Job outlives the runner that created it: its EasyBuild lock is still held."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock_path(tmp_path).parent.mkdir(parents=True)
    lock_path(tmp_path).write_text(json.dumps({"holder": "killed", "host": socket.gethostname(),
                                               "pid": int(dead.stdout), "heartbeat": time.time()}))
    held = eb_install_lock(tmp_path, "cpu", "X/1")
    held.mkdir(parents=True)
    with RunLock(tmp_path) as lock:
        assert lock.took_over["holder"] == "killed"
        assert held.exists()


def test_a_fresh_build_clears_only_its_own_leftovers(tmp_path):
    mine, other = (Node(tree="cpu", module=m, name=m.split("/")[0], easyconfig=tmp_path / "x.eb", target="cpu",
                        deps=(), installed=False, sha256="0") for m in ("X/1", "Y/.2"))
    for node in (mine, other):
        (staging_dir(tmp_path, node) / "all").mkdir(parents=True)
        eb_install_lock(tmp_path, node.tree, node.module).mkdir(parents=True)
    clear_leftovers(tmp_path, mine)
    assert not staging_dir(tmp_path, mine).exists() and not eb_install_lock(tmp_path, "cpu", "X/1").exists()
    assert staging_dir(tmp_path, other).exists()
    # EasyBuild's own name: the install dir with '/' as '_'; a hidden module installs without the dot
    assert {p.name for p in eb_locks_dir(tmp_path).iterdir()} == {
        str(tmp_path / "cpu" / "software" / "Y" / "2").replace("/", "_") + ".lock"}


def test_other_host_with_old_heartbeat_is_stale(tmp_path):
    lock_path(tmp_path).parent.mkdir(parents=True)
    lock_path(tmp_path).write_text(json.dumps({"holder": "pod", "host": "elsewhere", "pid": 1,
                                               "heartbeat": time.time() - 3600}))
    with RunLock(tmp_path, stale_after=120) as lock:
        assert lock.took_over["host"] == "elsewhere"


def test_wait_mode_gets_the_lock_when_the_holder_releases(tmp_path):
    first = RunLock(tmp_path).acquire()
    import threading

    threading.Timer(0.5, first.release).start()
    with RunLock(tmp_path, wait=True, poll=0.1) as second:
        assert json.loads(lock_path(tmp_path).read_text())["token"] == second.info["token"]
