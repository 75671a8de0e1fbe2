"""One builder run, end to end: take the run lock, plan, fetch every source, dispatch what is
missing to an executor, and publish each success.

The dispatch loop lives here and nowhere else: the scheduler says which nodes may start, the loop
submits them (at most ``jobs`` at once) and hands each result to the publish step, so every
executor builds the same nodes in the same order.
"""

from __future__ import annotations

import itertools
import os
import re
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from builder import proc
from builder.commands.verify import altered_module_files, module_file_stats, publish_blockers
from builder.ebadapter.sources import SourceFile, config_guess_dir
from builder.errors import BadInput, ModlibError, RunFailed
from builder.execute import expected, records, sources
from builder.execute.command import Invocation, effective_options, invocation
from builder.execute.debian_sources import DebianSources
from builder.execute.executors import Executor, NodeRun, Usage, get_executor
from builder.execute.inputs import stage_node_files
from builder.execute.lock import RunLock
from builder.execute.resources import Request, after_oom
from builder.plan import parse_sandbox
from builder.plan.graph import Node, NodeKey, Plan
from builder.plan.planner import make_plan
from builder.plan.schedule import Scheduler
from builder.publish import prefixes
from builder.publish.live import publish_node, retract_node, settle_node
from builder.publish.view import current_inputs, generations, inputs_digest, publish_view
from builder.read.config import Settings, Target, quantity

Report = Callable[[str], None]


@dataclass
class RunResult:
    plan: Plan
    todo: list[Node]
    built: list[NodeKey] = field(default_factory=list)
    failed: dict[NodeKey, str] = field(default_factory=dict)  # node -> log tail
    blocked: dict[NodeKey, NodeKey] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # from the last publish
    altered: list[str] = field(default_factory=list)  # store module files that stopped a publish
    seconds: float = 0.0
    intact: dict[NodeKey, tuple[int, int, int]] = field(default_factory=dict)  # module files last found intact
    sources: dict[NodeKey, list[dict]] = field(default_factory=dict)  # each node's files, as checked before builds
    made_with: dict[str, str] = field(default_factory=dict)  # EasyBuild's version, the hooks' digest
    after_oom: list[NodeKey] = field(default_factory=list)  # retried with more memory after an OOM kill

    def summary(self) -> dict:
        fmt = "/".join
        return {"finished": time.time(), "host": socket.gethostname(), "seconds": round(self.seconds, 1),
                "planned": len(self.plan.nodes), "to_build": len(self.todo),
                "built": [fmt(k) for k in self.built], "failed": [fmt(k) for k in self.failed],
                "blocked": {fmt(k): fmt(v) for k, v in self.blocked.items()}, "altered": self.altered,
                "after_oom": [fmt(k) for k in self.after_oom]}

    def take_store_check(self, found: StoreCheck) -> None:
        """Each check of the store replaces the last, so ``altered`` says what still stopped the run's
        last publish."""
        self.altered, self.intact = found.altered, found.intact


def check_python(settings: Settings) -> None:
    """Python packages must be built for the notebook's Python; refuse before building for another one.
    A library with its own Python has nothing to check: its packages depend on that module."""
    if settings.python is None:
        return
    code = "import sys; print('%d.%d' % sys.version_info[:2])"
    try:
        found = proc.run([settings.python, "-c", code]).stdout.strip()
    except OSError as err:
        raise BadInput(settings.config_file, f"python.executable {settings.python}: {err.strerror}") from None
    if found != settings.python_version:
        raise BadInput(settings.config_file, f"python.executable {settings.python} is Python {found}, "
                                             f"not the configured {settings.python_version}")


def list_sources(settings: Settings, todo: list[Node], report: Report) -> dict[NodeKey, list[SourceFile]]:
    """What every node of the run fetches, from its easyconfig parsed in the sandbox: a source name that
    leads out of the cache is bad input here, before anything is fetched, made or asked of a cluster."""
    per_node: dict[NodeKey, list[SourceFile]] = {}
    for target_name in sorted({n.target for n in todo}):
        target = settings.targets[target_name]
        mine = [n for n in todo if n.target == target_name]
        listed = parse_sandbox.source_lists(settings, target.options(), [n.easyconfig for n in mine], report)
        per_node.update({n.key: files for n, files in zip(mine, listed, strict=True)})
    return per_node


