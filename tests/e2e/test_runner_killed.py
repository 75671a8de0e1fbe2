"""A `modlib build` killed with SIGKILL (the modlib process alone, as the OOM killer does) leaves no
`eb` behind: its build, and everything the build started, ends with it, and the next run builds the node
and removes the build cgroup the killed runner could not."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from builder import proc
from builder.execute import cgroups
from tests.e2e.test_build_sandbox import daemons
from tests.e2e.test_publish_protocol import SLOW_INSTALL
from tests.helpers import bundle_easyconfig, modlib, write_config, write_easystack

pytestmark = pytest.mark.e2e


def descendants(pid: int) -> dict[int, str]:
    """Every process below ``pid``, with its command line."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            ppid = int(Path(entry, "stat").read_text().rpartition(")")[2].split()[1])
        except (FileNotFoundError, ProcessLookupError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = {}, [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            try:
                found[child] = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except (FileNotFoundError, ProcessLookupError):
                continue
            todo.append(child)
    return found


def build_cgroups(runner: int) -> list[Path]:
    """The build cgroups a runner made here (none where this host lets it make none)."""
    hierarchy, _ = cgroups.find()
    if hierarchy is None:
        return []
    return [p for parent in {hierarchy.memory, hierarchy.cpu} for p in parent.glob(f"{cgroups.prefix()}{runner}-*")]


def test_a_runner_killed_with_sigkill_leaves_no_eb_and_the_next_run_builds_the_node(tmp_path):
    site, marker, daemon = tmp_path / "site", tmp_path / "slow.marker", random.randint(100000, 999999)
    (site / "s" / "slow").mkdir(parents=True)
    slow = SLOW_INSTALL.format(marker=marker).replace(  # and leaves a daemon of its own session behind
        "postinstallcmds = ['", f"postinstallcmds = ['(setsid sleep {daemon} </dev/null >/dev/null 2>&1 &) && ")
    (site / "s" / "slow" / "slow-1.0-GCCcore-system.eb").write_text(
        bundle_easyconfig("slow", slow, "waits while a marker file exists"))
    (tmp_path / "easyconfigs").mkdir()
    stack = write_easystack(tmp_path / "easyconfigs" / "cpu.yaml", ["slow-1.0-GCCcore-system.eb"])
    config = str(write_config(tmp_path, {"cpu": {"kind": "cpu", "tree": "cpu", "easystacks": [str(stack)]}},
                              easyconfig_paths=[str(site)]))
    root = tmp_path / "library"
    marker.touch()
    runner = subprocess.Popen([str(Path(sys.executable).parent / "modlib"), "build", "--config", config],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 120
        while not any(" sleep " in f" {cmd}" for cmd in descendants(runner.pid).values()):
            assert time.time() < deadline and runner.poll() is None, "the slow build never reached its install step"
            time.sleep(0.2)
        left = descendants(runner.pid)
        assert any(" eb " in f" {cmd}" or "easybuild.main" in cmd for cmd in left.values()), left
        os.kill(runner.pid, signal.SIGKILL)  # modlib alone, not its process group
        runner.wait()
        deadline = time.time() + 5
        while any(proc.alive(pid) for pid in left) and time.time() < deadline:
            time.sleep(0.1)
        assert [cmd for pid, cmd in left.items() if proc.alive(pid)] == []
        assert daemons(daemon) == []
        left_cgroups = build_cgroups(runner.pid)
        assert bool(left_cgroups) == (cgroups.find()[0] is not None)
    finally:
        marker.unlink()
        for pid in daemons(daemon):
            os.kill(pid, signal.SIGKILL)
    again = modlib("build", "--config", config)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "took over the run lock" in again.stdout and "built    cpu/slow/1.0-GCCcore-system" in again.stdout
    assert not any(root.glob("cpu/.staging/*.process"))
    assert not any(p.exists() for p in left_cgroups)
