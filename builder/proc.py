"""The one place modlib starts processes: argument lists only, never a shell string."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

Process = subprocess.Popen


def run(argv: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: Path | None = None,
        check: bool = False) -> subprocess.CompletedProcess:
    """Run ``argv`` to its end with its output captured as text (tools whose answer modlib reads)."""
    full_env = dict(os.environ if env is None else env)
    return subprocess.run(list(argv), env=full_env, cwd=cwd, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, check=check)


def start(argv: Sequence[str], *, env: Mapping[str, str], cwd: Path, log_path: Path) -> Process:
    """Start ``argv`` with stdout and stderr appended to ``log_path`` (build logs) and return at once."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(list(argv), env=dict(env), cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)


def stop(child: Process, grace: float = 10.0) -> None:
    """SIGTERM first: EasyBuild removes its install lock on it; SIGKILL if it does not end in ``grace``."""
    child.terminate()
    try:
        child.wait(grace)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
