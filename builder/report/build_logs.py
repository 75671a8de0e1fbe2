"""``modlib logs MODULE``: a module's build logs, found through its build records (the log lies beside
each record on the volume, a pod's log copied there by the runner), so nobody has to know the layout."""

from __future__ import annotations

import time
from pathlib import Path

from builder.errors import RunFailed
from builder.execute import records
from builder.layout import Layout
from builder.plan.graph import NodeKey


def runs(layout: Layout, key: NodeKey) -> list[dict]:
    """Every recorded run of the module, oldest first."""
    return records.every(layout, *key)


def last_log(layout: Layout, key: NodeKey) -> Path:
    """The log of the module's last run; a record whose log is gone is a failed look-up, not bad input."""
    found = runs(layout, key)
    if not found:
        raise RunFailed(f"{'/'.join(key)}: no build record")
    log = Path(found[-1]["log"])
    if not log.is_file():
        raise RunFailed(f"{log}: the last build log of {'/'.join(key)} is gone")
    return log


def run_lines(found: list[dict]) -> list[str]:
    """One line per run for ``--all``: when, how it ended, how long, who built it, where its log is."""
    out = []
    for run in found:
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(run["start"]))
        took = f"{run['end'] - run['start']:.1f} s" if run.get("end") is not None else "did not finish"
        out.append(f"{when}  exit {run['exit_code']}  {took}  {run['executor']} on {run['where']}  {run['log']}")
    return out
