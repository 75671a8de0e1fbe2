"""Build records on the volume: one JSON per node run, with its log beside it, for status and audits."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from builder.build.command import slug


@dataclass
class Record:
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
    host: str = socket.gethostname()
    executor: str = "local"


def records_dir(root: Path) -> Path:
    return root / ".modlib" / "records"


def new_log_path(root: Path, tree: str, module: str, start: float) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(start)) + f"-{os.getpid()}"
    return records_dir(root) / tree / slug(module) / f"{stamp}.log"


def write(root: Path, record: Record) -> Path:
    path = Path(record.log).with_suffix(".json")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(asdict(record), indent=2, sort_keys=True))
    os.replace(tmp, path)
    return path


def latest(root: Path, tree: str, module: str) -> dict | None:
    folder = records_dir(root) / tree / slug(module)
    files = sorted(folder.glob("*.json")) if folder.is_dir() else []
    return json.loads(files[-1].read_text()) if files else None


def tail(log: str, lines: int = 15) -> str:
    try:
        with open(log, errors="replace") as fh:
            return "".join(fh.readlines()[-lines:])
    except OSError:
        return ""


def last_run_path(root: Path) -> Path:
    return root / ".modlib" / "runs" / "last.json"


def write_last_run(root: Path, summary: dict) -> None:
    path = last_run_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name("last.json.tmp")
    tmp.write_text(json.dumps(summary, indent=2, sort_keys=True))
    os.replace(tmp, path)


def read_last_run(root: Path) -> dict | None:
    try:
        return json.loads(last_run_path(root).read_text())
    except (FileNotFoundError, ValueError):
        return None


def all_latest(root: Path) -> Iterator[dict]:
    base = records_dir(root)
    for folder in sorted(base.glob("*/*")) if base.is_dir() else []:
        files = sorted(folder.glob("*.json"))
        if files:
            yield json.loads(files[-1].read_text())
