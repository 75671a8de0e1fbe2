"""A local build's own cgroup: what limits its memory and measures what it used, made by the runner.

A pod has its cgroup from the kubelet; a local build gets one from the runner, below the runner's own
cgroup (so a limit an admin put on the runner's service holds its builds too): cgroup v2 where the
runner's cgroup offers the memory and cpu controllers to children (a delegated subtree), else cgroup v1's
memory and cpuacct hierarchies. The build's guard (builder/proc.py) writes itself into the cgroup before
it starts anything, so no process of the build is ever outside it; the files belong to root and the
build runs as the sandbox's user, so it cannot raise its own limit. A build over its limit is OOM-killed
inside its cgroup, never the runner. At the end the runner reads the peak memory, the CPU time and the
OOM kills, kills what is left and removes the cgroup.

The cgroups are named ``modlib-build-<PID namespace>-<runner pid>-<runner start>-<n>-<module>``: a runner
killed before it removed them leaves cgroups whose runner is gone, which the next run from the same
cgroup (a service's, a CronJob's container) removes when its local executor opens. Only cgroups of
runners of its own PID namespace: a pid of another means nothing here.
"""

from __future__ import annotations

import functools
import itertools
import os
import re
import resource
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from builder import proc
from builder.errors import RunFailed
from builder.execute.executors import Usage

#: The most of a cgroup file the runner reads: every file it reads is a few numbers or lines.
_MOST = 64 * 1024
_NUMBER = re.compile(r"[0-9]{1,20}")
_UNLIMITED_V1 = 1 << 62  # v1 reports "no limit" as PAGE_COUNTER_MAX pages, just below 2**63


@dataclass(frozen=True)
class Hierarchy:
    """Where this runner makes its builds' cgroups: one folder for v2; v1's memory and cpuacct folders."""

    version: int
    memory: Path
    cpu: Path

    @property
    def measured_by(self) -> str:
        return f"cgroup v{self.version}"

    def limit(self) -> int | None:
        """The memory limit of the runner's own cgroup (which its builds share), or None."""
        if self.version == 2:  # the root cgroup has no memory.max
            text = _read(self.memory / "memory.max").strip() if (self.memory / "memory.max").exists() else "max"
            return None if text == "max" else _number(text)
        found = _number(_read(self.memory / "memory.limit_in_bytes").strip())
        return None if found >= _UNLIMITED_V1 else found


def find() -> tuple[Hierarchy | None, str]:
    """The hierarchy this runner can make build cgroups in, or None and why not (for the one warning)."""
    mounts = _mounts()
    own = _own_cgroups()
    v2 = _v2(mounts.get("cgroup2"), own.get(""))
    if v2 is not None:
        return v2, ""
    memory, cpu = (_v1(mounts, own, name) for name in ("memory", "cpuacct"))
    if memory is None or cpu is None:
        return None, "no cgroup can be made for builds here (cgroup v2 without delegated memory and cpu " \
                     "controllers, no writable cgroup v1 memory and cpuacct hierarchies)"
    return Hierarchy(version=1, memory=memory, cpu=cpu), ""


def _mounts() -> dict[str, Path]:
    """Each cgroup file system's mount point by controller ("cgroup2" for the unified one), from the
    kernel's mount table. A mount of a part of a hierarchy (a host's cgroup bound into a container without
    a cgroup namespace) is left out: /proc/self/cgroup's paths are not relative to it."""
    found: dict[str, Path] = {}
    for line in _read(Path("/proc/self/mountinfo"), most=4 * _MOST).splitlines():
        fields, _, tail = line.partition(" - ")
        parts, extra = fields.split(), tail.split()
        if len(parts) < 5 or len(extra) < 3 or parts[3] != "/":
            continue
        point = Path(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), parts[4]))
        if extra[0] == "cgroup2":
            found.setdefault("cgroup2", point)
        elif extra[0] == "cgroup":
            for option in extra[2].split(","):
                found.setdefault(option, point)
    return found


def _own_cgroups() -> dict[str, str]:
    """The runner's cgroup path by controller ("" for cgroup v2), from /proc/self/cgroup."""
    own: dict[str, str] = {}
    for line in _read(Path("/proc/self/cgroup")).splitlines():
        _, controllers, path = line.split(":", 2)
        for name in controllers.split(",") if controllers else [""]:
            own[name.removeprefix("name=")] = path
    return own


def _v2(mount: Path | None, path: str | None) -> Hierarchy | None:
    """The runner's v2 cgroup, once it hands memory and cpu to children. The kernel lets a cgroup that
    holds processes hand none on, so a runner alone in its cgroup (a service with Delegate=yes) first
    moves itself into a leaf of its own, ``modlib-runner``; one that shares its cgroup (with the shell
    that started it) moves nothing and uses no v2 cgroup."""
    if mount is None or path is None:
        return None
    folder = mount / path.lstrip("/")
    try:
        if not {"memory", "cpu"} <= set(_read(folder / "cgroup.controllers").split()):
            return None
        if not {"memory", "cpu"} <= set(_read(folder / "cgroup.subtree_control").split()):
            if _read(folder / "cgroup.procs").split() != [str(os.getpid())]:
                return None
            leaf = folder / "modlib-runner"
            leaf.mkdir(exist_ok=True)
            (leaf / "cgroup.procs").write_text(str(os.getpid()))
            (folder / "cgroup.subtree_control").write_text("+memory +cpu")
    except OSError:
        return None
    return Hierarchy(version=2, memory=folder, cpu=folder)


def _v1(mounts: dict[str, Path], own: dict[str, str], controller: str) -> Path | None:
    """The runner's v1 cgroup of ``controller``, where the runner may make cgroups in it."""
    if controller not in mounts or controller not in own:
        return None
    folder = mounts[controller] / own[controller].lstrip("/")
    return folder if os.access(folder, os.W_OK) else None


