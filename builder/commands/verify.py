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
import stat
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from builder.errors import BadInput
from builder.hostile_files import NotRegular
from builder.jsonfile import Garbled
from builder.layout import Layout, slug
from builder.plan.graph import NodeKey
from builder.publish import generation_record
from builder.publish.integrity import (
    check_manifest,
    check_module_file,
    check_prefix,
    read_entries,
    read_header,
    sha256,
)
from builder.publish.live import read_manifest
from builder.publish.view import generations

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
    """``library``: damage that is no one module's: generations that differ from their records, files in
    the store that no record names."""

    findings: list[Finding]
    seconds: float
    library: list[str] = field(default_factory=list)

    def damaged(self) -> list[Finding]:
        return [f for f in self.findings if f.damaged]

    def clean(self) -> bool:
        return not self.damaged() and not self.library

    def unrecorded(self) -> list[Finding]:
        return [f for f in self.findings if not f.recorded]

    def as_json(self) -> dict:
        return {"checked": len(self.findings), "seconds": round(self.seconds, 2),
                "damaged": [f.as_json() for f in self.damaged()], "library": self.library,
                "unrecorded": [{"tree": f.tree, "module": f.module} for f in self.unrecorded()]}


def in_threads(work: Callable[[T], R], items: Iterable[T]) -> list[R]:
    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(work, items))


def store_modules(layout: Layout, tree: str, base: Path | None = None) -> list[str]:
    """Module names of the module files in a tree's store, or in the module tree ``base`` (``Name/version``;
    hidden ones keep their dot)."""
    base = layout.store(tree) if base is None else base
    files = sorted(base.rglob("*.lua")) if base.is_dir() else []
    return [str(p.relative_to(base))[: -len(".lua")] for p in files if p.name != ".modulerc.lua"]


def published(layout: Layout, tree: str) -> list[str]:
    """The store's modules, plus those whose module file the store lost since they were published."""
    stored = store_modules(layout, tree)
    known = {slug(m) for m in stored}
    pattern = layout.integrity(tree, "*")
    lost = []
    for record in sorted(pattern.parent.glob(pattern.name)) if pattern.parent.is_dir() else []:
        try:
            header = None if record.stem in known else read_header(record)
        except Garbled:
            continue  # no module name to go by; it names nothing then (a planted record)
        if header and layout.manifest(tree, header["module"]).is_file():  # else taken back by a failed publish
            lost.append(header["module"])
    return sorted(stored + lost)


def check(layout: Layout, key: NodeKey, thorough: bool) -> Finding:
    """One published module against its integrity record. A module without one is damage, but for those
    stored before records existed (generation_record.legacy_modules); an unreadable record is damage."""
    tree, module = key
    record = layout.integrity(tree, module)
    try:
        header = read_header(record)
        entries = read_entries(record) if header else []
        read_manifest(layout, tree, module)
    except Garbled as err:
        return Finding(tree, module, [str(err)])
    if header is None:
        if generation_record.legacy(layout, tree, module):
            return Finding(tree, module, recorded=False)
        return Finding(tree, module, [f"no integrity record ({record} is missing)"])
    problems = [p for p in [check_module_file(header, thorough), check_manifest(header)] if p]
    problems += check_prefix(Path(header["prefix"]), entries, thorough)
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
    try:
        same = sha256(live) == header["module_file"]["sha256"]
    except NotRegular as err:
        return f"published but not live: {err}"
    if not same:
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


def verify(layout: Layout, keys: list[NodeKey], thorough: bool = True, trees: Iterable[str] = ()) -> Report:
    """The modules ``keys``; with ``trees``, also every generation against its record and the trees' stores
    for files no record names."""
    t0 = time.monotonic()
    findings = in_threads(lambda key: check(layout, key, thorough), keys)
    trees = list(trees)
    library = library_damage(layout, trees, thorough, generations(layout)) if trees else []
    return Report(findings, time.monotonic() - t0, library)


def library_damage(layout: Layout, trees: list[str], thorough: bool, gens: list[Path]) -> list[str]:
    """The generations ``gens`` against their records (the live one must have one), and the stores'
    strays. A generation of a publish killed before its record was written is not live and has none."""
    live = layout.live().resolve() if os.path.lexists(layout.live()) else None
    problems = []
    for gen in gens:
        if gen == live or generation_record.path(layout, gen).exists():
            problems += generation_record.check(layout, gen, thorough)
    return problems + (_unpublished_in_live(layout, trees) if live in gens else []) + strays(layout, trees)


def _unpublished_in_live(layout: Layout, trees: list[str]) -> list[str]:
    """Module files in ``live`` of modules that are not published (no store file, no integrity record):
    the generation record leaves module files to the integrity records, so one planted there is found here."""
    out = []
    for tree in trees:
        base = layout.view_tree(layout.live(), tree)
        planted = set(store_modules(layout, tree, base)) - set(published(layout, tree))
        out += [f"{base}/{module}.lua is in live but {tree}/{module} is not published" for module in sorted(planted)]
    return out


def strays(layout: Layout, trees: list[str]) -> list[str]:
    """What a tree's store holds that no record names: anything but folders, module files (each checked
    against its own record) and ``default`` links to a module file beside them. A publish would link it
    into the next generation."""
    out = []
    for tree in trees:
        base = layout.store(tree)
        for path in sorted(base.rglob("*")) if base.is_dir() else []:
            st = path.lstat()
            if stat.S_ISDIR(st.st_mode):
                continue
            if stat.S_ISREG(st.st_mode) and path.name.endswith(".lua") and path.name != ".modulerc.lua":
                continue
            if stat.S_ISLNK(st.st_mode) and path.name == "default" and "/" not in (target := os.readlink(path)) \
                    and target.endswith(".lua") and (path.parent / target).is_file():
                continue
            out.append(f"{path} is in the store but no integrity record names it")
    return out


def module_file_stats(layout: Layout, trees: Iterable[str]) -> dict[NodeKey, tuple[int, int, int]]:
    """(inode, size, mtime) of every store module file: what moved since the last check."""
    out = {}
    for tree in trees:
        for module in store_modules(layout, tree):
            st = layout.module_file(tree, module).lstat()
            out[(tree, module)] = (st.st_ino, st.st_size, st.st_mtime_ns)
    return out


def altered_module_files(layout: Layout, keys: Iterable[NodeKey]) -> list[str]:
    """``tree/module: why`` of each of these store module files that differs from its record, or has no
    record (but a legacy module) or an unreadable one: a publish would make it live. Every file is read in
    full; module files are small."""
    def altered(key: NodeKey) -> str | None:
        try:
            header = read_header(layout.integrity(*key))
        except Garbled as err:
            return str(err)
        if header is None:
            return None if generation_record.legacy(layout, *key) else "no integrity record"
        return check_module_file(header) or check_manifest(header)

    keys = list(keys)
    return [f"{tree}/{module}: {why}" for (tree, module), why in zip(keys, in_threads(altered, keys), strict=True)
            if why]


def publish_blockers(layout: Layout, trees: list[str]) -> list[str]:
    """Damage a publish would carry into its generation beside the store's module files: the live
    generation (which a publish starts from) against its record, quickly, and the stores' strays."""
    live = layout.live().resolve() if os.path.lexists(layout.live()) else None
    return library_damage(layout, trees, False, [live] if live is not None and live.is_dir() else [])
