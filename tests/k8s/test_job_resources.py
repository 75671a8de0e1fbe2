"""A build Job's resources as data: what its records measured (within the target's bounds), what the site
pinned, and what the build pod's entry reports of its cgroup through the termination message."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path

import pytest

from builder.execute import records
from builder.execute.command import invocation
from builder.execute.executors import Usage
from builder.execute.k8s_objects import ENTRY_SCRIPT, MESSAGE_BYTES, build_job, job_name, usage_of
from builder.plan.graph import Node
from builder.read.config import load_settings
from tests.helpers import write_config, write_easystack

GIB, MIB = 1 << 30, 1 << 20


def _settings(tmp_path: Path, kubernetes: dict | None = None, resources: dict | None = None):
    stack = write_easystack(tmp_path / "cpu.yaml", ["zlib-1.3.1.eb"])
    target = {"kind": "cpu", "tree": "cpu", "easystacks": [str(stack)],
              "resources": resources or {"memory": {"default": "2Gi", "min": "1Gi", "max": "16Gi"}, "margin": 1.5}}
    if kubernetes:
        target["kubernetes"] = kubernetes
    config = write_config(tmp_path, {"cpu": target}, root=str(tmp_path / "library"))
    return load_settings(config, env={})


def _node(settings) -> Node:
    easyconfig = settings.root.parent / "zlib-1.3.1.eb"
    easyconfig.write_text("name = 'zlib'\n")
    return Node(tree="cpu", module="zlib/1.3.1", name="zlib", easyconfig=easyconfig,
                target="cpu", deps=(), installed=False, sha256="0" * 64)


def _record(settings, node: Node, **measured) -> None:
    """A successful build of the node as a run records it."""
    log = records.new_log_path(settings.layout, node.tree, node.module, 1000.0)
    log.parent.mkdir(parents=True, exist_ok=True)
    records.write(records.Record(module=node.module, tree=node.tree, target=node.target, easyconfig="zlib-1.3.1.eb",
                                 sha256=node.sha256, command=["eb"], exit_code=0, start=1000.0, end=1100.0,
                                 log=str(log), executor="kubernetes", where="pod", **measured))


def _container(settings, node, inv=None) -> dict:
    job = build_job(settings, node, inv or invocation(settings, node), settings.root / "inputs")
    return job["spec"]["template"]["spec"]["containers"][0]


def test_an_unmeasured_build_asks_for_the_targets_default(tmp_path):
    settings = _settings(tmp_path)
    container = _container(settings, _node(settings))
    assert container["resources"] == {"requests": {"memory": "2Gi", "cpu": "2"},
                                      "limits": {"memory": "2Gi", "cpu": "2"}}
    assert "--parallel=2" in container["command"]
    assert (container["terminationMessagePath"], container["terminationMessagePolicy"]) == (
        "/dev/termination-log", "File")


def test_a_measured_build_asks_for_its_peak_with_the_margin_and_its_cores(tmp_path):
    """4 GiB peak times 1.5; 4 cores kept busy (390 of 400 core-seconds) get 8, and eb --parallel with them."""
    settings = _settings(tmp_path)
    node = _node(settings)
    _record(settings, node, peak_memory_bytes=4 * GIB, cpu_seconds=390.0, cpus=4, memory_bytes=8 * GIB)
    container = _container(settings, node)
    assert container["resources"] == {"requests": {"memory": "6Gi", "cpu": "8"},
                                      "limits": {"memory": "6Gi", "cpu": "8"}}
    assert "--parallel=8" in container["command"]


@pytest.mark.parametrize(("peak", "asked"), [(100 * MIB, "1Gi"), (40 * GIB, "16Gi")])
def test_the_request_stays_within_the_targets_bounds(tmp_path, peak, asked):
    settings = _settings(tmp_path)
    node = _node(settings)
    _record(settings, node, peak_memory_bytes=peak)
    assert _container(settings, node)["resources"]["limits"]["memory"] == asked


def test_what_the_site_pinned_wins(tmp_path):
    """A pinned cpu request and memory limit win; the computed memory request (6Gi) above the pinned limit
    is lowered to it, as a request above its limit is invalid."""
    settings = _settings(tmp_path, kubernetes={"resources": {"requests": {"cpu": "500m"},
                                                             "limits": {"memory": "3Gi", "cpu": "4"}}})
    node = _node(settings)
    _record(settings, node, peak_memory_bytes=4 * GIB)
    assert _container(settings, node)["resources"] == {"requests": {"memory": "3Gi", "cpu": "500m"},
                                                       "limits": {"memory": "3Gi", "cpu": "4"}}


def test_a_pinned_request_above_the_computed_limit_raises_it(tmp_path):
    settings = _settings(tmp_path, kubernetes={"resources": {"requests": {"memory": "10Gi", "cpu": "3"}}})
    node = _node(settings)
    assert _container(settings, node)["resources"] == {"requests": {"memory": "10Gi", "cpu": "3"},
                                                       "limits": {"memory": "10Gi", "cpu": "3"}}


def test_an_oom_retry_is_another_job_and_the_same_request_the_same_one(tmp_path):
    settings = _settings(tmp_path)
    node = _node(settings)
    inv = invocation(settings, node)
    assert job_name(node, invocation(settings, node)) == job_name(node, inv) and inv.memory_bytes is not None
    retry = dataclasses.replace(inv, memory_bytes=2 * inv.memory_bytes)
    assert job_name(node, retry) != job_name(node, inv)
    assert _container(settings, node, retry)["resources"]["limits"]["memory"] == "4Gi"


def _usage(message: str | None, reason: str) -> Usage:
    usage = usage_of(message, reason)
    assert usage is not None
    return usage


def test_the_termination_message_gives_the_usage():
    v1 = _usage('{"cgroup": 1, "peak": 1048576, "oom_kills": 2, "cpu_usec": 2500000}\n', "Error")
    assert (v1.peak_memory_bytes, v1.cpu_seconds, v1.oom_kills, v1.measured_by) == (1 << 20, 2.5, 2, "cgroup v1")
    v2 = _usage('{"cgroup": 2, "peak": 7, "oom_kills": 0, "cpu_usec": null}', "Completed")
    assert (v2.peak_memory_bytes, v2.cpu_seconds, v2.oom_kills, v2.measured_by) == (7, None, 0, "cgroup v2")
    assert usage_of(None, "Completed") is None and usage_of("", "Error") is None


def test_oomkilled_counts_as_a_kill_with_or_without_a_message():
    """The kernel killed the whole container (cgroup v2's memory.oom.group): the entry wrote nothing."""
    assert usage_of(None, "OOMKilled") == usage_of("garbage", "OOMKilled")
    assert _usage(None, "OOMKilled").oom_kills == 1 and _usage(None, "OOMKilled").measured_by == "kubelet"
    assert _usage('{"cgroup": 1, "peak": 9, "oom_kills": 0, "cpu_usec": 1}', "OOMKilled").oom_kills == 1


@pytest.mark.parametrize("message", [
    "x" * (MESSAGE_BYTES + 1),
    '{"cgroup": 1, "peak": 1' + " " * MESSAGE_BYTES + "}",
    "[" * 3000 + "]" * 3000,
    "not json", "[1, 2]", '"text"', "null", "{}",
    '{"cgroup": 3, "peak": 1}', '{"cgroup": true, "peak": 1}', '{"cgroup": "1", "peak": 1}', '{"cgroup": 1.0}',
    b'{"cgroup": 1}', 42,
])
def test_a_message_that_is_not_the_entrys_is_no_usage(message):
    assert usage_of(message, "Error") is None


@pytest.mark.parametrize("value", ["-1", "1.5", "true", '"12"', "1e3", "NaN", "Infinity", str(1 << 62), "[1]",
                                   "{\"a\": 1}", "9" * 400])
def test_a_figure_that_is_not_a_count_is_unknown(value):
    usage = usage_of(f'{{"cgroup": 2, "peak": {value}, "oom_kills": {value}, "cpu_usec": {value}}}', "Error")
    if usage is not None:  # some values do not parse as JSON at all
        assert (usage.peak_memory_bytes, usage.oom_kills, usage.cpu_seconds) == (None, None, None)


def _entry(tmp_path: Path, files: dict[str, str], *command: str) -> tuple[int, Usage]:
    """The build pod's entry run here, its cgroup and termination-log paths moved under ``tmp_path``."""
    cgroup, log = tmp_path / "cgroup", tmp_path / "termination-log"
    for name, text in files.items():
        (cgroup / name).parent.mkdir(parents=True, exist_ok=True)
        (cgroup / name).write_text(text)
    script = ENTRY_SCRIPT.replace("/sys/fs/cgroup", str(cgroup)).replace("/dev/termination-log", str(log))
    done = subprocess.run(["/bin/sh", "-c", script, "modlib-build", *command], capture_output=True, timeout=30)
    assert log.exists(), done.stderr
    return done.returncode, _usage(log.read_text(), "Error")


def test_the_entry_reports_cgroup_v2_and_keeps_the_builds_exit_code(tmp_path):
    code, usage = _entry(tmp_path, {"memory.events": "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
                                    "memory.peak": "524288000\n", "cpu.stat": "usage_usec 1500000\nuser_usec 9\n"},
                         "sh", "-c", "exit 16")
    assert code == 16
    assert (usage.peak_memory_bytes, usage.oom_kills, usage.cpu_seconds, usage.measured_by) == (
        524288000, 1, 1.5, "cgroup v2")


def test_the_entry_reports_cgroup_v1(tmp_path):
    code, usage = _entry(tmp_path, {"memory/memory.max_usage_in_bytes": "1000\n",
                                    "memory/memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
                                    "cpuacct/cpuacct.usage": "3000000000\n"}, "true")
    assert code == 0
    assert (usage.peak_memory_bytes, usage.oom_kills, usage.cpu_seconds, usage.measured_by) == (
        1000, 0, 3.0, "cgroup v1")


def test_the_entry_writes_null_for_what_it_cannot_read_or_is_not_a_number(tmp_path):
    """A file missing or holding anything but digits (`max`, an injection attempt) is left unknown."""
    code, usage = _entry(tmp_path, {"memory.events": "oom_kill 1; rm -rf /\n", "memory.peak": '1", "cgroup": 9\n'},
                         "true")
    assert code == 0
    assert (usage.peak_memory_bytes, usage.oom_kills, usage.cpu_seconds, usage.measured_by) == (
        None, None, None, "cgroup v2")
    assert json.loads((tmp_path / "termination-log").read_text()) == {
        "cgroup": 2, "peak": None, "oom_kills": None, "cpu_usec": None}
