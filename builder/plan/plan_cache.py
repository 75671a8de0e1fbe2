"""A cache of whole plans, so that ``plan``, ``status`` and a no-op ``build`` whose inputs did not change
answer without importing or configuring EasyBuild (about 0.45 s of every such command otherwise).

What a plan depends on, and how each part is checked on a hit:

* by content, in the entry's key: modlib's planning code (the planner and every builder module it
  imports, found in their source: ``planning_code``), library.yaml and the settings read from it,
  every easystack, the hooks file, the files ``include-*`` options of entries and targets name (by
  content: EasyBuild imports them), EasyBuild's installed versions, its configuration files and
  ``EASYBUILD_*`` variables (``eb_inputs.py``), the working folder (an easystack may name a relative path);
* the robot paths' listings: every folder under them by inode and mtime, its listing re-read and
  compared by digest when either moved or when its mtime is too recent to trust (a file added in the
  same clock tick as the snapshot leaves the mtime unchanged);
* every easyconfig the planner parsed by size, mtime, inode and ctime, its sha256 compared when any
  moved (``os.utime`` can restore an mtime, never a ctime). That is more than the plan's own files: an
  easyconfig that gave a module name already taken by an earlier one (two easystack entries, or an entry
  and a dependency, naming different files of one module) is no node, yet the planner follows its
  dependencies, and an edit can give it a name of its own. Easyconfigs that were never parsed, such as
  a later robot path's file of the same name, are not read by content at all: the robot takes the
  first file by path, so only the folder listings (above) decide whether they could be;
* the installed state is not cached at all: ``installed`` is asked of the store again on every hit,
  exactly as the planner asks it.

Entries live in ``$MODLIB_CACHE``, which may be a shared volume: each is written to a temporary file
and renamed into place, and carries the MAC of its text under the folder's secret (``cache_files.py``):
a torn, edited or forged entry is ignored. Every store prunes the folder to the most recently used
entries.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from builder import jsonfile
from builder.cache_files import prune, read_entry, secret, sign, signed
from builder.digests import code_files, file_sha256
from builder.ebadapter import robot_folders
from builder.plan import entry_options
from builder.plan.eb_inputs import easybuild_inputs
from builder.plan.graph import Node, Plan
from builder.read.config import Settings, Target

#: 3: the entry is its body's MAC on the first line, then the body's JSON (checked without re-encoding).
FORMAT = 3
#: A folder or file whose timestamps are this close to the snapshot may have changed within the same tick.
RACY_NS = 2_000_000_000
#: The module whose code, with that of every builder module it imports, decides what a plan holds.
PLANNER = "builder.plan.planner"
_EASYBUILD = ("easybuild-framework", "easybuild-easyblocks", "easybuild-easyconfigs")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _json_digest(data: object) -> str:
    return _sha(json.dumps(data, sort_keys=True).encode())


@functools.cache
def _easybuild_versions() -> tuple[str, ...]:
    """The installed EasyBuild, by its packages' metadata: importing EasyBuild is what the cache avoids.
    Read once per process (``status`` looks up one plan per target)."""
    from importlib import metadata

    versions = []
    for name in _EASYBUILD:
        try:
            versions.append(f"{name}={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{name}=none")
    return tuple(versions)


@functools.cache
def planning_code() -> tuple[Path, ...]:
    """modlib's files whose code decides what a plan holds: the planner's and every builder module's it
    imports at any depth. Once per process: its files are modlib's own."""
    return code_files(PLANNER)


def _stacks(targets: list[Target], easystack: Path | None) -> list[Path]:
    return [easystack] if easystack else [s for t in targets for s in t.easystacks]


def plan_key(settings: Settings, targets: list[Target], easystack: Path | None, robot: list[Path],
             named_files: tuple[Path, ...] = ()) -> str:
    """Everything a plan depends on that is read whole on every look-up, as one digest (``named_files``:
    the easyblocks, toolchains and naming schemes that entries and targets include)."""
    stacks = _stacks(targets, easystack)
    inputs = {
        "format": FORMAT, "code": [file_sha256(path) for path in planning_code()],
        "config": settings.config_sha256, "settings": repr((settings.root, settings.hooks,
                                                                 settings.easyconfig_paths, settings.targets)),
        "targets": [t.name for t in targets], "easystacks": [(str(s), file_sha256(s)) for s in stacks],
        "hooks": file_sha256(settings.hooks), "easybuild": _easybuild_versions(), "robot": [str(p) for p in robot],
        "easybuild_config": easybuild_inputs(),
        "cwd": os.getcwd(), "python": sys.prefix, "named": [(str(f), file_sha256(f)) for f in named_files],
    }
    return _json_digest(inputs)


def _listing(folder: str) -> str:
    try:
        return _json_digest(sorted(os.listdir(folder)))
    except OSError:
        return "gone"


def snapshot_folders(robot: list[Path]) -> list[list]:
    """Every folder under the robot paths (as EasyBuild's index walks them): path, inode, mtime, listing."""
    folders = []
    for top in robot:
        for path in robot_folders(str(top)):
            st = os.stat(path)
            folders.append([path, st.st_ino, st.st_mtime_ns, _listing(path)])
        if not os.path.isdir(top):
            folders.append([str(top), 0, 0, _listing(str(top))])
    return folders