def fetch_sources(settings: Settings, per_node: dict[NodeKey, list[SourceFile]],
                  report: Report) -> dict[NodeKey, list[dict]]:
    """Sources first, for every node of the run: a missing or tampered source is bad input found before
    anything is built, and builds (pods included) then need no network. Returns each node's files with
    the checksum they were verified against, for its build record."""
    apt_state = settings.cache_dir / "apt" if settings.cache_dir else None
    local = [p / "sources" for p in settings.easyconfig_paths]
    with DebianSources(apt_state, report=report) as debian:  # one apt update per suite and run
        files = [f for node_files in per_node.values() for f in node_files]
        sources.prefetch(files, settings.layout.sources(), local, settings.pypi_simple, report, debian)
    config_guess_dir(settings.layout.sources()).mkdir(parents=True, exist_ok=True)
    return {key: [{"file": f"{f.subdir}/{f.filename}", "checksum": f.checksum} for f in node_files]
            for key, node_files in per_node.items()}


def check_root(settings: Settings) -> None:
    """A root that is not a readable folder, is ``/``, or holds what another tool put there (no modlib
    state in it) is the admin's mistake (a wrong MODLIB_ROOT or mount), found before anything is touched:
    modlib removes what it made there, and must never take a stranger's folder for its own. One that
    cannot be written fails the run later, as a full disk does."""
    root = settings.root
    if root == Path(root.anchor):
        raise BadInput(root, "the library root cannot be the file system's root")
    if root.exists() and not root.is_dir():
        raise BadInput(root, "the library root is not a folder")
    if root.is_dir() and not os.access(root, os.R_OK | os.X_OK):
        raise BadInput(root, "the library root cannot be read")
    foreign = sorted(p.name for p in root.iterdir()) if root.is_dir() and not settings.layout.meta().is_dir() else []
    foreign = [name for name in foreign if name != settings.layout.sources().name]  # a pre-seeded source cache
    if foreign:
        raise BadInput(root, f"the library root holds files modlib did not make ({', '.join(foreign[:5])}) "
                             "and no .modlib/: choose an empty folder or the library's own root")


def check_library(settings: Settings) -> None:
    """Only ``build`` makes a library: every other command that changes one (``remove``) refuses a root
    that is not one yet, before it takes the run lock, which would make ``.modlib/`` there and so turn
    any folder (``/etc``, a home) into something later runs take for a library."""
    check_root(settings)
    if not settings.layout.meta().is_dir():
        raise BadInput(settings.root, "not a modlib library (no .modlib/): nothing to change")


def run_build(settings: Settings, targets: list[Target], *, executor: str = "local", jobs: int | None = None,
              rebuild: list[str] | None = None, wait: bool = False, report: Report = print) -> RunResult:
    """The whole of ``modlib build``. The plan is made under the run lock, so a run that waited sees
    what the previous holder published. The volume failing under a run (full, read-only, gone) or a
    tool missing here is a failed run, never bad input."""
    check_root(settings)
    try:
        return _run(settings, targets, executor, jobs, rebuild or [], wait, report)
    except OSError as err:
        where = f"{err.filename}: " if err.filename else ""
        raise RunFailed(f"{where}{err.strerror or err}") from err


