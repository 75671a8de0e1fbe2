"""The emulated kubelet's cgroups: one memory and one cpuacct cgroup (v1) per pod, as a container runtime
makes them, so a pod's memory limit is the kernel's, its OOM kills are real ones, and the build pod's entry
reads its own figures where it reads them on a cgroup v1 node (pod_sandbox.py binds these folders at
/sys/fs/cgroup/memory and /sys/fs/cgroup/cpuacct of the pod).

Test machines have the v1 memory and cpuacct controllers writable by root; the pods' cgroups go below the
tests' own (``/proc/self/cgroup``), so the machine's limits on the tests still hold. Where the controllers
are not there (a cgroup v2 host) ``available`` says so and the tests that need a real limit skip.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

V1 = Path("/sys/fs/cgroup")
CONTROLLERS = ("memory", "cpuacct")


def _own(controller: str) -> Path:
    """This process's cgroup of ``controller``: where the pods' cgroups go."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, names, path = line.split(":", 2)
        if controller in names.split(","):
            own = V1 / controller / path.lstrip("/")
            return own if own.is_dir() else V1 / controller
    return V1 / controller


def available() -> bool:
    return all(os.access(_own(c) / "cgroup.procs", os.W_OK) for c in CONTROLLERS)


class PodCgroup:
    """One pod's cgroups, made with its memory limit (None: none) and removed by ``close``."""

    def __init__(self, pod: str, memory_limit: int | None):
        self.paths = {c: _own(c) / "modlib-emulated-pods" / pod for c in CONTROLLERS}
        for path in self.paths.values():
            path.mkdir(parents=True)
        if memory_limit is not None:
            (self.paths["memory"] / "memory.limit_in_bytes").write_text(str(memory_limit))

    def enter_argv(self, argv: list[str]) -> list[str]:
        """``argv`` started inside the pod's cgroups (a shell moves itself, then execs it)."""
        procs = [str(path / "cgroup.procs") for path in self.paths.values()]
        move = " && ".join(f'echo $$ > "${i + 1}"' for i in range(len(procs)))
        return ["sh", "-c", f'{move} && shift {len(procs)} && exec "$@"', "pod-cgroup", *procs, *argv]

    def oom_kills(self) -> int:
        for line in (self.paths["memory"] / "memory.oom_control").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def close(self) -> None:
        """Whatever the pod left running ends with it, as its container's processes do; then the cgroups go."""
        for _ in range(100):
            left = {int(p) for path in self.paths.values() for p in (path / "cgroup.procs").read_text().split()}
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if not left:
                break
            time.sleep(0.05)
        for path in self.paths.values():
            path.rmdir()
