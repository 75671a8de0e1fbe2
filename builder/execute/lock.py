"""The library-wide run lock: one builder run at a time on a volume, across hosts and pods.

The lock is a file created with O_EXCL (atomic on POSIX and on NFS v3+ / CephFS) holding who
holds it; a heartbeat thread refreshes it. A holder that is gone (its process is dead on this
host, or its heartbeat is older than ``stale_after`` seconds) is taken over. EasyBuild's own install
locks are not cleared then: Kubernetes Jobs outlive the runner that created them, so a lock may still
be held. A node's stale lock goes only right before a fresh build of that node (``clear_leftovers``).

Losing the lock is never silent: a heartbeat that fails is retried and warned about, and once its
failures span half the stale bound (before anyone may take over), or another run's token is found
in the file, the lock counts as lost and the run creates no more work.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from builder.errors import Locked
from builder.layout import Layout

HEARTBEAT = 10.0
STALE_AFTER = 120.0


class Heartbeat:
    """Renews a lock every ``interval`` seconds in a thread until stopped. ``renew`` returns False when
    the lock is no longer ours and raises when it could not tell; consecutive failures are warned
    about and, at ``max_failures``, the lock counts as lost (``lost`` says why)."""

    def __init__(self, what: str, renew: Callable[[], bool], interval: float, max_failures: int,
                 warn: Callable[[str], None]):
        self.what, self.renew, self.interval, self.max_failures, self.warn = what, renew, interval, max_failures, warn
        self.lost: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat {what}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        failures = 0
        while self.lost is None and not self._stop.wait(self.interval):
            try:
                if not self.renew():
                    self.lost = f"{self.what} was taken over by another run"
                failures = 0
            except Exception as err:  # an OSError on a full disk, an API error: never kill the thread
                failures += 1
                self.warn(f"warning: could not renew {self.what} ({failures}/{self.max_failures}): {err}")
                if failures >= self.max_failures:
                    self.lost = f"{self.what} could not be renewed {failures} times in a row (last: {err})"
        if self.lost:
            self.warn(f"warning: lost {self.what}: no new builds start")


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
    def __init__(self, layout: Layout, holder: str = "modlib build", wait: bool = False,
                 stale_after: float = STALE_AFTER, poll: float = 2.0, heartbeat: float = HEARTBEAT,
                 warn: Callable[[str], None] = print):
        self.path = layout.run_lock()
        self.info = {"holder": holder, "host": socket.gethostname(), "pid": os.getpid(),
                     "token": uuid.uuid4().hex, "started": time.time(), "heartbeat": time.time()}
        self.wait, self.stale_after, self.poll = wait, stale_after, poll
        self.took_over: dict | None = None
        self.heartbeat = Heartbeat(f"the run lock {self.path}", self._renew, heartbeat,
                                   max(1, int(stale_after / 2 / heartbeat)), warn)

    @property
    def lost(self) -> str | None:
        return self.heartbeat.lost

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
                raise Locked(
                    f"{self.path}: another run holds the library lock ({who.get('holder', '?')}, "
                    f"host {who.get('host', '?')}, process {who.get('pid', '?')}, "
                    f"last heartbeat {time.time() - float(who.get('heartbeat', 0)):.0f} s ago); "
                    "try again later or pass --wait")
            time.sleep(self.poll)
        self.heartbeat.start()
        return self

    def _renew(self) -> bool:
        if (read_holder(self.path) or {}).get("token") != self.info["token"]:
            return False
        self.info["heartbeat"] = time.time()
        tmp = self.path.with_name(f".run.lock.{self.info['token']}")
        try:
            tmp.write_text(json.dumps(self.info))
            os.replace(tmp, self.path)
        finally:
            tmp.unlink(missing_ok=True)
        return True

    def release(self) -> None:
        self.heartbeat.stop()
        if (read_holder(self.path) or {}).get("token") == self.info["token"]:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