def _run(settings: Settings, targets: list[Target], executor: str, jobs: int | None, rebuild: list[str],
         wait: bool, report: Report) -> RunResult:
    t0 = time.time()
    with RunLock(settings.layout, wait=wait, warn=report) as lock:
        if lock.took_over is not None:
            report(f"took over the run lock of a gone holder: {lock.took_over}")
        plan = make_plan(settings, targets)
        result = RunResult(plan=plan, todo=plan.select(rebuild), made_with=records.made_with(settings.hooks))
        stopped = None
        if result.todo:
            check_python(settings)
            listed = list_sources(settings, result.todo, report)
            with tempfile.TemporaryDirectory(prefix="modlib-scratch-") as scratch, \
                    get_executor(executor, settings, Path(scratch), report) as runner:
                # after the executor's own lock (a cluster's Lease): a run it refuses fetches nothing
                result.sources = fetch_sources(settings, listed, report)
                stage_node_files(settings, result.todo)
                policy = RunPolicy(settings, result, runner, lock, report)
                scheduler = expected.scheduler(settings.layout, result.todo)
                dispatch(scheduler, runner, jobs or max(t.jobs for t in targets), policy, report)
                result.blocked = dict(scheduler.blocked)
                stopped = runner.lost()
        stopped = lock.lost or stopped
        if stopped:
            raise RunFailed(f"the run stopped: {stopped}")
        if current_inputs(settings.layout) != inputs_digest(settings):
            result.take_store_check(check_store(settings, result.intact))
            if not result.altered:
                lock.fence()
                result.warnings = _publish(settings, report)
        lock.fence()
        for gone in _collect_prefixes(settings):
            report(f"removed {gone}: no published module named it for {settings.grace_period_hours:g} h")
        result.seconds = time.time() - t0
        records.write_last_run(settings.layout, result.summary())
    return result


class NodeHandler(Protocol):
    """What the dispatch loop asks of the run about each node (ReFrame's execution policy): how to build
    it, where its log goes, what its end means, and whether new work may still start."""

    def invocation(self, node: Node) -> Invocation: ...

    def log_path(self, node: Node) -> Path: ...

    def on_finished(self, node: Node, inv: Invocation, run: NodeRun) -> bool | Invocation:
        """Whether the node counts as succeeded (its publish can still fail it), or the Invocation of one
        more try (a build killed for memory, given more)."""
        ...

    def lost(self) -> str | None:
        """Why no new node may start (a lock is lost), or None."""
        ...


#: How long the dispatch loop waits for builds before it looks again whether a lock was lost.
LOOK_UP_SECONDS = 5.0


def dispatch(scheduler: Scheduler, executor: Executor, jobs: int, handler: NodeHandler,
             report: Report = lambda msg: None) -> None:
    """The one dispatch loop: at most ``jobs`` nodes at once, each submitted once, when its dependencies
    succeeded; ``handler.on_finished`` says whether a node counts as succeeded, or hands back the
    Invocation of one more try, which takes the same slot. Once ``handler.lost``
    names a reason no new node starts and those running are cancelled: what they build would never be
    published, and another run may be building the same nodes. Each one's end is still handed to
    ``handler.on_finished`` (so it is recorded) before the loop returns."""
    started: dict[NodeKey, tuple[Node, Invocation]] = {}
    prepared: dict[NodeKey, Invocation] = {}  # made to ask the executor whether a node fits, kept for its start
    cancelled: set[NodeKey] = set()
    count = itertools.count(1)
    while not scheduler.done():
        lost = handler.lost()
        if lost:
            for key in sorted(started.keys() - cancelled):
                report(f"cancelling {'/'.join(key)}: {lost}")
                executor.cancel(started[key][0])
                cancelled.add(key)
        else:
            # builds a killed run left running are adopted first, and the rest count against ``jobs``
            orphans = executor.orphans()
            adopt = scheduler.take(len(orphans), among=set(orphans))
            fits = _admission(executor, handler, prepared)
            for node in adopt + scheduler.take(jobs - len(started) - len(orphans), fits=fits):
                started[node.key] = (node, prepared.pop(node.key) if node.key in prepared else handler.invocation(node))
                report(f"[{next(count)}/{scheduler.total}] building {node.tree}/{node.module}")
                executor.submit(node, started[node.key][1], handler.log_path(node))
        if not started and (lost or not executor.orphans()):
            break  # a lock is lost, or nothing runs any more
        for node, run in executor.wait(LOOK_UP_SECONDS):
            outcome = handler.on_finished(node, started.pop(node.key)[1], run)
            if isinstance(outcome, Invocation):  # tried again in the same slot: the node is not finished
                started[node.key] = (node, outcome)
                executor.submit(node, outcome, handler.log_path(node))
            else:
                scheduler.finish(node.key, outcome)


