"""The embedded executor: each node is its own ``eb`` process, at most as many as the run submits."""

from __future__ import annotations

import queue
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

from builder import proc
from builder.execute import sandbox
from builder.execute.command import Invocation, clear_leftovers, host_env
from builder.execute.executors import Executor, NodeRun
from builder.layout import Layout, slug
from builder.plan.graph import Node
from builder.read.config import Settings


class LocalExecutor(Executor):
    name = "local"

    def __init__(self, cwd: Path, layout: Layout, host_env: dict[str, str], isolated: bool = False):
        self.cwd, self.layout, self.host_env, self.isolated = cwd, layout, host_env, isolated
        self._finished: queue.Queue[tuple[Node, NodeRun]] = queue.Queue()
        self._running: dict[int, proc.Process] = {}

    @classmethod
    def from_settings(cls, settings: Settings, scratch: Path, report: Callable[[str], None]) -> LocalExecutor:
        why_not = sandbox.unavailable()
        if why_not:
            report(f"warning: {why_not}")
        return cls(cwd=settings.repo_root, layout=settings.layout, host_env=host_env(settings, scratch),
                   isolated=why_not is None)

    def submit(self, node: Node, inv: Invocation, log: Path) -> None:
        clear_leftovers(self.layout, node, inv)
        # A build dir of its own, as each pod has: EasyBuild removes emptied parents of its build
        # dir (build/Jinja2/), which pulls the floor from under a second version building beside it.
        build = Path(self.host_env["EASYBUILD_BUILDPATH"]) / f"{node.tree}--{slug(node.module)}"
        build.mkdir(parents=True, exist_ok=True)
        env = {**self.host_env, "EASYBUILD_BUILDPATH": str(build), **dict(inv.env)}
        argv = list(inv.argv)
        if self.isolated:
            argv = sandbox.wrap(argv, self.layout.root, self._writable(node, inv, env))
        start = time.time()
        child = proc.start(argv, env=env, cwd=self.cwd, log_path=log)
        self._running[child.pid] = child
        threading.Thread(target=self._reap, args=(node, child, start, log), daemon=True).start()

    def _writable(self, node: Node, inv: Invocation, env: dict[str, str]) -> list[Path]:
        """What this build may write under the library root: its prefix, its staging folder, EasyBuild's
        locks, and this host's scratch space should it lie below the root."""
        paths = [Path(inv.prefix), self.layout.staging(node.tree, node.module), self.layout.eb_locks()]
        scratch = [Path(env[v]) for v in ("EASYBUILD_BUILDPATH", "EASYBUILD_TMPDIR", "EASYBUILD_REPOSITORYPATH")]
        return paths + [p for p in scratch if p.is_relative_to(self.layout.root)]

    def _reap(self, node: Node, child: proc.Process, start: float, log: Path) -> None:
        code = child.wait()
        self._running.pop(child.pid, None)
        where = f"{socket.gethostname()} (pid {child.pid})"
        self._finished.put((node, NodeRun(exit_code=code, start=start, end=time.time(), log=str(log), where=where)))

    def wait(self) -> list[tuple[Node, NodeRun]]:
        done = [self._finished.get()]
        while not self._finished.empty():
            done.append(self._finished.get_nowait())
        return done

    def close(self) -> None:
        """A run that stops early (an error, Ctrl-C) takes its builds with it: nobody would publish them."""
        for child in list(self._running.values()):
            proc.stop(child)
