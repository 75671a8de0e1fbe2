"""The one place modlib starts processes: argument lists only, never a shell string."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path


def run(argv: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: Path | None = None,
        log_path: Path | None = None, check: bool = False) -> subprocess.CompletedProcess:
    """Run ``argv``; with ``log_path`` stdout and stderr go to that file (build logs), else they are captured."""
    full_env = dict(os.environ if env is None else env)
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            return subprocess.run(list(argv), env=full_env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, check=check)
    return subprocess.run(list(argv), env=full_env, cwd=cwd, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, check=check)