def _admission(executor: Executor, handler: NodeHandler, prepared: dict[NodeKey, Invocation]) -> Callable[[Node], bool]:
    """Whether a node fits, for one round of ``Scheduler.take``: the executor's answer (the local pool's
    memory budget), with the nodes admitted earlier in the round counted as running."""
    admitted: list[tuple[Node, Invocation]] = []

    def fits(node: Node) -> bool:
        if node.key not in prepared:
            prepared[node.key] = handler.invocation(node)
        inv = prepared[node.key]
        if not executor.admits(node, inv, admitted):
            return False
        admitted.append((node, inv))
        return True

    return fits


class RunPolicy:
    """The run's answers to the dispatch loop: each node's ``eb`` command and log, and on its end its
    record and, if it built, its publish; ``lock.fence`` raises RunFailed before a publish once the run
    lock is no longer ours."""

    def __init__(self, settings: Settings, result: RunResult, executor: Executor, lock: RunLock, report: Report):
        self.settings, self.result, self.executor, self.lock, self.report = settings, result, executor, lock, report
        self.rebuild = {n.module for n in result.todo if n.installed}
        self.retried: dict[NodeKey, str] = {}  # node -> the record of its try killed for memory

    def invocation(self, node: Node) -> Invocation:
        """Asked once per node, when the dispatch loop first considers starting it: its Request
        (``invocation``'s default) comes from the records as they are then, a version of its software
        built earlier in the run included."""
        return invocation(self.settings, node, rebuild=node.module in self.rebuild)

    def log_path(self, node: Node) -> Path:
        """A fresh record's name: a retry that starts within the second of its first try takes the next."""
        when = time.time()
        path = records.new_log_path(self.settings.layout, node.tree, node.module, when)
        while path.exists() or path.with_suffix(".json").exists():
            when += 1
            path = records.new_log_path(self.settings.layout, node.tree, node.module, when)
        return path

    def lost(self) -> str | None:
        return self.lock.lost or self.executor.lost()

    def on_finished(self, node: Node, inv: Invocation, run: NodeRun) -> bool | Invocation:
        """Record the node's run, publish it if it built; whether it counts as succeeded, or the one retry
        of a build the kernel killed for memory (its cgroup's count says so, whatever eb exited with)."""
        result, report = self.result, self.report
        record_path = records.write(self._record(node, inv, run))
        took = f"{run.end - run.start:.1f} s" + (", after an OOM kill" if node.key in self.retried else "")
        if run.exit_code != 0:
            retry = self._after_oom(node, inv, run, str(record_path))
            if retry is not None:
                return retry
            result.failed[node.key] = records.tail(run.log)
            report(f"FAILED   {node.tree}/{node.module} (exit {run.exit_code}, {took}; log {run.log})")
            return False
        lost = self.lost()
        problem = f"not published: {lost}" if lost else self._accept(node, inv, str(record_path))
        if problem:
            result.failed[node.key] = problem
            report(f"failed   {node.tree}/{node.module}: {problem}")
            return False
        result.built.append(node.key)
        report(f"built    {node.tree}/{node.module} ({took})")
        return True

    def _record(self, node: Node, inv: Invocation, run: NodeRun) -> records.Record:
        """What ran, what it was given and what it used (nothing where the executor could not measure)."""
        result, usage = self.result, run.usage or Usage(None, None, None, "")
        return records.Record(
            module=node.module, tree=node.tree, target=node.target, easyconfig=str(node.easyconfig),
            sha256=node.sha256, command=list(inv.argv), exit_code=run.exit_code, start=run.start, end=run.end,
            log=run.log, executor=self.executor.name, where=run.where,
            easybuild_version=result.made_with["easybuild_version"], hooks_sha256=result.made_with["hooks_sha256"],
            options=effective_options(self.settings, node, inv.cpus), sources=result.sources.get(node.key, []),
            memory_bytes=inv.memory_bytes, cpus=inv.cpus, after_oom=self.retried.get(node.key, ""),
            peak_memory_bytes=usage.peak_memory_bytes, cpu_seconds=usage.cpu_seconds, oom_kills=usage.oom_kills,
            measured_by=usage.measured_by)

    def _after_oom(self, node: Node, inv: Invocation, run: NodeRun, record: str) -> Invocation | None:
        """The retry of a first try killed for memory, with twice the memory up to the target's bound;
        None for any other failure, a retry's, one at the bound, or once no new work may start."""
        if not (run.usage and run.usage.oom_kills) or node.key in self.retried or inv.memory_bytes is None \
                or self.lost():
            return None
        more = after_oom(self.settings, node, Request(inv.memory_bytes, inv.cpus or 1, "this run's"))
        if more is None:
            self.report(f"OOM      {node.tree}/{node.module}: killed for memory at the target's bound "
                        f"({quantity(inv.memory_bytes)}), not retried")
            return None
        self.retried[node.key] = record
        self.result.after_oom.append(node.key)
        self.report(f"OOM      {node.tree}/{node.module} killed for memory with {quantity(inv.memory_bytes)} "
                    f"(exit {run.exit_code}; log {run.log}): retrying once with {quantity(more.memory_bytes)}")
        return replace(inv, memory_bytes=more.memory_bytes)

    def _accept(self, node: Node, inv: Invocation, record: str) -> str | None:
        """Store the node's module file and publish a view with it; what went wrong, or None. A run that
        lost its lock raises RunFailed from ``fence`` before either step, and changes nothing."""
        settings, result, report, fence = self.settings, self.result, self.report, self.lock.fence
        layout, prefix = settings.layout, Path(inv.prefix)
        try:
            refs = prefixes.references(layout.install_dir(prefix, node.module), _prefix_pattern(settings), prefix)
            fence()
            publish_node(layout, node, record, inv.prefix, refs)
        except OSError as err:
            return str(err)
        fence()
        result.take_store_check(check_store(settings, result.intact))
        if result.altered:
            report(f"stored   {node.tree}/{node.module}, not published while module files in the store are "
                   f"altered: {', '.join(result.altered)}")
            return None
        try:
            result.warnings = _publish(settings, report)
        except (OSError, ModlibError) as err:  # e.g. Lmod cannot cache this module file: keep it out
            retract_node(settings.layout, node)
            return f"not published, the live view is unchanged: {err}"
        settle_node(settings.layout, node)
        return None


