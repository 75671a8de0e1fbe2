"""Publication: a new generation of the live view, swapped in with one symlink rename.

What a notebook sees (module files, spider caches, featured index, kernels, the files it sources) lives in
``<root>/views/<generation>``, and notebooks reach it only through ``<root>/live``. A publish builds
a complete new generation beside the old one (module files are hard links to the store, which is
only ever changed by renames, so old generations keep their bytes), then renames a new symlink over
``live``: readers see the old view or the new one, never a mix. A publish killed half-way leaves an
unreferenced folder that the next publish removes.

A run publishes after every built node, so a publish must not cost more as the library grows. It
compares the store with what the live generation was made from (``publish.json``: each stored file's
inode, size and time) and has Lmod work only on the module names that changed: their part of their
tree's spider cache (builder/publish/spider_cache.py) and of the catalogue page's data
(builder/publish/catalogue.py), and the featured index and the kernels (builder/publish/kernels.py)
when a featured name or one with a kernel is among them. Everything else is taken from the live
generation as it is. A changed configuration, Lmod, library root or set of trees, or a live generation
without ``publish.json`` (or the catalogue's data), means a publish from scratch.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from builder.digests import code_files
from builder.layout import Layout
from builder.publish import catalogue, featured, generation_record, kernels, lmod, session, spider_cache
from builder.publish.live import read_manifest
from builder.publish.notebook_env import env_sh, lmodrc, modulepath
from builder.read.config import Settings

#: Generations kept besides the live one, for shells that resolved ``live`` a moment before a swap.
KEEP_PREVIOUS = 2


@functools.cache
def view_format() -> str:
    """The digest of the code that writes generations: view.py's and every builder module's it imports, and
    the page templates beside them. A modlib whose code differs publishes from scratch rather than reuse a
    live generation made the old way, and publishes even when no module changed: an upgrade reaches env.sh,
    kernel.sh and the kernels at its first run. Once per process, when a run first asks."""
    digest = hashlib.sha256()
    for path in (*code_files(__name__), *sorted(Path(__file__).parent.glob("*.html"))):
        digest.update(f"{path.relative_to(Path(__file__).parent.parent)}\n".encode() + path.read_bytes())
    return digest.hexdigest()[:16]


#: A store listing: path below the tree's store -> [inode, size, mtime_ns] of a file, "->target" of a
#: link, or "dir".
Listing = dict[str, "list[int] | str"]


@dataclass(frozen=True)
class Previous:
    """The live generation a publish starts from, and what it was made from (its ``publish.json``)."""

    gen: Path
    files: dict[str, Listing]  # tree -> its store's listing
    featured_warnings: dict[str, list[str]]  # target -> the warnings its featured index and kernels gave


@dataclass(frozen=True)
class TreeChange:
    """What a publish redoes in one tree: all of it (``remake``: no previous generation to start from,
    or a file right in the tree changed), else the top-level names whose files differ (none: unchanged)."""

    remake: bool
    names: tuple[str, ...] = ()

    @property
    def unchanged(self) -> bool:
        return not self.remake and not self.names


REMAKE = TreeChange(remake=True)


def _listing(base: Path) -> Listing:
    """The store of one tree, walked with scandir (a file's type comes with its name; one lstat per file)."""
    out: Listing = {}
    pending = [""] if base.is_dir() else []
    while pending:
        rel = pending.pop()
        with os.scandir(base / rel if rel else base) as entries:
            for entry in entries:
                key = f"{rel}/{entry.name}" if rel else entry.name
                if entry.is_symlink():
                    out[key] = "->" + os.readlink(entry.path)
                elif entry.is_dir():
                    out[key] = "dir"
                    pending.append(key)
                else:
                    st = entry.stat(follow_symlinks=False)
                    out[key] = [entry.inode(), st.st_size, st.st_mtime_ns]
    return out


def _digest(settings: Settings, listings: dict[str, Listing]) -> str:
    digest = hashlib.sha256(f"{settings.config_sha256}\n{view_format()}\n".encode())
    for tree in sorted(listings):
        for rel, value in sorted(listings[tree].items()):
            if value != "dir":
                detail = value if isinstance(value, str) else f"{value[1]}:{value[2]}"
                digest.update(f"{tree}/modules/all/{rel}:{detail}\n".encode())
    return digest.hexdigest()


def inputs_digest(settings: Settings) -> str:
    """Everything a view is made from: the config and the store's module files."""
    return _digest(settings, {tree: _listing(settings.layout.store(tree)) for tree in settings.trees()})


def current_inputs(layout: Layout) -> str | None:
    try:
        return json.loads(layout.view_inputs(layout.live()).read_text())["digest"]
    except (OSError, ValueError, KeyError):
        return None


def _matching(dest: Path, listing: Listing) -> set[str]:
    """What ``dest`` (a recycled tree of an old generation) already holds as ``listing`` wants it; the rest
    of it is removed. A file matches when it is a hard link to the stored file (same inode)."""
    matching: set[str] = set()
    pending = [""] if dest.is_dir() else []
    while pending:
        rel = pending.pop()
        stale = []
        with os.scandir(dest / rel if rel else dest) as entries:
            for entry in entries:
                key = f"{rel}/{entry.name}" if rel else entry.name
                want = listing.get(key)
                if entry.is_symlink():
                    ok = want == "->" + os.readlink(entry.path)
                elif entry.is_dir():
                    ok = want == "dir"
                else:
                    ok = isinstance(want, list) and want[0] == entry.inode()
                if ok:
                    matching.add(key)
                    if want == "dir":
                        pending.append(key)
                else:
                    stale.append(entry)
        for entry in stale:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
    return matching


def _mirror(src: Path, dest: Path, listing: Listing) -> None:
    """Make ``dest`` hold what ``listing`` says the store ``src`` holds: hard links to its files, its links
    and folders. Only what a recycled ``dest`` lacks is made."""
    present = _matching(dest, listing)
    dest.mkdir(parents=True, exist_ok=True)
    for rel in sorted(listing):  # a folder sorts before what it holds
        value = listing[rel]
        if rel in present:
            continue
        if value == "dir":
            os.mkdir(dest / rel)
        elif isinstance(value, str):
            os.symlink(value[2:], dest / rel)
        else:
            os.link(src / rel, dest / rel)


def _modulerc(settings: Settings, gen: Path, trees: list[str]) -> list[str]:
    """Admins' defaults and retirements as Lmod .modulerc.lua files, in the tree that holds each module."""
    lines: dict[Path, list[str]] = {}
    wanted = [(f"{name}/{version}", f'module_version("{name}/{version}", "default")')
              for name, version in settings.defaults]
    wanted += [(module, f'hide_version("{module}")') for module in settings.hidden]
    warnings = []
    for module, line in wanted:
        homes = [settings.layout.view_tree(gen, t) for t in trees
                 if (settings.layout.view_tree(gen, t) / f"{module}.lua").is_file()]
        if not homes:
            warnings.append(f"modules: {module} is not published; its default/hidden setting waits for it")
        for home in homes:
            lines.setdefault(home / module.split("/")[0] / ".modulerc.lua", []).append(line)
    for path, content in lines.items():
        path.unlink(missing_ok=True)  # a hard link into the store: write a new file, never through the link
        path.write_text("\n".join(content) + "\n")
    return warnings


def _moduleclass(settings: Settings, gen: Path, path: Path) -> str:
    """The EasyBuild moduleclass recorded when the module file at ``path`` (in ``gen``) was stored."""
    for tree in settings.trees():
        modules = settings.layout.view_tree(gen, tree)
        if path.is_relative_to(modules):
            module = str(path.relative_to(modules))[: -len(".lua")]
            return (read_manifest(settings.layout, tree, module) or {}).get("moduleclass", "")
    return ""


def _previous(settings: Settings, trees: list[str], state_of_now: dict) -> Previous | None:
    """The live generation and what it was made from, when this publish can start from it."""
    try:
        gen = settings.layout.live().resolve(strict=True)
        state = json.loads(settings.layout.view_state(gen).read_text())
    except (OSError, ValueError):
        return None
    same = all(state.get(key) == value for key, value in state_of_now.items())
    if not same or sorted(state.get("files", {})) != trees:
        return None
    if not all(settings.layout.view_catalogue_data(gen, tree).is_file() for tree in trees):
        return None  # made by a modlib without the catalogue: its data is made from scratch once
    return Previous(gen=gen, files=state["files"], featured_warnings=state.get("featured_warnings", {}))


def _changed(old: Listing, new: Listing) -> TreeChange:
    """Top-level names (folders below modules/all) whose files differ; the whole tree is made again
    when a file right in the tree changed (a tree-wide .modulerc.lua, say)."""
    names = set()
    for rel in old.keys() ^ new.keys() | {r for r in old.keys() & new.keys() if old[r] != new[r]}:
        if "/" not in rel and new.get(rel, old.get(rel)) != "dir":
            return REMAKE
        names.add(rel.split("/")[0])
    return TreeChange(remake=False, names=tuple(sorted(names)))


def _tree_caches(settings: Settings, gen: Path, changes: dict[str, TreeChange], previous: Previous | None,
                 scratch: Path) -> None:
    """Each tree's spider cache and catalogue data: Lmod over the changed names (all of them for a tree made
    again), the previous generation's files for a tree with none."""
    layout = settings.layout
    for tree, change in changes.items():
        walk = layout.view_tree(gen, tree)
        if previous is None or change.remake:
            source = spider_cache.TreeSource(walk, layout.view_tree(layout.live(), tree), None, None)
            software = spider_cache.update(settings.lmod_prefix, source, layout.view_cache(gen, tree))
            catalogue.update_tree(settings, tree, gen, walk, software, None)
        elif change.unchanged:
            spider_cache.reuse(layout.view_cache(previous.gen, tree), layout.view_cache(gen, tree))
            catalogue.reuse(layout, tree, previous.gen, gen)
        else:
            walk = spider_cache.link_farm(scratch / tree, walk, change.names)
            source = spider_cache.TreeSource(walk, layout.view_tree(layout.live(), tree), change.names,
                                             layout.view_cache(previous.gen, tree))
            software = spider_cache.update(settings.lmod_prefix, source, layout.view_cache(gen, tree))
            catalogue.update_tree(settings, tree, gen, walk, software, (previous.gen, change.names))


def _target_files(settings: Settings, gen: Path, name: str, changes: dict[str, TreeChange],
                  previous: Previous | None) -> list[str]:
    layout = settings.layout
    folder = layout.view_target(gen, name)
    folder.mkdir(parents=True)
    live = layout.live()
    trees = settings.layered_trees(settings.target(name))
    (folder / "lmodrc.lua").write_text(lmodrc(lmod.default_lmodrc(settings.lmod_prefix),
                                              *(layout.view_cache(live, t) for t in trees)))
    (folder / "env.sh").write_text(env_sh(settings, name, gen))
    catalogue.write_page(settings, name, gen)
    wanted = {f.name for f in settings.featured if not f.targets or name in f.targets}
    wanted |= kernels.names(settings, name)
    touched = any(changes[t].remake or wanted & set(changes[t].names) for t in trees)
    if previous is not None and not touched:
        featured.reuse(layout.view_target(previous.gen, name), folder)
        kernels.reuse(layout.view_jupyter(previous.gen, name), layout.view_jupyter(gen, name))
        return previous.featured_warnings[name]
    gpu = [layout.view_tree(gen, t) for t in trees if settings.target_of_tree(t).kind == "cuda"]
    packages = lmod.spider_names(settings.lmod_prefix, sorted(wanted), modulepath(settings, name, base=gen))
    featuring = featured.feature(settings, name, packages, gpu, lambda path: _moduleclass(settings, gen, path))
    featured.write(featuring, folder)
    chosen, warnings = kernels.select(settings, name, packages)
    kernels.write(settings, gen, name, chosen)
    return featuring.warnings + warnings


def publish_view(settings: Settings, *, full: bool = False) -> tuple[Path, list[str]]:
    """Make and swap in a new generation; returns it and the warnings for the admin. ``full`` makes it
    from scratch rather than from the live generation (the result is the same; benchmarks compare them)."""
    layout = settings.layout
    gen = _new_generation(layout)
    trees = settings.trees()
    listings = {tree: _listing(layout.store(tree)) for tree in trees}
    state = {"config": settings.config_sha256,
             "lmod": str(settings.lmod_prefix.resolve()), "live": str(layout.live()), "format": view_format()}
    previous = None if full else _previous(settings, trees, state)
    changes = {tree: REMAKE if previous is None else _changed(previous.files[tree], listings[tree])
               for tree in trees}
    if previous is not None:
        _recycle(layout, gen, trees)
    for tree in trees:
        _mirror(layout.store(tree), layout.view_tree(gen, tree), listings[tree])
    warnings = _modulerc(settings, gen, trees)
    scratch = gen / ".scratch"
    _tree_caches(settings, gen, changes, previous, scratch)
    shutil.rmtree(scratch, ignore_errors=True)
    featured_warnings = {name: _target_files(settings, gen, name, changes, previous) for name in settings.targets}
    session.write(settings, gen)
    layout.view_state(gen).write_text(json.dumps({**state, "files": listings, "featured_warnings": featured_warnings}))
    layout.view_inputs(gen).write_text(json.dumps({"digest": _digest(settings, listings)}) + "\n")
    generation_record.write(layout, gen)
    _swap(layout, gen)
    _collect_garbage(layout, gen)
    return gen, warnings + [w for name in settings.targets for w in featured_warnings[name]]


def _new_generation(layout: Layout) -> Path:
    """Names sort in the order generations were made (to the nanosecond), which garbage collection relies
    on; the marker comes first, so a folder modlib did not make is never taken for a generation."""
    now = time.time_ns()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now // 10**9))
    gen = layout.views() / f"{stamp}.{now % 10**9:09d}-{uuid.uuid4().hex[:8]}"
    gen.mkdir(parents=True)
    layout.view_marker(gen).touch()
    return gen


def generations(layout: Layout) -> list[Path]:
    """modlib's generations on the volume, newest first: marked folders (and those of modlib versions
    before the marker, which all have inputs.json); anything else under views/ is not modlib's to touch."""
    views = layout.views()
    folders = sorted(views.iterdir(), reverse=True) if views.is_dir() else []
    return [p for p in folders if layout.view_marker(p).is_file() or layout.view_inputs(p).is_file()]


def _expired(layout: Layout, current: Path) -> list[Path]:
    """Generations the next garbage collection removes once ``current`` is live: every other one but the
    KEEP_PREVIOUS newest complete ones (inputs.json is written last) and the one ``live`` points to now.
    Folders of publishes killed half-way are incomplete, so they go first."""
    others = [p for p in generations(layout) if p != current]
    kept = [p for p in others if layout.view_inputs(p).is_file()][:KEEP_PREVIOUS] + [layout.live().resolve()]
    return [p for p in others if p not in kept]


def _recycle(layout: Layout, gen: Path, trees: list[str]) -> None:
    """Move the module trees of a generation that expires with this publish into ``gen``: making the
    generation then costs what changed since that one, not a folder and a hard link per module (and
    removing it would have cost as much again)."""
    for old in _expired(layout, gen):
        if all(layout.view_tree(old, tree).is_dir() for tree in trees):
            for tree in trees:
                layout.view_tree(gen, tree).parent.mkdir(parents=True)
                os.rename(layout.view_tree(old, tree), layout.view_tree(gen, tree))
            return


def _swap(layout: Layout, gen: Path) -> None:
    tmp = layout.root / f".live-{uuid.uuid4().hex[:8]}"
    tmp.symlink_to(os.path.relpath(gen, layout.root))
    os.replace(tmp, layout.live())


def _collect_garbage(layout: Layout, current: Path) -> None:
    for old in _expired(layout, current):
        shutil.rmtree(old, ignore_errors=True)
