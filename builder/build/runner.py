"""One builder run: plan, take the run lock, fetch every source, build what is missing, publish each success."""

from __future__ import annotations

import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from builder import ebadapter, proc
from builder.build import records, sources
from builder.build.command import invocation
from builder.build.executors import NodeRun, get_executor
from builder.build.lock import RunLock
from builder.errors import ModlibError, bad_input
from builder.plan.graph import Node, NodeKey, Plan
from builder.plan.planner import make_plan, robot_paths
from builder.plan.schedule import Scheduler
from builder.publish.live import publish_node, retract_node
from builder.publish.view import current_inputs, inputs_digest, publish_view
from builder.read.config import Settings, Target


@dataclass
class RunResult:
    plan: Plan
    todo: list[Node]
    built: list[NodeKey] = field(default_factory=list)
    failed: dict[NodeKey, str] = field(default_factory=dict)  # node -> log tail
    blocked: dict[NodeKey, NodeKey] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # from the last publish
    fetched: int = 0
    seconds: float = 0.0

    def summary(self) -> dict:
        fmt = "/".join
        return {"finished": time.time(), "host": socket.gethostname(), "seconds": round(self.seconds, 1),
                "planned": len(self.plan.nodes), "to_build": len(self.todo),
                "built": [fmt(k) for k in self.built], "failed": [fmt(k) for k in self.failed],
                "blocked": {fmt(k): fmt(v) for k, v in self.blocked.items()}}


def select(plan: Plan, rebuild: list[str]) -> list[Node]:
    """Missing nodes plus the installed ones the admin asked to rebuild (never implicitly)."""
    by_module: dict[str, list[Node]] = {}
    for node in plan.nodes:
        by_module.setdefault(node.module, []).append(node)
    unknown = [m for m in rebuild if m not in by_module]
    if unknown:
        raise bad_input("--rebuild", f"module(s) not in the plan: {', '.join(unknown)}")
    wanted = {n.key for m in rebuild for n in by_module[m]}
    return [n for n in plan.nodes if not n.installed or n.key in wanted]


def check_python(settings: Settings) -> None:
    """Python packages must be built for the notebook's Python; refuse before building for another one."""
    code = "import sys; print('%d.%d' % sys.version_info[:2])"
    try:
        found = proc.run([settings.python, "-c", code]).stdout.strip()
    except OSError as err:
        raise bad_input(settings.config_file, f"python.executable {settings.python}: {err.strerror}") from None
    if found != settings.python_version:
        raise bad_input(settings.config_file, f"python.executable {settings.python} is Python {found}, "
                                              f"not the configured {settings.python_version}")


def fetch_sources(settings: Settings, todo: list[Node], report: Callable[[str], None]) -> int:
    fetched = 0
    for target_name in sorted({n.target for n in todo}):
        target = settings.targets[target_name]
        with ebadapter.configured(robot_paths(settings), settings.hooks, target.options()):
            files = [f for n in todo if n.target == target_name for f in ebadapter.source_files(n.easyconfig)]
            local = [p / "sources" for p in settings.easyconfig_paths]
            fetched += sources.prefetch(files, settings.root / "sources", local, report)
    return fetched


def run_build(settings: Settings, targets: list[Target], *, executor: str = "local", jobs: int | None = None,
              rebuild: list[str] | None = None, wait: bool = False,
              report: Callable[[str], None] = print) -> RunResult:
    t0 = time.time()
    with RunLock(settings.root, wait=wait) as lock:
        if lock.took_over is not None:
            report(f"took over the run lock of a gone holder: {lock.took_over}")
        # planned under the lock: a run that waited must see what the previous holder published
        plan = make_plan(settings, targets)
        result = RunResult(plan=plan, todo=select(plan, rebuild or []))
        if result.todo:
            check_python(settings)
            result.fetched = fetch_sources(settings, result.todo, report)
            _execute(settings, result, executor, jobs or max(t.jobs for t in targets), set(rebuild or []), report)
        if current_inputs(settings.root) != inputs_digest(settings):
            result.warnings = _publish(settings, report)
        result.seconds = time.time() - t0
        records.write_last_run(settings.root, result.summary())
    return result


def _accept(settings: Settings, node: Node, record: str, result: RunResult,
            report: Callable[[str], None]) -> str | None:
    """Store the node's module file and publish a view with it; what went wrong, or None."""
    try:
        publish_node(settings.root, node, record)
    except OSError as err:
        return str(err)
    try:
        result.warnings = _publish(settings, report)
    except (OSError, ModlibError) as err:  # e.g. Lmod cannot cache this module file: keep it out
        retract_node(settings.root, node)
        return f"not published, the live view is unchanged: {err}"
    return None


def _publish(settings: Settings, report: Callable[[str], None]) -> list[str]:
    gen, warnings = publish_view(settings)
    report(f"published {gen.name}")
    return warnings


def _execute(settings: Settings, result: RunResult, executor: str, jobs: int, rebuild: set[str],
             report: Callable[[str], None]) -> None:
    scheduler = Scheduler(result.todo)
    total, count = len(result.todo), iter(range(1, len(result.todo) + 1))

    def started(node: Node) -> str:
        report(f"[{next(count)}/{total}] building {node.tree}/{node.module}")
        return str(records.new_log_path(settings.root, node.tree, node.module, time.time()))

    def finished(node: Node, run: NodeRun) -> bool:
        inv = invocation(settings, node, rebuild=node.module in rebuild)
        rec = records.Record(module=node.module, tree=node.tree, target=node.target,
                             easyconfig=str(node.easyconfig), sha256=node.sha256, command=list(inv.argv),
                             exit_code=run.exit_code, start=run.start, end=run.end, log=run.log)
        record_path = records.write(settings.root, rec)
        took = f"{run.end - run.start:.1f} s"
        if run.exit_code != 0:
            result.failed[node.key] = records.tail(run.log)
            report(f"FAILED   {node.tree}/{node.module} (exit {run.exit_code}, {took}; log {run.log})")
            return False
        problem = _accept(settings, node, str(record_path), result, report)
        if problem:
            result.failed[node.key] = problem
            report(f"failed   {node.tree}/{node.module}: {problem}")
            return False
        result.built.append(node.key)
        report(f"built    {node.tree}/{node.module} ({took})")
        return True

    with tempfile.TemporaryDirectory(prefix="modlib-scratch-") as scratch:
        runner = get_executor(executor, settings, jobs, Path(scratch))
        runner.run(scheduler, lambda n: invocation(settings, n, rebuild=n.module in rebuild), started, finished)
    result.blocked = dict(scheduler.blocked)