def _file_stat(path: str) -> list[int]:
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns]


def _trusted(stamps: list[int], taken_ns: int) -> bool:
    return all(stamp < taken_ns - RACY_NS for stamp in stamps)


def folders_unchanged(folders: list[list], taken_ns: int) -> bool:
    for path, ino, mtime, listing in folders:
        try:
            st = os.stat(path)
        except OSError:
            if listing != "gone":
                return False
            continue
        if [st.st_ino, st.st_mtime_ns] != [ino, mtime] or not _trusted([mtime], taken_ns):
            if _listing(path) != listing:
                return False
    return True


def files_unchanged(files: list[list], taken_ns: int) -> bool:
    for path, stat, sha256 in files:
        try:
            now = _file_stat(path)
            if now != stat or not _trusted(stat[1:2] + stat[3:], taken_ns):
                if _sha(Path(path).read_bytes()) != sha256:
                    return False
        except OSError:
            return False
    return True


def _node_data(node: Node) -> list:
    return [node.tree, node.module, node.name, str(node.easyconfig), node.target, [list(d) for d in node.deps],
            node.sha256, node.hidden, [list(o) for o in node.options], node.moduleclass]


def _nodes(settings: Settings, rows: list[list]) -> list[Node]:
    """The cached nodes; ``installed`` asked of the store now, as the planner asks it."""
    trees = {row[0] for row in rows}
    installed = {t: settings.layout.installed(t, [row[1] for row in rows if row[0] == t]) for t in trees}
    return [Node(tree=tree, module=module, name=name, easyconfig=Path(easyconfig), target=target,
                 deps=tuple((t, m) for t, m in deps), installed=module in installed[tree], sha256=sha256,
                 hidden=hidden, options=tuple((k, entry_options.frozen(v)) for k, v in options),
                 moduleclass=moduleclass)
            for tree, module, name, easyconfig, target, deps, sha256, hidden, options, moduleclass in rows]


def _easyconfig_stamps(parsed: Mapping[Path, str]) -> list[list] | None:
    """Each parsed easyconfig's stat with the digest the planner read; None when one changed while
    planning (stat first, then the content: a change in between shows as a different digest)."""
    files = []
    for path, sha256 in sorted((str(p), d) for p, d in parsed.items()):
        try:
            stat = _file_stat(path)
            if _sha(Path(path).read_bytes()) != sha256:
                return None
        except OSError:
            return None
        files.append([path, stat, sha256])
    return files


class PlanCache:
    """One entry per (inputs key): load it when nothing moved, store a fresh plan otherwise."""

    def __init__(self, settings: Settings, targets: list[Target], easystack: Path | None, robot: list[Path]):
        self.settings = settings
        folders, files = entry_options.named_inputs(_stacks(targets, easystack))
        files += [f for t in targets for f in entry_options.included_files(t.options())]
        self.robot = robot + folders  # an entry's own robot path is watched as modlib's is
        self.key = plan_key(settings, targets, easystack, robot, tuple(files))
        folder = settings.cache_dir
        self.secret = secret(folder) if folder else None
        self.path = folder / f"plan-{self.key[:32]}.json" if folder and self.secret else None

    def load(self) -> Plan | None:
        """The cached plan, or None when there is none, it fails its MAC, or any input moved."""
        if self.path is None or self.secret is None:
            return None
        try:
            mac, _, text = read_entry(self.path).partition(b"\n")
            if not signed(self.secret, mac.decode(), text):
                return None
            body = json.loads(text)
            if body["key"] != self.key or not (folders_unchanged(body["folders"], body["taken_ns"]) and
                                               files_unchanged(body["files"], body["taken_ns"])):
                return None
            nodes = _nodes(self.settings, body["nodes"])
            return Plan(nodes=tuple(nodes), index={n.key: n for n in nodes})  # stored in the plan's order
        except (OSError, ValueError, KeyError, TypeError):
            return None  # missing, torn or edited: plan afresh

    def make(self, fresh: Callable[[], Plan]) -> Plan:
        """The fresh plan, stored with the robot paths' snapshot taken before it was made (what changes
        while planning shows as a change on the next look-up) and the stamps of the easyconfigs it read."""
        if self.path is None:
            return fresh()
        taken_ns = time.time_ns()
        folders = snapshot_folders(self.robot)
        plan = fresh()
        files = _easyconfig_stamps(plan.read)
        if files is not None:
            self._store({"key": self.key, "taken_ns": taken_ns, "folders": folders, "files": files,
                         "nodes": [_node_data(n) for n in plan.nodes]})
        return plan

    def _store(self, body: dict) -> None:
        assert self.path is not None and self.secret is not None
        try:
            text = json.dumps(body)
            jsonfile.write_text(self.path, f"{sign(self.secret, text.encode())}\n{text}")
            prune(self.path.parent)
        except OSError:
            pass  # a cache that cannot be written costs the next run its speed, never its result