def _prefix_pattern(settings: Settings) -> re.Pattern[bytes]:
    return prefixes.prefix_pattern(settings.layout, settings.trees())


def _collect_prefixes(settings: Settings) -> list[Path]:
    """Old prefixes go at the end of a run, under its lock; every generation still on the volume counts."""
    return prefixes.collect(settings.layout, settings.trees(),
                            generations(settings.layout), settings.grace_period_hours * 3600)


@dataclass(frozen=True)
class StoreCheck:
    """What one check of the store's module files found: those altered, and the stats of those found
    intact (empty when any is altered, so that the next check reads every file again)."""

    altered: list[str]
    intact: dict[NodeKey, tuple[int, int, int]]


def check_store(settings: Settings, intact: dict[NodeKey, tuple[int, int, int]]) -> StoreCheck:
    """No generation is published while a module file in the store differs from its integrity record (or
    has none, or an unreadable one), the live generation differs from its own record, or the store holds
    a file no record names: the publish would carry the damage into the new generation. The live view
    stays as it is; what the run built
    stays in the store (later builds use it) and goes live with the first publish after the damage is
    undone, in this run (``--rebuild`` of the altered module) or a later one. A check with nothing
    ``intact`` from the last one reads every module file in full; later ones (before each node's
    publish) only those whose inode, size or mtime moved since, so a publish keeps costing what
    changed rather than the library's size."""
    stats = module_file_stats(settings.layout, settings.trees())
    moved = [key for key, stat in stats.items() if intact.get(key) != stat]
    altered = altered_module_files(settings.layout, moved if intact else stats)
    if not intact:  # the run's first check, or one after damage: the live generation, the stores too
        altered += publish_blockers(settings.layout, settings.trees())
    return StoreCheck(altered=altered, intact={} if altered else stats)


def _publish(settings: Settings, report: Report) -> list[str]:
    gen, warnings = publish_view(settings)
    report(f"published {gen.name}")
    return warnings
