"""``modlib verify``: every published module checked against its integrity record, and against ``live``.

A module is published when its module file is in the store, or when the store lost a file that
its records (the easyconfig manifest and the integrity record) say was published. Each one is checked
for its module file (altered or gone), its install prefix (entries deleted, altered, added) and
its place in the live view. No planning, no EasyBuild: only the volume and the records, so it runs
where notebooks run and costs file reads only. Modules are checked in threads, because on a network
file system each check waits on many small reads.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from builder.errors import BadInput
from builder.layout import Layout, slug
from builder.plan.graph import NodeKey
from builder.publish.integrity import check_module_file, check_prefix, read_entries, read_header, sha256

#: Modules checked at once: the work is waiting on the file system, not the CPU (through a 1 ms FUSE
#: mount, 1,099 modules took 37 s with 8 threads and 24 s with 32; see docs/performance.md).
THREADS = 32

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class Finding:
    """One published module: what is damaged, whether ``live`` lacks it, whether it has a record at all."""

    tree: str
    module: str
    problems: list[str] = field(default_factory=list)
    not_live: str | None = None
    recorded: bool = True

    @property
    def damaged(self) -> bool:
        return bool(self.problems or self.not_live)

    def as_json(self) -> dict:
        return {"tree": self.tree, "module": self.module, "not_live": self.not_live is not None,
                "problems": self.problems + ([self.not_live] if self.not_live else [])}


@dataclass
class Report:
    findings: list[Finding]
    seconds: float

    def damaged(self) -> list[Finding]:
        return [f for f in self.findings if f.damaged]

    def unrecorded(self) -> list[Finding]:
        return [f for f in self.findings if not f.recorded]

    def as_json(self) -> dict:
        return {"checked": len(self.findings), "seconds": round(self.seconds, 2),
                "damaged": [f.as_json() for f in self.damaged()],
                "unrecorded": [{"tree": f.tree, "module": f.module} for f in self.unrecorded()]}


def in_threads(work: Callable[[T], R], items: Iterable[T]) -> list[R]:
    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(work, items))


def store_modules(layout: Layout, tree: str) -> list[str]:
    """Module names of the module files in a tree's store (``Name/version``; hidden ones keep their dot)."""
    base = layout.store(tree)
    files = sorted(base.rglob("*.lua")) if base.is_dir() else []
    return [str(p.relative_to(base))[: -len(".lua")] for p in files if p.name != ".modulerc.lua"]


def published(layout: Layout, tree: str) -> list[str]:
    """The store's modules, plus those whose module file the store lost since they were published."""
    stored = store_modules(layout, tree)
    known = {slug(m) for m in stored}
    pattern = layout.integrity(tree, "*")
    lost = []
    for record in sorted(pattern.parent.glob(pattern.name)) if pattern.parent.is_dir() else []:
        header = None if record.stem in known else read_header(record)
        if header and layout.manifest(tree, header["module"]).is_file():  # else taken back by a failed publish
            lost.append(header["module"])
    return sorted(stored + lost)


def check(layout: Layout, key: NodeKey, thorough: bool) -> Finding:
    tree, module = key
    record = layout.integrity(tree, module)
    header = read_header(record)
    if header is None:
        return Finding(tree, module, recorded=False)
    problems = [p for p in [check_module_file(header, thorough)] if p]
    problems += check_prefix(Path(header["prefix"]), read_entries(record), thorough)
    return Finding(tree, module, problems, _not_live(layout, header))


def _not_live(layout: Layout, header: dict) -> str | None:
    """Why ``live`` does not show the recorded module file, or None: its file there is the store's (the
    same inode, checked with it) or holds the recorded bytes."""
    live = layout.view_tree(layout.live(), header["tree"]) / f"{header['module']}.lua"
    try:
        seen = live.stat()
    except FileNotFoundError:
        return f"published but not in live ({live} is missing)"
    try:
        if os.path.samestat(seen, Path(header["module_file"]["path"]).stat()):
            return None
    except FileNotFoundError:
        pass
    if sha256(live) != header["module_file"]["sha256"]:
        return f"published but not live: {live} holds another module file than the store"
    return None


def select(layout: Layout, trees: Iterable[str], names: list[str]) -> list[NodeKey]:
    """The published (tree, module) pairs that ``names`` mean: full module names, or bare software names
    (every published version); all of them without names. An unknown name is bad input."""
    keys = [(tree, module) for tree in trees for module in published(layout, tree)]
    if not names:
        return keys
    wanted = [k for k in keys if k[1] in names or k[1].split("/")[0] in names]
    unknown = [n for n in names if not any(n in (m, m.split("/")[0]) for _, m in wanted)]
    if unknown:
        raise BadInput("modlib verify", f"not published: {', '.join(unknown)}")
    return wanted


def verify(layout: Layout, keys: list[NodeKey], thorough: bool = True) -> Report:
    t0 = time.monotonic()
    findings = in_threads(lambda key: check(layout, key, thorough), keys)
    return Report(findings, time.monotonic() - t0)


def module_file_stats(layout: Layout, trees: Iterable[str]) -> dict[NodeKey, tuple[int, int, int]]:
    """(inode, size, mtime) of every store module file: what moved since the last check."""
    out = {}
    for tree in trees:
        for module in store_modules(layout, tree):
            st = layout.module_file(tree, module).lstat()
            out[(tree, module)] = (st.st_ino, st.st_size, st.st_mtime_ns)
    return out


def altered_module_files(layout: Layout, keys: Iterable[NodeKey]) -> list[str]:
    """``tree/module`` of each of these store module files whose bytes differ from its record: a publish
    would make it live again. Every file is read in full; module files are small."""
    def altered(key: NodeKey) -> bool:
        header = read_header(layout.integrity(*key))
        return bool(header and check_module_file(header))

    keys = list(keys)
    return [f"{tree}/{module}" for (tree, module), bad in zip(keys, in_threads(altered, keys), strict=True) if bad]
