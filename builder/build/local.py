"""The embedded executor: each node is its own ``eb`` process, at most ``jobs`` at once."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path

from builder import proc
from builder.build.command import Invocation, clear_leftovers, host_env, slug
from builder.build.executors import NodeRun
from builder.plan.graph import Node
from builder.plan.schedule import Scheduler
from builder.read.config import Settings


class LocalExecutor:
    def __init__(self, jobs: int, cwd: Path, root: Path, host_env: dict[str, str]):
        self.jobs = max(1, jobs)
        self.cwd, self.root = cwd, root
        self.host_env = host_env

    @classmethod
    def from_settings(cls, settings: Settings, jobs: int, scratch: Path) -> LocalExecutor:
        return cls(jobs=jobs, cwd=settings.repo_root, root=settings.root, host_env=host_env(settings, scratch))

    def _run_one(self, node: Node, inv: Invocation, log: str) -> NodeRun:
        start = time.time()
        clear_leftovers(self.root, node)
        # A build dir of its own, as each pod has: EasyBuild removes emptied parents of its build
        # dir (build/Jinja2/), which pulls the floor from under a second version building beside it.
        build = Path(self.host_env["EASYBUILD_BUILDPATH"]) / f"{node.tree}--{slug(node.module)}"
        build.mkdir(parents=True, exist_ok=True)
        env = {**self.host_env, "EASYBUILD_BUILDPATH": str(build), **dict(inv.env)}
        result = proc.run(inv.argv, env=env, cwd=self.cwd, log_path=Path(log))
        return NodeRun(exit_code=result.returncode, start=start, end=time.time(), log=log)

    def run(self, scheduler: Scheduler, invocation: Callable[[Node], Invocation],
            started: Callable[[Node], str], finished: Callable[[Node, NodeRun], bool]) -> None:
        running: dict[Future, Node] = {}
        with ThreadPoolExecutor(max_workers=self.jobs) as pool:
            while not scheduler.done():
                for node in scheduler.ready()[: self.jobs - len(running)]:
                    scheduler.start(node.key)
                    running[pool.submit(self._run_one, node, invocation(node), started(node))] = node
                done, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for future in done:
                    node = running.pop(future)
                    scheduler.finish(node.key, finished(node, future.result()))
