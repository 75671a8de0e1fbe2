"""Build records on the volume: one JSON per node run, with its log beside it, for status and audits."""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from builder import jsonfile
from builder.digests import file_sha256
from builder.layout import Layout, slug

#: In a record's ``where``: the build ran without a sandbox (library.yaml's sandbox.unisolated allowed it).
UNISOLATED = "unisolated"


@dataclass
class Record:
    """One node run: what ran (command, easyconfig digest), how it ended, and who ran it: the executor,
    the host or pod that built (``where``) and the runner's host that recorded it (``host``). The run
    also records what the build was made with (EasyBuild's version, the hooks' digest, the effective
    options, the sources as checked before the build), so an audit needs neither the log nor the repo.
    Records written before these fields existed lack them."""

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
    easybuild_version: str = ""
    hooks_sha256: str = ""
    options: dict = field(default_factory=dict)
    sources: list[dict] = field(default_factory=list)  # {"file": subdir/filename, "checksum": the verified spec}
    # What the build was given (execute/resources.py) and what it used, as its cgroup (or rusage) measured it
    memory_bytes: int | None = None  # asked for (a Job's request and limit; the local cgroup's limit)
    cpus: int | None = None  # asked for; eb --parallel
    peak_memory_bytes: int | None = None
    cpu_seconds: float | None = None
    oom_kills: int | None = None  # the kernel's out-of-memory kills in the build's cgroup
    measured_by: str = ""  # "cgroup v2", "cgroup v1" or "rusage": how far the figures above can be trusted
    after_oom: str = ""  # this run retries the one recorded here, killed for memory, with twice the memory


def made_with(hooks: Path) -> dict[str, str]:
    """What every build of a run is made with, beyond its easyconfig: the runner's EasyBuild (the builder
    image's, in a cluster) and the hooks file passed to every ``eb``."""
    from importlib import metadata  # here: ``status`` imports this module, and needs no versions

    try:
        version = metadata.version("easybuild-framework")
    except metadata.PackageNotFoundError:
        version = ""
    return {"easybuild_version": version, "hooks_sha256": file_sha256(hooks) or ""}


def new_log_path(layout: Layout, tree: str, module: str, start: float) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(start)) + f"-{os.getpid()}"
    return layout.records(tree, module) / f"{stamp}.log"


def write(record: Record) -> Path:
    """The record goes beside its log, under the same name."""
    path = Path(record.log).with_suffix(".json")
    jsonfile.write(path, asdict(record), indent=2, sort_keys=True)
    return path


def latest(layout: Layout, tree: str, module: str) -> dict | None:
    runs = every(layout, tree, module)
    return runs[-1] if runs else None


def every(layout: Layout, tree: str, module: str) -> list[dict]:
    """Every recorded run of a node, oldest first (record names start with their UTC start time)."""
    folder = layout.records(tree, module)
    files = sorted(folder.glob("*.json")) if folder.is_dir() else []
    return [json.loads(path.read_text()) for path in files]


def read(path: str | Path) -> dict | None:
    """One record by its path (as a manifest names it), or None when it is gone or unreadable."""
    return jsonfile.read(Path(path))


#: How much of a log's end ``tail`` reads: a build decides how much it prints.
TAIL_BYTES = 64 << 10


def tail(log: str, lines: int = 15) -> str:
    """The log's last lines, from at most its last TAIL_BYTES."""
    try:
        with open(log, "rb") as fh:
            fh.seek(max(0, os.fstat(fh.fileno()).st_size - TAIL_BYTES))
            data = fh.read(TAIL_BYTES)
    except OSError:
        return ""
    return "".join(data.decode(errors="replace").splitlines(keepends=True)[-lines:])


def write_last_run(layout: Layout, summary: dict) -> None:
    jsonfile.write(layout.last_run(), summary, indent=2, sort_keys=True)


#: What a run's summary must hold for status to report it, and its types.
_SUMMARY: dict[str, type | tuple[type, ...]] = {
    "finished": (int, float), "host": str, "seconds": (int, float), "built": list, "failed": list, "blocked": dict}


def read_last_run(layout: Layout) -> dict | None:
    """The last run's summary, None before the first; jsonfile.Garbled when it is torn or of another shape."""
    path = layout.last_run()
    summary = jsonfile.read_object(path)
    bad = [k for k, kind in _SUMMARY.items() if summary is not None and not isinstance(summary.get(k), kind)]
    if bad:
        raise jsonfile.Garbled(path, f"not a run summary ({', '.join(bad)} missing or malformed)")
    return summary


def of_software(layout: Layout, name: str) -> list[dict]:
    """Every recorded run of any version of software ``name``, in any tree, oldest first by start."""
    top = layout.records("tree", "module").parent.parent
    files = top.glob(f"*/{slug(name)}--*/*.json") if top.is_dir() else []
    runs = [jsonfile.read(path) for path in files]
    return sorted((r for r in runs if r), key=lambda r: r["start"])
