"""The embedded executor: each node is its own ``eb`` process, at most as many as the run submits."""

from __future__ import annotations

import queue
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from builder import jsonfile, proc
from builder.execute import records, sandbox
from builder.execute.command import Invocation, clear_leftovers, host_env, outputs
from builder.execute.executors import Executor, NodeRun
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


class LocalExecutor(Executor):
    name = "local"

    def __init__(self, cwd: Path, layout: Layout, host_env: dict[str, str], view: sandbox.View | None = None,
                 user: tuple[int, int] = (65534, 65534)):
        self.cwd, self.layout, self.host_env = cwd, layout, host_env
        self.view, self.user = view, user  # no view: builds are not isolated
        self._finished: queue.Queue[tuple[Node, NodeRun]] = queue.Queue()
        self._running: dict[NodeKey, proc.Process] = {}

    @classmethod
    def from_settings(cls, settings: Settings, scratch: Path, report: Callable[[str], None]) -> LocalExecutor:
        view = sandbox.checked(_view(settings), settings) if sandbox.wanted(settings, "builds", report) else None
        return cls(cwd=settings.repo_root, layout=settings.layout, host_env=host_env(settings, scratch),
                   view=view, user=settings.sandbox_user)

    def open(self) -> None:
        """Nothing to take: builds run here, under the run lock the run holds."""

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
        start = time.time()
        child = proc.start(argv, env=env, cwd=self.cwd, log_path=log)
        self._running[node.key] = child
        jsonfile.write(marker, proc.identity(child))
        threading.Thread(target=self._reap, args=(node, inv, child, start, log, marker), daemon=True).start()

    def _refuse(self, node: Node, log: Path, message: str) -> None:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a") as out:
            out.write(message + "\n")
        now = time.time()
        self._finished.put((node, NodeRun(exit_code=1, start=now, end=now, log=str(log), where=socket.gethostname())))

    def _reap(self, node: Node, inv: Invocation, child: proc.Process, start: float, log: Path, marker: Path) -> None:
        code = proc.reap(child)
        if self.view:  # the sandbox ended with its first process: no process of the build writes any more
            sandbox.take_back(outputs(self.layout, node, inv))
        marker.unlink(missing_ok=True)
        self._running.pop(node.key, None)
        where = f"{socket.gethostname()} (pid {child.pid}{'' if self.view else ', ' + records.UNISOLATED})"
        self._finished.put((node, NodeRun(exit_code=code, start=start, end=time.time(), log=str(log), where=where)))

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
        child = self._running.get(node.key)
        if child is not None:
            threading.Thread(target=proc.stop, args=(child,), daemon=True).start()

    def close(self) -> None:
        """A run that stops early (an error, Ctrl-C) takes its builds with it: nobody would publish them."""
        for child in list(self._running.values()):
            proc.stop(child)

