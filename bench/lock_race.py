"""Many processes contend for the run lock; never may two hold it at once.

``--workers`` processes each fork one contender after another (a real process per attempt, with its own
pid, as ``modlib build`` runs are) until ``--trials`` holds happened. A contender that gets the lock
records it twice, independently of the lock: it creates a marker file with O_EXCL (failing if another
holder's marker is there) and appends its hold's start and end (the system's monotonic clock) to a
shared log, which must show no overlaps. Every ``--crash-every``-th holder dies without releasing (its
lock stays behind, its process is dead), so takeovers by several contenders at once are part of the
race. ``--code`` runs another checkout's lock, to compare implementations.

Usage::

    .venv/bin/python -m bench.lock_race --trials 3000 [--code OTHER_CHECKOUT] --json lock_race.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _hold(root: Path, hold: float, crash: bool) -> int:
    """One contender, in a forked process: take the lock once or give up at once."""
    from builder.errors import Locked
    from builder.execute.lock import RunLock
    from builder.layout import Layout

    lock = RunLock(Layout(root / "library"), holder="race", stale_after=60, heartbeat=30, warn=lambda _: None)
    try:
        lock.acquire()
    except Locked:
        return 1
    start, double = time.monotonic(), False
    try:
        os.close(os.open(root / "inside", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        double = True
    time.sleep(hold)
    if not double:
        os.unlink(root / "inside")
    line = json.dumps({"start": start, "end": time.monotonic(), "double": double,
                       "took_over": lock.took_over is not None}) + "\n"
    with open(root / "holds.jsonl", "a") as log:
        log.write(line)
    if crash:
        os._exit(0)  # dies holding the lock: the next holder must take it over
    lock.release()
    return 0


def _work(root: Path, hold: float, crash_every: int, seed: int) -> None:
    """A worker: fork contenders one after another until the parent says stop."""
    rng = random.Random(seed)
    while not (root / "stop").exists():
        crash = rng.randrange(crash_every) == 0
        pid = os.fork()
        if pid == 0:
            code = 2
            try:
                code = _hold(root, hold, crash)
            finally:
                os._exit(code)
        os.waitpid(pid, 0)
        time.sleep(rng.uniform(0, hold))


def race(trials: int, workers: int = 8, hold: float = 0.002, crash_every: int = 5,
         timeout: float = 600.0, code: Path = REPO) -> dict:
    """Run the race in a temporary folder with the ``builder`` package of checkout ``code``; what happened."""
    with tempfile.TemporaryDirectory(prefix="modlib-lock-race-") as tmp:
        root = Path(tmp)
        (root / "holds.jsonl").touch()
        t0 = time.monotonic()
        env = {**os.environ, "PYTHONPATH": str(code)}
        procs = [subprocess.Popen([sys.executable, __file__, "--worker", str(root), str(hold), str(crash_every),
                                   str(seed)], env=env) for seed in range(workers)]
        while len((root / "holds.jsonl").read_text().splitlines()) < trials and time.monotonic() - t0 < timeout:
            time.sleep(0.05)
        (root / "stop").touch()
        for p in procs:
            p.wait()
        holds = [json.loads(line) for line in (root / "holds.jsonl").read_text().splitlines()]
    return summarize(holds, workers, time.monotonic() - t0)


def summarize(holds: list[dict], workers: int, seconds: float) -> dict:
    spans = sorted((h["start"], h["end"]) for h in holds)
    overlaps = sum(1 for (_, end), (start, _) in itertools.pairwise(spans) if start < end)
    return {"trials": len(holds), "workers": workers, "seconds": round(seconds, 1),
            "double_holders": sum(h["double"] for h in holds), "overlapping_holds": overlaps,
            "takeovers": sum(h["took_over"] for h in holds)}


def main() -> None:
    if sys.argv[1:2] == ["--worker"]:
        root, hold, crash_every, seed = sys.argv[2:6]
        _work(Path(root), float(hold), int(crash_every), int(seed))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=3000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--code", type=Path, default=REPO, help="the checkout whose lock races (default: this one)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = race(args.trials, args.workers, code=args.code)
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
