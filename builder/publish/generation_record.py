"""Generation records: every file a generation of the live view holds, recorded when it is made.

What notebooks read (module files, ``env.sh``, the kernels, the catalogue, the spider caches) is the live
generation, and a publish takes what did not change from it. Module files are hard links to the store's,
covered by their modules' integrity records (verify checks the live view's against them); everything else
a generation holds, its ``.modulerc.lua`` files included, is covered by its own record,
``views/<generation>/record.jsonl``, written after the generation is complete and before the swap: the
header line, then one line per entry (as integrity records hold a prefix's). ``modlib verify`` compares
each generation with its record, and a publish refuses to start from a live generation that differs.

Upgrades: generations made before records existed have none. A generation is required to have one when
its name (the time it was made, to the nanosecond) is not older than ``RECORDS_SINCE``; an older one is
"unrecorded", not damaged, and the next publish makes a recorded one. Modules stored before integrity
records existed are listed in the first generation record (``unrecorded``), which later records carry
forward while they stay so: any other module without an integrity record is damage.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from builder.jsonfile import Garbled, read_first_line
from builder.layout import Layout
from builder.publish.integrity import Found, check_prefix, describe, matches, read_entries, walk, write_lines

#: Bumped when a record's shape changes; a reader refuses shapes it does not know.
VERSION = 1

#: Generations made from this moment on carry a record (generation names start with their UTC time).
RECORDS_SINCE = "20261207T000000"

def path(layout: Layout, gen: Path) -> Path:
    return layout.view_record(gen)


def required(gen: Path) -> bool:
    return gen.name >= RECORDS_SINCE


def read_header(layout: Layout, gen: Path) -> dict | None:
    """The record's first line, None when the generation has none; Garbled when it cannot be read."""
    record = path(layout, gen)
    header = read_first_line(record, "generation record")
    if header is None:
        return None
    if header.get("version") != VERSION or not isinstance(header.get("unrecorded"), list):
        raise Garbled(record, f"not a generation record of version {VERSION}")
    return header


def legacy(layout: Layout, tree: str, module: str) -> bool:
    """Whether a module without an integrity record was stored before records existed: the live
    generation's record lists it, or the live generation itself predates generation records (or there is
    none yet): then the library has not been published by this version, and its next publish lists them."""
    live = layout.live()
    if not os.path.lexists(live) or not required(live.resolve()):
        return True
    try:
        header = read_header(layout, live.resolve())
    except Garbled:
        return False
    return header is not None and f"{tree}/{module}" in header["unrecorded"]


def _modules_without_record(layout: Layout, gen: Path) -> set[str]:
    """``tree/module`` of each module file in ``gen`` whose module has no integrity record."""
    out = set()
    trees = sorted(p.name for p in (gen / "trees").iterdir()) if (gen / "trees").is_dir() else []
    for tree in trees:
        base = layout.view_tree(gen, tree)
        for file in base.rglob("*.lua") if base.is_dir() else []:
            module = str(file.relative_to(base))[: -len(".lua")]
            if file.name != ".modulerc.lua" and not layout.integrity(tree, module).exists():
                out.add(f"{tree}/{module}")
    return out


def write(layout: Layout, gen: Path) -> Path:
    """Record every entry of the complete generation ``gen``, before it is swapped in. A file whose size,
    mode and mtime match the live generation's record of the same path keeps that digest: module files
    and reused caches are hard links, so a publish hashes only what it wrote."""
    previous = layout.live().resolve() if os.path.lexists(layout.live()) else None
    try:
        before = read_header(layout, previous) if previous is not None else None
        known = {e["path"]: e for e in read_entries(path(layout, previous))} if before and previous else {}
    except Garbled:
        before, known = None, {}
    unrecorded = _modules_without_record(layout, gen)
    if before is not None:
        unrecorded &= set(before["unrecorded"])
    record = path(layout, gen)
    described: list[tuple[str, dict]] = []

    def visit(entry: Found) -> None:
        old = known.get(entry.path)
        if old is not None and old["type"] == "file" and matches(entry, old, thorough=False):
            described.append((entry.path, {k: v for k, v in old.items() if k != "path"}))
        else:
            described.append((entry.path, describe(entry)))

    walk(gen, visit, lambda rel: rel == record.name or rel.startswith(f".{record.name}.") or not _covered(rel))
    header = {"version": VERSION, "generation": gen.name, "recorded": time.time(), "unrecorded": sorted(unrecorded)}
    tmp = record.with_name(f".{record.name}.tmp")
    write_lines(tmp, header, described)
    os.replace(tmp, record)
    return record


def check(layout: Layout, gen: Path, thorough: bool) -> list[str]:
    """What differs between the generation and its record; a missing record only counts for a generation
    made since records exist."""
    record = path(layout, gen)
    try:
        header = read_header(layout, gen)
        entries = read_entries(record) if header else []
    except Garbled as err:
        return [str(err)]
    if header is None:
        return [f"generation {gen.name} has no record ({record} is missing)"] if required(gen) else []
    return check_prefix(gen, entries, thorough, ignore=lambda rel: rel == record.name or not _covered(rel))


_MODULE_TREE = re.compile(r"trees/[^/]+/modules/all/")


def _covered(rel: str) -> bool:
    """Whether the record covers this path of a generation: all but the module trees' module files and
    folders, which are hard links to the store's files and are covered by their modules' integrity records
    (and the live view's check against them); the trees' ``.modulerc.lua`` files are the generation's own."""
    return not _MODULE_TREE.match(rel) or rel.endswith("/.modulerc.lua")
