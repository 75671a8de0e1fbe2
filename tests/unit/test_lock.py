import json
import os
import socket
import subprocess
import sys
import time

import pytest

from builder.build.lock import RunLock, eb_locks_dir, lock_path
from builder.errors import EXIT_LOCKED, ModlibError


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


def test_dead_holder_is_taken_over_and_only_then_eb_locks_cleared(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock_path(tmp_path).parent.mkdir(parents=True)
    lock_path(tmp_path).write_text(json.dumps({"holder": "killed", "host": socket.gethostname(),
                                               "pid": int(dead.stdout), "heartbeat": time.time()}))
    stale = eb_locks_dir(tmp_path) / "_lib_cpu_software_X_1.lock"
    stale.mkdir(parents=True)
    with RunLock(tmp_path) as lock:
        assert lock.took_over["holder"] == "killed"
        assert not stale.exists()


def test_live_holder_keeps_eb_locks(tmp_path):
    busy = eb_locks_dir(tmp_path) / "_lib_cpu_software_Y_1.lock"
    busy.mkdir(parents=True)
    with RunLock(tmp_path):
        with pytest.raises(ModlibError):
            RunLock(tmp_path).acquire()
        assert busy.exists()


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
