"""The embedded executor: each node is its own ``eb`` process, at most as many as the run submits."""

from __future__ import annotations

import queue
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

from builder import jsonfile, proc
from builder.execute import sandbox
from builder.execute.command import Invocation, clear_leftovers, host_env
from builder.execute.executors import Executor, NodeRun
from builder.layout import Layout, slug
from builder.plan.graph import Node, NodeKey
from builder.read.config import Settings


def _protected(settings: Settings) -> tuple[Path, ...]:
    """What a local build must not write: the library, and what the runner itself reads and runs
    later (the repository: site easyconfigs, hooks, its venv; the parse cache)."""
    paths = [settings.root, settings.repo_root, *settings.easyconfig_paths, settings.hooks.parent]
    paths += [settings.cache_dir] if settings.cache_dir else []
    for path in paths:
        path.mkdir(parents=True, exist_ok=True)
    return tuple(sorted({p.resolve() for p in paths}))


class LocalExecutor(Executor):
    name = "local"

    def __init__(self, cwd: Path, layout: Layout, host_env: dict[str, str], readonly: tuple[Path, ...] = ()):
        self.cwd, self.layout, self.host_env = cwd, layout, host_env
        self.readonly = readonly  # empty: builds are not isolated
        self._finished: queue.Queue[tuple[Node, NodeRun]] = queue.Queue()
        self._running: dict[NodeKey, proc.Process] = {}

    @classmethod
    def from_settings(cls, settings: Settings, scratch: Path, report: Callable[[str], None]) -> LocalExecutor:
        why_not = sandbox.unavailable()
        if why_not:
            report(f"warning: {why_not}")
        return cls(cwd=settings.repo_root, layout=settings.layout, host_env=host_env(settings, scratch),
                   readonly=() if why_not else _protected(settings))

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
        build = Path(self.host_env["EASYBUILD_BUILDPATH"]) / f"{node.tree}--{slug(node.module)}"
        build.mkdir(parents=True, exist_ok=True)
        env = {**self.host_env, "EASYBUILD_BUILDPATH": str(build), **dict(inv.env)}
        argv = list(inv.argv)
        if self.readonly:
            argv = sandbox.wrap(argv, self.readonly, self._writable(node, inv, env))
        start = time.time()
        child = proc.start(argv, env=env, cwd=self.cwd, log_path=log)
        self._running[node.key] = child
        jsonfile.write(marker, proc.identity(child))
        threading.Thread(target=self._reap, args=(node, child, start, log, marker), daemon=True).start()

    def _writable(self, node: Node, inv: Invocation, env: dict[str, str]) -> list[Path]:
        """What this build may write of what is read-only to it: its prefix, its staging folder, EasyBuild's
        locks, and this host's scratch space should it lie below one of those folders."""
        paths = [Path(inv.prefix), self.layout.staging(node.tree, node.module), self.layout.eb_locks()]
        scratch = [Path(env[v]) for v in ("EASYBUILD_BUILDPATH", "EASYBUILD_TMPDIR", "EASYBUILD_REPOSITORYPATH")]
        return paths + [p for p in scratch if any(p.is_relative_to(r) for r in self.readonly)]

    def _refuse(self, node: Node, log: Path, message: str) -> None:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a") as out:
            out.write(message + "\n")
        now = time.time()
        self._finished.put((node, NodeRun(exit_code=1, start=now, end=now, log=str(log), where=socket.gethostname())))

    def _reap(self, node: Node, child: proc.Process, start: float, log: Path, marker: Path) -> None:
        code = proc.reap(child)
        marker.unlink(missing_ok=True)
        self._running.pop(node.key, None)
        where = f"{socket.gethostname()} (pid {child.pid})"
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

