"""The embedded executor: each node is its own ``eb`` process, at most as many as the run submits, in a
cgroup of its own (builder/execute/cgroups.py) that limits its memory and measures what it used, and
together within the pool's memory budget (library.yaml's ``local.memory_budget``)."""

from __future__ import annotations

import queue
import resource
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from builder import jsonfile, proc
from builder.errors import RunFailed
from builder.execute import cgroups, records, sandbox
from builder.execute.command import Invocation, clear_leftovers, host_env, outputs
from builder.execute.executors import Executor, NodeRun, Usage
from builder.layout import Layout, slug
from builder.plan.graph import Node, NodeKey
from builder.read.config import Settings


def _view(settings: Settings) -> sandbox.View:
    """What a local build reads: the library (its dependencies, the sources), the site repository (its
    easyconfigs and hooks), the Pythons that run ``eb`` and the site hooks' scripts, and Lmod; all
    read-only. The parse cache the runner trusts is not in it."""
    paths = [settings.root, settings.repo_root, *settings.easyconfig_paths, settings.hooks.parent,
             settings.layout.sources()]
    for path in paths:
        path.mkdir(parents=True, exist_ok=True)
    tools = [Path(sys.prefix), Path(sys.base_prefix), settings.lmod_prefix]
    tools += [Path(settings.python).parent.parent] if settings.python and "/" in settings.python else []
    return sandbox.View(readonly=(*paths, *(p for p in tools if p.is_dir())))


