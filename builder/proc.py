"""The one place modlib starts processes: argument lists only, never a shell string.

Builds must not outlive the runner that started them: a runner killed with SIGKILL leaves nobody to
publish them, and the next run would build the same node beside them. So a build starts as a guard
(this module run as ``python -m builder.proc``) in a process group of its own: the guard asks the kernel
for a signal when the runner dies (PR_SET_PDEATHSIG) and then kills its whole group, ``eb`` and every
process ``eb`` started. The parent-death signal is sent when the *thread* that forked the guard ends,
so builds are started from the run's main thread (the dispatch loop), which lives as long as the run.
The guard also puts itself into the build's cgroup (builder/execute/cgroups.py) before it starts the
build, so every process of the build is counted and limited there from its first instruction.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

Process = subprocess.Popen

_PR_SET_PDEATHSIG = 1
#: What the guard gets when the runner dies; not SIGTERM, which ``stop`` sends the group for a graceful end.
_RUNNER_DIED = signal.SIGUSR1


def run(argv: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: Path | None = None,
        check: bool = False) -> subprocess.CompletedProcess:
    """Run ``argv`` to its end with its output captured as text (tools whose answer modlib reads)."""
    full_env = dict(os.environ if env is None else env)
    return subprocess.run(list(argv), env=full_env, cwd=cwd, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, check=check)


def start(argv: Sequence[str], *, env: Mapping[str, str], cwd: Path, log_path: Path,
          cgroup: Sequence[Path] = ()) -> Process:
    """Start ``argv`` under a guard, in a new process group, with stdout and stderr appended to
    ``log_path`` (build logs), and return at once. The group's id is the returned process's pid. The
    guard joins the cgroup whose ``cgroup.procs`` files ``cgroup`` names before it starts ``argv``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    guard = [sys.executable, "-I", "-m", "builder.proc", str(os.getpid()), *map(str, cgroup), "--", *argv]
    with open(log_path, "ab") as log:
        return subprocess.Popen(guard, env=dict(env), cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, process_group=0)


def start_piped(argv: Sequence[str], *, env: Mapping[str, str], stderr: IO[bytes]) -> Process:
    """Start ``argv`` to talk with it a line at a time (text on its stdin and stdout); its stderr goes to
    ``stderr``. For workers that end when their stdin closes, or with the runner (a sandbox's
    ``--die-with-parent``)."""
    return subprocess.Popen(list(argv), env=dict(env), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=stderr, text=True, bufsize=1)


def _signal_group(child: Process, sig: int) -> None:
    try:
        os.killpg(child.pid, sig)
    except ProcessLookupError:
        pass


def stop(child: Process, grace: float = 10.0) -> None:
    """SIGTERM to the whole group first: EasyBuild removes its install lock on it; SIGKILL to the group
    if the build does not end in ``grace``."""
    _signal_group(child, signal.SIGTERM)
    try:
        child.wait(grace)
    except subprocess.TimeoutExpired:
        pass
    _signal_group(child, signal.SIGKILL)
    child.wait()


def reap(child: Process) -> tuple[int, resource.struct_rusage | None]:
    """Wait for a build to end and kill what it left running in its group (a daemon a build step
    started would go on writing to the library); the build's exit code, and the resources its guard and
    the processes it waited for used (None where ``stop`` collected the guard first)."""
    try:
        _, status, usage = os.wait4(child.pid, 0)
        code = os.waitstatus_to_exitcode(status)
        child.returncode = code
    except ChildProcessError:  # ``stop``'s wait took it, with its status
        code, usage = child.wait(), None
    _signal_group(child, signal.SIGKILL)
    return code, usage


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (which may hold spaces and parentheses)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text.rpartition(")")[2].split()


def started(pid: int) -> int | None:
    """When a living process started (clock ticks since boot), or None if there is none (a zombie is
    none): a pid and its start time name one process, where a pid alone may have been reused."""
    fields = _stat(pid) if pid > 0 else None
    if fields is None or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def alive(pid: int, start: int | None = None) -> bool:
    """Whether process ``pid`` lives on this host (and is the one that started at ``start``, if given)."""
    now = started(pid)
    return now is not None and (start is None or now == start)


def boot_id() -> str:
    """This boot of this host: pids and start times restart at a reboot."""
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def identity(child: Process) -> dict:
    """What names a started build's process group on this host, for ``running`` to check later."""
    return {"host": socket.gethostname(), "boot": boot_id(), "group": child.pid, "start": started(child.pid)}


def group_members(group: int, since: int = 0) -> list[int]:
    """The living processes of process group ``group`` on this host that started at ``since`` or later."""
    members = []
    for entry in Path("/proc").iterdir():
        fields = _stat(int(entry.name)) if entry.name.isdigit() else None
        if fields and fields[0] not in ("Z", "X") and int(fields[2]) == group and int(fields[19]) >= since:
            members.append(int(entry.name))
    return members


def running(ident: dict | None) -> bool:
    """Whether the group that ``identity`` named still has a living process on this host. A member
    started before the group's leader cannot be ours; one started after may only be another group of
    the same id if our whole group ended first, and then the leader's pid was reused for a new group."""
    if not ident or ident.get("host") != socket.gethostname() or ident.get("boot") != boot_id():
        return False
    return bool(group_members(int(ident["group"]), int(ident.get("start") or 0)))


def _guard(parent: int, cgroup: list[str], argv: list[str]) -> int:
    """Run ``argv`` in ``cgroup`` (its ``cgroup.procs`` files) and end its whole group if ``parent``
    (the runner) dies first. The death signal is asked for here, not in the runner before exec, because
    Python's preexec_fn is unsafe in a runner with threads; a runner that died before the request is
    found by its pid changing. A cgroup the guard cannot join fails the build: unmeasured and unlimited
    is not what the runner asked for."""
    signal.signal(_RUNNER_DIED, lambda *_: os.killpg(0, signal.SIGKILL))
    signal.signal(signal.SIGTERM, lambda *_: None)  # ``stop`` signals the group: eb ends by itself
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, _RUNNER_DIED, 0, 0, 0)
    if os.getppid() != parent:
        os.killpg(0, signal.SIGKILL)
    try:
        for procs in cgroup:
            Path(procs).write_text(str(os.getpid()))
    except OSError as err:
        print(f"cannot join the build's cgroup: {err}", file=sys.stderr)
        return 126
    try:
        code = subprocess.Popen(argv).wait()
    except OSError as err:  # eb missing on this host: one line in the build's log
        print(f"{argv[0]}: {err.strerror}", file=sys.stderr)
        return 127
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    split = sys.argv.index("--")
    sys.exit(_guard(int(sys.argv[1]), sys.argv[2:split], sys.argv[split + 1:]))
