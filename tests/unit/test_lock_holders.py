"""One holder of the run lock, always: real processes race for it, die holding it, are stopped past the
stale bound on another host (a UTS namespace of their own) and resumed."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from bench.lock_race import race
from builder import proc
from builder.errors import Locked
from builder.execute.lock import RunLock, read_holder
from builder.layout import Layout

HOLDER = """
import sys, time
from pathlib import Path
from builder.errors import RunFailed
from builder.execute.lock import RunLock
from builder.layout import Layout
root = Path(sys.argv[1])
lock = RunLock(Layout(root), holder="stopped", stale_after=1.0, heartbeat=0.2, warn=lambda m: print(m, flush=True))
lock.acquire()
(root / "ready").touch()
while not (root / "go").exists():
    time.sleep(0.05)
try:
    lock.fence()
except RunFailed as err:
    print(f"fenced: {err}", flush=True)
    sys.exit(1)
(root / "published").touch()
"""


def wait_for(what, timeout: float = 20.0) -> None:
    deadline = time.time() + timeout
    while not what():
        assert time.time() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.slow  # about 40 s on 2 cores
def test_many_processes_racing_for_the_lock_never_hold_it_together():
    """A few hundred holds here (``make bench`` runs thousands); every fifth holder dies holding it,
    so takeovers by several contenders at once are part of the race."""
    result = race(trials=300, workers=8)
    assert result["trials"] >= 300 and result["takeovers"] > 0
    assert result["double_holders"] == 0 and result["overlapping_holds"] == 0, result


def other_host(tmp_path) -> list[str]:
    """A command prefix that runs a process under another host name (a UTS namespace of its own)."""
    if not shutil.which("unshare"):
        pytest.skip("no unshare(1) here")
    prefix = ["unshare", "--uts"] if os.geteuid() == 0 else ["unshare", "--uts", "--user", "--map-root-user"]
    if subprocess.run([*prefix, "hostname", "elsewhere"], capture_output=True).returncode != 0:
        pytest.skip("no UTS namespaces for this user")
    return [*prefix, "sh", "-c", 'hostname elsewhere && exec "$0" -c "$1" "$2"']


def test_a_holder_stopped_past_the_bound_is_taken_over_and_cannot_publish_when_resumed(tmp_path):
    holder = subprocess.Popen([*other_host(tmp_path), sys.executable, HOLDER, str(tmp_path)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: (tmp_path / "ready").exists() or holder.poll() is not None)
        assert (read_holder(Layout(tmp_path).run_lock()) or {}).get("host") == "elsewhere"
        os.kill(holder.pid, signal.SIGSTOP)
        time.sleep(1.5)  # past the holder's stale bound: its heartbeat stops with it
        taker = RunLock(Layout(tmp_path), holder="taker", stale_after=1.0).acquire()
        assert (taker.took_over or {})["holder"] == "stopped"
        (tmp_path / "go").touch()
        os.kill(holder.pid, signal.SIGCONT)
        out, _ = holder.communicate(timeout=20)
    finally:
        if holder.poll() is None:
            holder.kill()
    assert holder.returncode == 1, out
    assert f"fenced: the run lock {Layout(tmp_path).run_lock()} was taken over by another run: " \
           "this run publishes nothing more" in out
    assert not (tmp_path / "published").exists()
    assert (read_holder(Layout(tmp_path).run_lock()) or {}).get("token") == taker.token  # left to the new holder
    taker.release()
    assert not Layout(tmp_path).run_lock().exists()


def test_a_stopped_holder_on_this_host_is_alive_and_never_taken_over(tmp_path):
    script = HOLDER.replace("stale_after=1.0, heartbeat=0.2", "stale_after=0.2, heartbeat=0.05")
    holder = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.DEVNULL)
    try:
        wait_for(lambda: (tmp_path / "ready").exists() or holder.poll() is not None)
        os.kill(holder.pid, signal.SIGSTOP)
        time.sleep(0.5)
        with pytest.raises(Locked):
            RunLock(Layout(tmp_path), stale_after=0.2).acquire()
    finally:
        holder.kill()
        holder.wait()


def write_lock(tmp_path, info: dict | None, age: float = 0.0) -> None:
    path = Layout(tmp_path).run_lock()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("" if info is None else json.dumps(info))
    os.utime(path, (time.time() - age, time.time() - age))


def test_a_reused_pid_is_not_the_holder(tmp_path):
    """The holder's pid now names another process (here: this one): its start time differs."""
    write_lock(tmp_path, {"holder": "gone", "host": socket.gethostname(), "boot": proc.boot_id(),
                          "pid": os.getpid(), "process_start": (proc.started(os.getpid()) or 0) - 1, "token": "t"})
    with RunLock(Layout(tmp_path)) as lock:
        assert (lock.took_over or {})["holder"] == "gone"


def test_an_unreadable_lock_is_taken_over_only_once_stale(tmp_path):
    """No writer of this version leaves one; an older version's lock mid-write must not be taken at once."""
    write_lock(tmp_path, None)
    with pytest.raises(Locked):
        RunLock(Layout(tmp_path), stale_after=60).acquire()
    write_lock(tmp_path, None, age=120)
    with RunLock(Layout(tmp_path), stale_after=60) as lock:
        assert (lock.took_over or {})["id"].startswith("inode-")
    assert list(Layout(tmp_path).run_lock().parent.iterdir()) == []  # no claim or temporary file left
