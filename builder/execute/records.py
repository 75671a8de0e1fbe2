"""Build records on the volume: one JSON per node run, with its log beside it, for status and audits."""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from builder import jsonfile
from builder.layout import Layout


@dataclass
class Record:
    """One node run: what ran (command, easyconfig digest), how it ended, and who ran it: the executor,
    the host or pod that built (``where``) and the runner's host that recorded it (``host``)."""

    module: str
    tree: str
    target: str
    easyconfig: str
    sha256: str
    command: list[str]
    exit_code: int | None
    start: float
    end: float | None
    log: str
    executor: str
    where: str
    host: str = field(default_factory=socket.gethostname)


def new_log_path(layout: Layout, tree: str, module: str, start: float) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(start)) + f"-{os.getpid()}"
    return layout.records(tree, module) / f"{stamp}.log"


def write(record: Record) -> Path:
    """The record goes beside its log, under the same name."""
    path = Path(record.log).with_suffix(".json")
    jsonfile.write(path, asdict(record), indent=2, sort_keys=True)
    return path


def latest(layout: Layout, tree: str, module: str) -> dict | None:
    folder = layout.records(tree, module)
    files = sorted(folder.glob("*.json")) if folder.is_dir() else []
    return json.loads(files[-1].read_text()) if files else None


def tail(log: str, lines: int = 15) -> str:
    try:
        with open(log, errors="replace") as fh:
            return "".join(fh.readlines()[-lines:])
    except OSError:
        return ""


def write_last_run(layout: Layout, summary: dict) -> None:
    jsonfile.write(layout.last_run(), summary, indent=2, sort_keys=True)


def read_last_run(layout: Layout) -> dict | None:
    return jsonfile.read(layout.last_run())