def _mem_total() -> int:
    """This host's memory, from the kernel's own account of it."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise RunFailed("/proc/meminfo holds no MemTotal")


@dataclass(frozen=True)
class Pool:
    """How the local pool limits its builds: their cgroups' hierarchy (None: no cgroups, no limits), each
    target's memory for a build that names none, and the budget all running builds' memory shares
    (None: no budget)."""

    cgroups: cgroups.Hierarchy | None = None
    memory_default: Mapping[str, int] = field(default_factory=dict)
    memory_budget: int | None = None


@dataclass
class _Build:
    child: proc.Process
    cgroup: cgroups.Cgroup | None
    memory: int | None


class LocalExecutor(Executor):
    name = "local"

    def __init__(self, cwd: Path, layout: Layout, host_env: dict[str, str], view: sandbox.View | None = None,
                 user: tuple[int, int] = (65534, 65534), pool: Pool | None = None,
                 report: Callable[[str], None] = lambda msg: None):
        self.cwd, self.layout, self.host_env = cwd, layout, host_env
        self.view, self.user = view, user  # no view: builds are not isolated
        self.pool, self.report = pool or Pool(), report
        self._finished: queue.Queue[tuple[Node, NodeRun]] = queue.Queue()
        self._running: dict[NodeKey, _Build] = {}
        self._reapers: list[threading.Thread] = []

    @classmethod
    def from_settings(cls, settings: Settings, scratch: Path, report: Callable[[str], None]) -> LocalExecutor:
        view = sandbox.checked(_view(settings), settings) if sandbox.wanted(settings, "builds", report) else None
        return cls(cwd=settings.repo_root, layout=settings.layout, host_env=host_env(settings, scratch),
                   view=view, user=settings.sandbox_user, pool=_pool(settings, report), report=report)

    def open(self) -> None:
        """Builds run here, under the run lock the run holds; the build cgroups a killed runner left go."""
        if self.pool.cgroups is not None:
            cgroups.remove_leftovers(self.pool.cgroups)

    def memory(self, node: Node, inv: Invocation) -> int | None:
        """What the build is given: its own memory, else its target's default; None: no limit."""
        return inv.memory_bytes if inv.memory_bytes is not None else self.pool.memory_default.get(node.target)

    def admits(self, node: Node, inv: Invocation, starting: Sequence[tuple[Node, Invocation]] = ()) -> bool:
        """Whether the build fits in the memory budget beside those running and ``starting``; one that
        alone is over the budget still starts once nothing else runs, so that the run ends."""
        budget = self.pool.memory_budget
        if budget is None or not (self._running or starting):
            return True
        taken = sum(b.memory or 0 for b in list(self._running.values()))
        taken += sum(self.memory(n, i) or 0 for n, i in starting)
        return taken + (self.memory(node, inv) or 0) <= budget

    def submit(self, node: Node, inv: Invocation, log: Path) -> None:
        """Start the node's build, unless an earlier ``eb`` of the node still runs here (a runner that
        was killed before it could stop it): building beside it, in the same prefix, would corrupt both,
        so the node fails with a message instead."""
        marker = self.layout.build_process(node.tree, node.module)
        earlier = jsonfile.read(marker)
        if proc.running(earlier):
            self._refuse(node, log, f"an earlier build of {node.tree}/{node.module} still runs on this host "
                                    f"(process group {(earlier or {}).get('group')}, see {marker}); "
                                    "not building beside it: stop it or wait for it to end")
            return
        clear_leftovers(self.layout, node, inv)
        # A build dir of its own, as each pod has: EasyBuild removes emptied parents of its build
        # dir (build/Jinja2/), which pulls the floor from under a second version building beside it.
        own = f"{node.tree}--{slug(node.module)}"
        build = Path(self.host_env["EASYBUILD_BUILDPATH"]) / own
        build.mkdir(parents=True, exist_ok=True)
        env = {**self.host_env, "EASYBUILD_BUILDPATH": str(build), **dict(inv.env)}
        argv = list(inv.argv)
        if self.view:
            tmp = Path(self.host_env["EASYBUILD_TMPDIR"]) / own  # its own, as its build dir
            env.update(EASYBUILD_TMPDIR=str(tmp), EASYBUILD_REPOSITORYPATH=str(tmp / "ebfiles_repo"), HOME=str(tmp))
            writable = [*outputs(self.layout, node, inv), self.layout.eb_locks(), build, tmp]
            sandbox.hand_over(writable, self.user)
            argv = sandbox.wrap(argv, replace(self.view, writable=tuple(writable)), env, self.user, cwd=self.cwd)
            env = sandbox.kept_env(env)  # bwrap's own processes, pid 1 of the sandbox among them, too
        self._start(node, inv, argv, env, log, marker)

    def _start(self, node: Node, inv: Invocation, argv: list[str], env: dict[str, str], log: Path,
               marker: Path) -> None:
        """Start the build in a cgroup of its own, limited to its memory, and a thread that reaps it."""
        memory, budget = self.memory(node, inv), self.pool.memory_budget
        if memory is not None and budget is not None and memory > budget:
            self.report(f"{node.tree}/{node.module} runs alone: its memory ({memory / 2**30:.1f} GiB) is more than "
                        f"local.memory_budget ({budget / 2**30:.1f} GiB)")
        cgroup = cgroups.Cgroup(self.pool.cgroups, node.module, memory) if self.pool.cgroups else None
        start = time.time()
        child = proc.start(argv, env=env, cwd=self.cwd, log_path=log, cgroup=cgroup.procs() if cgroup else ())
        self._running[node.key] = running = _Build(child, cgroup, memory)
        jsonfile.write(marker, proc.identity(child))
        reaper = threading.Thread(target=self._reap, args=(node, inv, running, start, log, marker), daemon=True)
        self._reapers.append(reaper)
        reaper.start()

    def _refuse(self, node: Node, log: Path, message: str) -> None:
        _say(log, message)
        now = time.time()
        self._finished.put((node, NodeRun(exit_code=1, start=now, end=now, log=str(log), where=socket.gethostname())))

    def _reap(self, node: Node, inv: Invocation, build: _Build, start: float, log: Path, marker: Path) -> None:
        code, rusage = proc.reap(build.child)
        end, usage = time.time(), self._usage(build, rusage, log)
        try:
            if self.view:  # the sandbox ended with its first process: no process of the build writes any more
                sandbox.take_back(outputs(self.layout, node, inv))
        except OSError as err:  # what the build user may still change is never published
            _say(log, f"cannot take the build's files back: {err}")
            code = code or 1
        finally:  # the node comes back whatever went wrong here, or the run would wait for it forever
            marker.unlink(missing_ok=True)
            self._running.pop(node.key, None)
            where = f"{socket.gethostname()} (pid {build.child.pid}{'' if self.view else ', ' + records.UNISOLATED})"
            self._finished.put((node, NodeRun(exit_code=code, start=start, end=end, log=str(log), where=where,
                                               usage=usage)))

    @staticmethod
    def _usage(build: _Build, rusage: resource.struct_rusage | None, log: Path) -> Usage | None:
        """What the build used, once it ended; its cgroup removed. A cgroup that cannot be read or removed
        is said in the build's log, and the build has no measure: its result is its exit code."""
        if build.cgroup is None:
            return cgroups.from_rusage(rusage) if rusage is not None else None
        try:
            usage = build.cgroup.usage()
            build.cgroup.remove()
        except (OSError, RunFailed) as err:
            _say(log, f"the build's cgroup {build.cgroup.name}: {err}")
            return None
        return usage

    def wait(self, timeout: float | None = None) -> list[tuple[Node, NodeRun]]:
        try:
            done = [self._finished.get(timeout=timeout)]
        except queue.Empty:
            return []
        while not self._finished.empty():
            done.append(self._finished.get_nowait())
        return done

    def cancel(self, node: Node) -> None:
        """Stop the node's build as ``close`` does (SIGTERM, then SIGKILL), in a thread of its own so
        that the run goes on collecting ends; the reaper reports it like any other end."""
        build = self._running.get(node.key)
        if build is not None:
            threading.Thread(target=proc.stop, args=(build.child,), daemon=True).start()

    def close(self) -> None:
        """A run that stops early (an error, Ctrl-C) takes its builds with it: nobody would publish them.
        The reapers end too, so that no build's cgroup outlives the run."""
        for build in list(self._running.values()):
            proc.stop(build.child)
        for reaper in self._reapers:
            reaper.join(30)


def _say(log: Path, message: str) -> None:
    """A line of the runner's own in a build's log."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as out:
        out.write(message + "\n")


def _pool(settings: Settings, report: Callable[[str], None]) -> Pool:
    """The pool's cgroups and budget on this host; where no cgroup can be made, said once."""
    hierarchy, why_not = cgroups.find()
    if hierarchy is None:
        report(f"warning: {why_not}: local builds run WITHOUT memory limits, measured by their processes' rusage")
    host = _mem_total()
    limit = hierarchy.limit() if hierarchy else None  # the runner's own cgroup holds its builds too
    budget = settings.local.memory_budget(min(host, limit) if limit else host)
    return Pool(cgroups=hierarchy, memory_default={n: t.resources.memory_default for n, t in settings.targets.items()},
                memory_budget=budget)
