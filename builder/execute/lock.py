"""The library-wide run lock: one builder run at a time on a volume, across hosts and pods.

Guarantees, and how (docs/library-volume.md says the same for admins):

- **Created whole.** The holder's record (holder, host, boot, process and its start time, a token) is
  written to a file of its own and then hard-linked to ``run.lock``. ``link`` fails where a file
  exists, also on NFS, so a reader never sees a half-written lock, and a lock is never renamed over.
- **Taken over only from a holder that is gone.** On the same host (and boot): its process is dead, a
  pid reused by another process not counting (the start time differs). On another host: the lock's
  heartbeat (the file's mtime, renewed every ``HEARTBEAT`` s through the holder's own open file, so a
  renewal never touches another holder's lock) is older than ``STALE_AFTER`` s. Hosts' clocks must
  agree to well within that bound.
- **One taker wins.** Removing a holder's file is the one step two takers could both do to different
  files (the second removing the lock the first has just made), so it is exclusive too: only the
  process that created ``run.lock.claim-<token>`` may remove the lock file with that token, after
  reading again that it is still there and still gone. The holder itself releases the same way. A
  claimer that died is taken over one level down (a claim of the claim).
- **Fencing.** A holder stopped past the stale bound (SIGSTOP, a frozen VM) is taken over while it
  still lives. Before anything it publishes, a run calls ``fence``: the lock file must still carry its
  token, or the lock counts as lost and the run stops with exit code 1.

EasyBuild's install locks are not cleared at takeover: Kubernetes Jobs outlive the runner that
created them, so a lock may still be held. A node's stale lock goes only right before a fresh build of
that node (``clear_leftovers``). Losing the lock is never silent: a heartbeat that fails is retried and
warned about, and once its failures span half the stale bound (before anyone may take over), or another
run's token is found in the file, the lock counts as lost and the run creates no more work and
cancels what runs (builder/commands/run.py's dispatch loop).
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

from builder import proc
from builder.errors import Locked, RunFailed
from builder.layout import Layout

HEARTBEAT = 10.0
STALE_AFTER = 120.0
#: run.lock, its claim, the claim's claim: a deeper chain means takers keep dying mid-takeover.
_CLAIM_DEPTH = 3


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
    """A lock file's record, with ``heartbeat`` (its mtime) and ``id`` (its token; an unreadable file,
    which no writer of this version leaves, by its inode); None if there is no such file."""
    try:
        with open(path, "rb") as lock:
            raw, st = lock.read(), os.fstat(lock.fileno())
    except FileNotFoundError:
        return None
    try:
        info = json.loads(raw)
    except ValueError:
        info = None
    info = {k: v for k, v in info.items() if isinstance(v, _FIELDS.get(k, ()))} if isinstance(info, dict) else {}
    return {**info, "heartbeat": st.st_mtime, "id": str(info.get("token") or f"inode-{st.st_ino}")}


#: A holder's fields and their types: a torn or garbled lock keeps only what is well formed, so a field
#: of another type (a list for a pid) counts as missing, and such a holder is gone only by its heartbeat.
_FIELDS: dict[str, type | tuple[type, ...]] = {"holder": str, "host": str, "boot": str, "pid": int,
                                               "process_start": int, "token": str, "started": (int, float)}


def holder_gone(holder: dict | None, now: float, stale_after: float = STALE_AFTER) -> bool:
    """Whether the holder provably is gone: dead here, or silent for ``stale_after`` s elsewhere."""
    if holder is None:
        return True
    pid = int(holder.get("pid") or 0)
    if holder.get("host") == socket.gethostname() and holder.get("boot", proc.boot_id()) == proc.boot_id() and pid:
        return not proc.alive(pid, holder.get("process_start"))
    return now - float(holder.get("heartbeat", 0)) > stale_after


class RunLock:
    def __init__(self, layout: Layout, holder: str = "modlib build", wait: bool = False,
                 stale_after: float = STALE_AFTER, poll: float = 2.0, heartbeat: float = HEARTBEAT,
                 warn: Callable[[str], None] = print):
        self.path = layout.run_lock()
        self.token = uuid.uuid4().hex
        self.info = {"holder": holder, "host": socket.gethostname(), "boot": proc.boot_id(), "pid": os.getpid(),
                     "process_start": proc.started(os.getpid()), "token": self.token, "started": time.time()}
        self.wait, self.stale_after, self.poll = wait, stale_after, poll
        self.took_over: dict | None = None
        self._fd: int | None = None  # our lock file, open: the heartbeat touches this inode only
        self.heartbeat = Heartbeat(f"the run lock {self.path}", self._renew, heartbeat,
                                   max(1, int(stale_after / 2 / heartbeat)), warn)

    @property
    def lost(self) -> str | None:
        return self.heartbeat.lost

    def _create(self, path: Path, keep: bool = False) -> bool:
        """Link a complete file to ``path``; False if one is there. ``keep``: hold it open for the heartbeat."""
        tmp = path.with_name(f".{path.name}.{self.token}")
        tmp.write_text(json.dumps(self.info))
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.link(tmp, path)
            made = True
        except FileExistsError:  # on NFS, also a retried link whose first try made it
            made = (read_holder(path) or {}).get("token") == self.token
        finally:
            tmp.unlink(missing_ok=True)
        if made and keep:
            self._fd = fd
        else:
            os.close(fd)
        return made

    def _take(self, path: Path, depth: int) -> bool:
        """Create ``path`` or take it over from a gone holder, under that holder's claim."""
        if self._create(path, keep=depth == 0):
            return True
        holder = read_holder(path)
        if holder is None or depth + 1 >= _CLAIM_DEPTH or not holder_gone(holder, time.time(), self.stale_after):
            return False
        claim = path.with_name(f"{path.name}.claim-{holder['id']}")
        if not self._take(claim, depth + 1):
            return False
        try:
            again = read_holder(path)
            if again is None or again["id"] != holder["id"] or not holder_gone(again, time.time(), self.stale_after):
                return False
            path.unlink()
            if not self._create(path, keep=depth == 0):
                return False
        finally:
            self._drop(claim)
        if depth == 0:
            self.took_over = holder
        return True

    def _drop(self, path: Path) -> None:
        if (read_holder(path) or {}).get("token") == self.token:
            path.unlink(missing_ok=True)

    def acquire(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while not self._take(self.path, 0):
            holder = read_holder(self.path)
            if holder is None:
                continue  # released a moment ago: try again at once
            if not self.wait:
                raise Locked(
                    f"{self.path}: another run holds the library lock ({holder.get('holder', '?')}, "
                    f"host {holder.get('host', '?')}, process {holder.get('pid', '?')}, "
                    f"last heartbeat {time.time() - float(holder['heartbeat']):.0f} s ago); "
                    "try again later or pass --wait")
            time.sleep(self.poll)
        self._sweep()
        self.heartbeat.start()
        return self

    def _sweep(self) -> None:
        """Claims on lock files that are gone, and files of writers that died before linking theirs."""
        for leftover in self.path.parent.glob(f"{self.path.name}.claim-*"):
            if not leftover.name.startswith(f"{self.path.name}.claim-{self.token}"):
                leftover.unlink(missing_ok=True)
        for tmp in self.path.parent.glob(f".{self.path.name}.*"):
            try:
                if time.time() - tmp.stat().st_mtime > self.stale_after:
                    tmp.unlink(missing_ok=True)
            except FileNotFoundError:
                pass

    def _ours(self) -> bool:
        return (read_holder(self.path) or {}).get("token") == self.token

    def _renew(self) -> bool:
        if not self._ours() or self._fd is None:
            return False
        now = time.time()
        os.utime(self._fd, (now, now))
        return True

    def fence(self) -> None:
        """Right before a publish: raise RunFailed unless the lock file still carries our token. A holder
        stopped past the stale bound and taken over finds out here, before it changes anything."""
        if self.lost is None and not self._ours():
            self.heartbeat.lost = f"{self.heartbeat.what} was taken over by another run"
        if self.lost:
            raise RunFailed(f"{self.lost}: this run publishes nothing more")

    def release(self) -> None:
        """Remove our lock file under our own claim, so a taker that judged us gone cannot be racing us."""
        self.heartbeat.stop()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        claim = self.path.with_name(f"{self.path.name}.claim-{self.token}")
        if self._ours() and self._create(claim):
            try:
                if self._ours():
                    self.path.unlink(missing_ok=True)
            finally:
                self._drop(claim)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
