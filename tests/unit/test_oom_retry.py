"""The run's out-of-memory retry, whatever the executor: the cgroup's OOM count decides (not eb's exit code),
a build is tried once more with twice the memory up to the target's bound, in the slot it had, and its
records say what each try was given, used and retried."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from builder.commands.run import RunPolicy, RunResult, dispatch
from builder.execute.command import Invocation
from builder.execute.executors import NodeRun, Usage
from builder.execute.local import LocalExecutor
from builder.execute.lock import RunLock
from builder.layout import Layout
from builder.plan.graph import Node, Plan
from builder.plan.schedule import Scheduler
from builder.read.config import load_settings
from tests.helpers import Handler, write_config, write_easystack

GIB = 1 << 30
KILLED = Usage(peak_memory_bytes=2 * GIB, cpu_seconds=30.0, oom_kills=1, measured_by="cgroup v2")


def _node(module: str, deps: tuple[str, ...] = (), folder: Path = Path("/ec")) -> Node:
    easyconfig = folder / f"{module.replace('/', '-')}.eb"
    if folder.is_dir():
        easyconfig.write_text(f"name = '{module.split('/')[0]}'\n")
    return Node(tree="cpu", module=module, name=module.split("/")[0], easyconfig=easyconfig,
                target="cpu", deps=tuple(("cpu", d) for d in deps), installed=False, sha256="0")


def _policy(tmp_path: Path, reports: list[str]) -> RunPolicy:
    stack = write_easystack(tmp_path / "cpu.yaml", ["X-1.eb"])
    config = write_config(tmp_path, {"cpu": {"kind": "cpu", "tree": "cpu", "easystacks": [str(stack)],
                                             "resources": {"memory": {"default": "2Gi", "max": "6Gi"}}}},
                          root=str(tmp_path / "library"))
    settings = load_settings(config, env={})
    result = RunResult(plan=Plan(nodes=()), todo=[],
                       made_with={"easybuild_version": "5.4.1", "hooks_sha256": ""})
    executor = LocalExecutor(cwd=tmp_path, layout=settings.layout, host_env={})
    return RunPolicy(settings, result, executor, RunLock(settings.layout), reports.append)


def _end(policy: RunPolicy, node: Node, inv: Invocation, code: int, usage: Usage | None):
    log = policy.log_path(node)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("eb's output\n")
    return policy.on_finished(node, inv, NodeRun(code, 1000.0, 1060.0, str(log), "here", usage))


def _records(policy: RunPolicy, node: Node) -> list[dict]:
    folder = policy.settings.layout.records(node.tree, node.module)
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def test_a_build_killed_for_memory_is_retried_once_with_twice_the_memory(tmp_path):
    """eb exits 16 (a failed build step) after the kernel killed its compiler: the count decides."""
    reports: list[str] = []
    policy, node = _policy(tmp_path, reports), _node("X/1", folder=tmp_path)
    inv = policy.invocation(node)
    assert (inv.memory_bytes, inv.cpus) == (2 * GIB, 2)
    retry = _end(policy, node, inv, 16, KILLED)
    assert isinstance(retry, Invocation)
    assert (retry.memory_bytes, retry.argv, retry.prefix) == (4 * GIB, inv.argv, inv.prefix)
    assert "killed for memory with 2Gi (exit 16" in reports[-1] and "retrying once with 4Gi" in reports[-1]
    assert node.key not in policy.result.failed  # not finished: the retry takes its slot
    (first,) = _records(policy, node)
    assert (first["exit_code"], first["memory_bytes"], first["cpus"], first["oom_kills"]) == (16, 2 * GIB, 2, 1)
    assert (first["peak_memory_bytes"], first["cpu_seconds"], first["measured_by"]) == (2 * GIB, 30.0, "cgroup v2")
    # killed again: no third try, and its record names the first
    assert _end(policy, node, retry, 137, KILLED) is False
    first_path, again = sorted(policy.settings.layout.records(node.tree, node.module).glob("*.json"))
    assert json.loads(again.read_text())["after_oom"] == str(first_path)
    assert json.loads(again.read_text())["memory_bytes"] == 4 * GIB
    assert node.key in policy.result.failed and policy.result.after_oom == [node.key]
    assert policy.result.summary()["after_oom"] == ["cpu/X/1"]


def test_no_retry_without_an_oom_kill_or_at_the_bound(tmp_path):
    reports: list[str] = []
    policy = _policy(tmp_path, reports)
    plain, measured = _node("A/1", folder=tmp_path), _node("B/1", folder=tmp_path)
    assert _end(policy, plain, policy.invocation(plain), 137, None) is False  # SIGKILL, nothing measured
    no_kill = Usage(GIB, 1.0, 0, "cgroup v1")
    assert _end(policy, measured, policy.invocation(measured), 16, no_kill) is False
    at_bound = _node("C/1", folder=tmp_path)
    inv = policy.invocation(at_bound)
    assert _end(policy, at_bound, Invocation(inv.argv, inv.env, inv.prefix, 6 * GIB, inv.cpus), 1, KILLED) is False
    assert "at the target's bound (6Gi), not retried" in reports[-2] and reports[-1].startswith("FAILED   cpu/C/1")
    assert policy.result.after_oom == []


STEP = "import sys; open(sys.argv[1], 'a').write(sys.argv[2] + '\\n')"


def test_the_retry_takes_the_slot_of_its_first_try_and_dependents_wait_for_it(tmp_path):
    """The dispatch loop with the real local executor: A's first end hands back a retry, which runs before
    A counts as finished (once) and before B, which needs A, starts; --jobs 1 holds throughout."""
    trace = tmp_path / "trace"
    tries: dict[str, int] = {}

    def invocation(n: Node) -> Invocation:
        return Invocation(argv=(sys.executable, "-c", STEP, str(trace), n.module), env=(),
                          prefix=str(tmp_path / "prefixes" / n.name), memory_bytes=GIB)

    def finished(n: Node, inv: Invocation, run: NodeRun) -> bool | Invocation:
        tries[n.module] = tries.get(n.module, 0) + 1
        if n.module == "A/1" and tries[n.module] == 1:
            return Invocation(inv.argv, inv.env, inv.prefix, 2 * GIB)
        return run.exit_code == 0

    sched = Scheduler([_node("A/1"), _node("B/1", ("A/1",))])
    executor = LocalExecutor(cwd=tmp_path, layout=Layout(tmp_path / "library"),
                             host_env={"PATH": "/usr/bin:/bin", "EASYBUILD_BUILDPATH": str(tmp_path / "build")})
    with executor:
        dispatch(sched, executor, 1, Handler(invocation, lambda n: tmp_path / f"{n.name}-{tries.get(n.module, 0)}.log",
                                             finished))
    assert trace.read_text().split() == ["A/1", "A/1", "B/1"]
    assert sched.done() and sched.succeeded == [("cpu", "A/1"), ("cpu", "B/1")] and tries == {"A/1": 2, "B/1": 1}
