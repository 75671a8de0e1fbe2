"""The library-wide run lock: one builder run at a time on a volume, across hosts and pods.

The lock is a file created with O_EXCL (atomic on POSIX and on NFS v3+ / CephFS) holding who
holds it; a heartbeat thread refreshes it. A holder that is gone (its process is dead on this
host, or its heartbeat is older than ``stale_after`` seconds) is taken over. EasyBuild's own install
locks are not cleared then: Kubernetes Jobs outlive the runner that created them, so a lock may still
be held. A node's stale lock goes only right before a fresh build of that node (``clear_leftovers``).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path

from builder.errors import EXIT_LOCKED, ModlibError

HEARTBEAT = 10.0
STALE_AFTER = 120.0


def lock_path(root: Path) -> Path:
    return root / ".modlib" / "run.lock"


def eb_locks_dir(root: Path) -> Path:
    return root / ".modlib" / "eb-locks"


def read_holder(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def holder_gone(holder: dict | None, now: float, stale_after: float = STALE_AFTER) -> bool:
    if holder is None:
        return True  # unreadable: a writer died between create and write, or the file is corrupt
    if holder.get("host") == socket.gethostname():
        try:
            os.kill(int(holder["pid"]), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass
    return now - float(holder.get("heartbeat", 0)) > stale_after


class RunLock:
    def __init__(self, root: Path, holder: str = "modlib build", wait: bool = False,
                 stale_after: float = STALE_AFTER, poll: float = 2.0):
        self.path = lock_path(root)
        self.info = {"holder": holder, "host": socket.gethostname(), "pid": os.getpid(),
                     "token": uuid.uuid4().hex, "started": time.time(), "heartbeat": time.time()}
        self.wait, self.stale_after, self.poll = wait, stale_after, poll
        self.took_over: dict | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _try_create(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as out:
            json.dump(self.info, out)
        return True

    def _take_over(self, holder: dict | None) -> bool:
        """Move the stale lock aside (rename is atomic: of two takers only one succeeds), then create ours."""
        aside = self.path.with_name(f"run.lock.stale-{uuid.uuid4().hex[:8]}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return False
        aside.unlink(missing_ok=True)
        if self._try_create():
            self.took_over = holder or {}
            return True
        return False

    def acquire(self) -> RunLock:
        while True:
            if self._try_create():
                break
            holder = read_holder(self.path)
            if holder_gone(holder, time.time(), self.stale_after) and self._take_over(holder):
                break
            if not self.wait:
                who = holder or {}
                raise ModlibError(
                    f"{self.path}: another run holds the library lock ({who.get('holder', '?')}, "
                    f"host {who.get('host', '?')}, process {who.get('pid', '?')}, "
                    f"last heartbeat {time.time() - float(who.get('heartbeat', 0)):.0f} s ago); "
                    "try again later or pass --wait", EXIT_LOCKED)
            time.sleep(self.poll)
        self._thread = threading.Thread(target=self._beat, daemon=True)
        self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT):
            self.info["heartbeat"] = time.time()
            tmp = self.path.with_name(f".run.lock.{self.info['token']}")
            tmp.write_text(json.dumps(self.info))
            if (read_holder(self.path) or {}).get("token") == self.info["token"]:
                os.replace(tmp, self.path)
            else:
                tmp.unlink(missing_ok=True)

    def release(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        if (read_holder(self.path) or {}).get("token") == self.info["token"]:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def eb_install_lock(root: Path, tree: str, module: str) -> Path:
    """EasyBuild's lock of one install dir: the dir's path with '/' as '_' (easyblock.py, run_all_steps);
    a hidden module installs without the dot of its version."""
    installdir = root / tree / "software" / module.replace("/.", "/")
    return eb_locks_dir(root) / (str(installdir).replace("/", "_") + ".lock")