_counter = itertools.count(1)


@functools.cache
def prefix() -> str:
    """What every build cgroup of a runner in this PID namespace is named with."""
    return f"modlib-build-{os.stat('/proc/self/ns/pid').st_ino}-"


class Cgroup:
    """One build's cgroup (the same name in each of its hierarchy's folders)."""

    def __init__(self, hierarchy: Hierarchy, module: str, memory_bytes: int | None):
        """Make it, with ``memory_bytes`` as its memory limit (and no swap beyond it); None: no limit."""
        runner = os.getpid()
        self.hierarchy = hierarchy
        self.name = f"{prefix()}{runner}-{proc.started(runner)}-{next(_counter)}-{module.replace('/', '--')[:100]}"
        self.folders = tuple(dict.fromkeys((hierarchy.memory / self.name, hierarchy.cpu / self.name)))
        for folder in self.folders:
            folder.mkdir()
        if memory_bytes is not None:
            self._limit(memory_bytes)

    def _limit(self, memory_bytes: int) -> None:
        folder = self.folders[0]
        if self.hierarchy.version == 2:
            (folder / "memory.max").write_text(str(memory_bytes))
            _write_if_there(folder / "memory.swap.max", "0")
        else:
            (folder / "memory.limit_in_bytes").write_text(str(memory_bytes))
            _write_if_there(folder / "memory.memsw.limit_in_bytes", str(memory_bytes))  # swap accounting on

    def procs(self) -> list[Path]:
        """The files the build's guard writes its pid into."""
        return [folder / "cgroup.procs" for folder in self.folders]

    def usage(self) -> Usage:
        """What the build used, from its cgroup's own counters."""
        memory, cpu = self.folders[0], self.folders[-1]
        if self.hierarchy.version == 2:
            peak = _optional_number(memory / "memory.peak")  # Linux 5.19 and later
            cpu_seconds = _field(_read(cpu / "cpu.stat"), "usage_usec") / 1e6
            kills = _field(_read(memory / "memory.events"), "oom_kill")
        else:
            peak = _number(_read(memory / "memory.max_usage_in_bytes").strip())
            cpu_seconds = _number(_read(cpu / "cpuacct.usage").strip()) / 1e9
            kills = _field(_read(memory / "memory.oom_control"), "oom_kill")
        return Usage(peak_memory_bytes=peak, cpu_seconds=cpu_seconds, oom_kills=kills,
                     measured_by=self.hierarchy.measured_by)

    def remove(self) -> None:
        """Kill whatever of the build is still in it (a daemon that left the build's process group) and
        remove it."""
        for folder in self.folders:
            _remove(folder)


def _remove(folder: Path, patience: float = 10.0) -> None:
    """Remove a cgroup, killing what is left in it: the kernel refuses while a process of it lives."""
    deadline = time.monotonic() + patience
    while folder.exists():
        try:
            folder.rmdir()
        except OSError:  # busy: processes still in it, or ending
            if time.monotonic() > deadline:
                raise
            _kill_all(folder)
            time.sleep(0.05)


def _kill_all(folder: Path) -> None:
    """SIGKILL every process in ``folder``'s cgroup: v2's cgroup.kill where the kernel has it, else each pid
    the cgroup lists (a pid read from a cgroup still of processes is one of its own)."""
    if _write_if_there(folder / "cgroup.kill", "1"):
        return
    for line in _read(folder / "cgroup.procs").split():
        try:
            os.kill(_number(line), signal.SIGKILL)
        except ProcessLookupError:
            pass


def remove_leftovers(hierarchy: Hierarchy) -> list[str]:
    """Remove the build cgroups that runners no longer alive here left in this runner's cgroup (a runner
    killed before it could remove them); their names."""
    removed, leftover = [], re.compile(rf"{re.escape(prefix())}(\d+)-(\d+)-\d+(-.*)?")
    for parent in dict.fromkeys((hierarchy.memory, hierarchy.cpu)):
        for folder in sorted(parent.iterdir()):
            found = leftover.fullmatch(folder.name)
            if found and folder.is_dir() and not proc.alive(int(found.group(1)), int(found.group(2))):
                _remove(folder)
                removed.append(folder.name)
    return sorted(set(removed))


def from_rusage(usage: resource.struct_rusage) -> Usage:
    """A build without a cgroup: the CPU time of the process tree its guard waited for, and the largest
    single process's peak (the kernel keeps no peak of a tree's sum); no OOM count."""
    return Usage(peak_memory_bytes=usage.ru_maxrss * 1024, cpu_seconds=usage.ru_utime + usage.ru_stime,
                 oom_kills=None, measured_by="rusage")


def _read(path: Path, most: int = _MOST) -> str:
    with open(path, "rb") as file:
        return file.read(most).decode("ascii", errors="replace")


def _write_if_there(path: Path, text: str) -> bool:
    """Write a cgroup file the kernel may not offer (a file cannot be made in a cgroup's folder)."""
    if not path.exists():
        return False
    path.write_text(text)
    return True


def _number(text: str) -> int:
    """A whole number a cgroup file holds; anything else is a changed kernel interface, not a zero."""
    if not _NUMBER.fullmatch(text):
        raise RunFailed(f"not a cgroup counter: {text[:40]!r}")
    return int(text)


def _optional_number(path: Path) -> int | None:
    try:
        return _number(_read(path).strip())
    except FileNotFoundError:
        return None


def _field(text: str, key: str) -> int:
    """``key``'s value in a flat-keyed cgroup file ("key value" lines)."""
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return _number(value.strip())
    raise RunFailed(f"no {key} in the cgroup file")
