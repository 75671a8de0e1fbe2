"""Resolve the curated easystacks of the chosen targets into one Plan, with EasyBuild's parser and robot.

EasyBuild's own ``resolve_dependencies`` compares EasyConfig objects pairwise (quadratic); here
each easyconfig is parsed once and the graph is kept by module name, which gives the same nodes.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from builder import ebadapter, jsonfile
from builder.ebadapter.worker import Workers
from builder.errors import BadInput
from builder.execute import sandbox
from builder.plan import diagnostics, entry_options, parse_sandbox
from builder.plan.entry_options import EntryOptions
from builder.plan.graph import Node, Plan, cuda_bound
from builder.plan.parse_cache import ParseCache, entry_key
from builder.plan.plan_cache import PlanCache
from builder.read.config import Settings, Target


@dataclass(frozen=True)
class Entry:
    """One curated easystack entry: the easyconfig it names, its options, and where it is listed."""

    easyconfig: Path
    options: EntryOptions
    stack: Path
    listed: str


@dataclass(frozen=True)
class Planned:
    """A module the plan builds: its parse, the options it is built with, and the entry that wants it."""

    module: str
    parsed: ebadapter.ParsedEasyconfig
    deps: tuple[str, ...]
    options: tuple[tuple[str, object], ...]
    sha256: str
    hidden: bool
    entry: Entry
    listed: bool  # the entry's own easyconfig, not one it pulls in


def robot_paths(settings: Settings) -> list[Path]:
    """Site folders shadow EasyBuild's own easyconfigs, as with ``eb --robot-paths=site:upstream``."""
    return [*settings.easyconfig_paths, ebadapter.upstream_easyconfigs()]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _listed(stacks: list[Path]) -> list[tuple[Path, str, EntryOptions]]:
    """(easystack, easyconfig as listed, options) per entry; a refused option is bad input here."""
    return [(stack, name, entry_options.split(stack, name, opts))
            for stack in stacks for name, opts in ebadapter.read_easystack(stack)]


def _entries(eb: ebadapter.Session, listed: list[tuple[Path, str, EntryOptions]]) -> list[Entry]:
    """The listed easyconfigs located in the session's robot path, as ``eb`` locates them for that entry."""
    entries = []
    for stack in dict.fromkeys(s for s, _, _ in listed):
        mine = [(name, opts) for s, name, opts in listed if s == stack]
        paths = eb.locate([name for name, _ in mine], stack)
        entries += [Entry(path, opts, stack, name) for path, (name, opts) in zip(paths, mine, strict=True)]
    return entries


#: The session a forked parse worker inherited from the planner (set by the pool's initializer).
_worker_session: ebadapter.Session | None = None


def _enter_worker(eb: ebadapter.Session) -> None:
    global _worker_session
    _worker_session = eb


def _parse_in_worker(path: Path) -> ebadapter.ParsedEasyconfig:
    assert _worker_session is not None, "a parse worker runs only inside the planner's pool"
    return _worker_session.parse(path)


def _parse_all(eb: ebadapter.Session, paths: list[Path], cache: ParseCache, digests: dict[Path, str],
               sandboxed: Workers | None) -> list[ebadapter.ParsedEasyconfig]:
    """Parse a batch: cached entries are reused, the rest parsed by EasyBuild in sandboxed workers, or,
    where the site allows parsing unisolated, in forked workers (they inherit this process's EasyBuild
    configuration). Records each file's digest in ``digests``."""
    digests.update({p: _digest(p) for p in paths})
    keys = {p: entry_key(p, digests[p]) for p in paths}
    cached = {p: cache.get(eb, keys[p], p) for p in paths}
    done = {p: parsed for p, parsed in cached.items() if parsed is not None}
    todo = [p for p in paths if p not in done]
    workers = min(os.cpu_count() or 1, 8)
    if sandboxed is not None:
        fresh = sandboxed.parse(eb, todo) if todo else []
    elif len(todo) >= 2 * workers > 2:
        import multiprocessing  # here: a cached plan imports the planner and never parses
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                                 initializer=_enter_worker, initargs=(eb,)) as pool:
            fresh = list(pool.map(_parse_in_worker, todo, chunksize=4))
    else:
        fresh = [eb.parse(p) for p in todo]
    for path, parsed in zip(todo, fresh, strict=True):
        cache.put(keys[path], parsed)
        done[path] = parsed
    return [done[p] for p in paths]


def _resolve(eb: ebadapter.Session, entries: list[Entry], cache: ParseCache, digests: dict[Path, str],
             sandboxed: Workers | None) -> dict[str, ebadapter.ParsedEasyconfig]:
    """Every module reachable from the entries, each easyconfig parsed once, level by level, and keyed by
    the module each wants (a hidden dependency is its easyconfig under the hidden name, as ``eb`` plans
    it); what cannot be planned is bad input, all of it in one error naming the easystacks."""
    by_path: dict[Path, ebadapter.ParsedEasyconfig] = {}
    seen: set[Path] = set()  # parsed or in the level being parsed: each file is parsed once
    level = list(dict.fromkeys(e.easyconfig for e in entries))
    while level:
        seen.update(level)
        following = []
        for parsed in _parse_all(eb, level, cache, digests, sandboxed):
            by_path[parsed.path] = parsed
            following += [d.easyconfig for d in parsed.deps if d.easyconfig is not None and d.easyconfig not in seen]
        level = list(dict.fromkeys(following))
    problems = diagnostics.problems(eb, [e.easyconfig for e in entries], by_path)
    if problems:
        stacks = ", ".join(str(s) for s in dict.fromkeys(e.stack for e in entries))
        raise BadInput(stacks, f"{len(problems)} dependencies cannot be planned: " + "; ".join(problems))
    wanted = [(by_path[e.easyconfig].module, e.easyconfig) for e in entries]
    wanted += [(d.module, d.easyconfig) for p in by_path.values() for d in p.deps if d.easyconfig is not None]
    by_module: dict[str, ebadapter.ParsedEasyconfig] = {}
    for module, path in wanted:
        by_module.setdefault(module, replace(by_path[path], module=module))
    return by_module


def _sessions(listed: list[tuple[Path, str, EntryOptions]]) -> list[list[tuple[Path, str, EntryOptions]]]:
    """Entries that plan in one EasyBuild session: equal session options; an entry to tweak alone, as ``eb``
    tweaks it (a tweak is applied to the listed easyconfig only)."""
    groups: dict[object, list] = {}
    for i, item in enumerate(listed):
        groups.setdefault(i if item[2].tweaks else item[2].session, []).append(item)
    return list(groups.values())


def _kept(settings: Settings, path: Path, sha256: str) -> Path:
    """A generated (tweaked) easyconfig, copied out of the session's temporary folder to where the plan
    and the build find it: by content, under the cache (or the system's temporary folder without one)."""
    folder = (settings.cache_dir or Path(tempfile.gettempdir()) / "modlib") / "generated" / sha256[:16]
    kept = folder / path.name
    if not kept.is_file():
        jsonfile.write_bytes(kept, path.read_bytes())
    return kept


def _plan_session(settings: Settings, target: Target, listed: list[tuple[Path, str, EntryOptions]],
                  seen: dict[Path, str]) -> list[Planned]:
    """The modules one group of entries wants, planned in an EasyBuild session configured with their
    options: each listed easyconfig (tweaked, hidden) and everything it pulls in, as ``eb --robot`` would.
    ``seen`` gets the digest of every easyconfig parsed (a generated one by its kept copy)."""
    session = listed[0][2].session
    options = {**target.options(), **dict(session)}  # the entry's options override the target's, as in eb
    origin = f"{listed[0][0]}: entry {listed[0][1]}" if session else "easybuild_options"
    isolated = sandbox.wanted(settings, "parses", lambda message: None)  # builds warn, where they run so
    # The site hooks are loaded where easyconfigs are parsed and tweaked: in the workers, if sandboxed
    hooks = None if isolated else settings.hooks
    with ebadapter.configured(robot_paths(settings), hooks, options, origin) as eb:
        entries = _entries(eb, listed)
        # tweaked files live in this session's temporary folder only
        cache = ParseCache(None, {}) if eb.build_specs else \
            ParseCache(settings.cache_dir, eb.parse_context(settings.hooks, eb.robot_paths(), options))
        digests: dict[Path, str] = {}
        with parse_sandbox.workers(settings, eb, [e.easyconfig for e in entries], options, origin) if isolated \
                else contextlib.nullcontext() as sandboxed:
            if eb.build_specs:  # a tweak parses the easyconfig it tweaks: in the sandbox, where parses run
                entries = [replace(e, easyconfig=sandboxed.tweak(eb, e.easyconfig) if sandboxed else
                                   eb.tweak(e.easyconfig)) for e in entries]
            parsed = _resolve(eb, entries, cache, digests, sandboxed)
        cache.save()
        kept = {p.path: _kept(settings, p.path, digests[p.path]) for p in parsed.values() if eb.generated(p.path)}
    seen.update({kept.get(path, path): digest for path, digest in digests.items()})
    by_path: dict[Path, ebadapter.ParsedEasyconfig] = {}
    for p in parsed.values():  # an entry's own module first, before a hidden dependency on the same file
        by_path.setdefault(p.path, p)
    build_opts = tuple((k, v) for k, v in session if k not in entry_options.TWEAK)
    planned: dict[str, Planned] = {}

    def want(module: str, p: ebadapter.ParsedEasyconfig, entry: Entry, hidden: bool, listed: bool) -> None:
        if module in planned:
            return
        planned[module] = Planned(module, replace(p, path=kept.get(p.path, p.path)), tuple(d.module for d in p.deps),
                                  entry.options.recorded() if listed else build_opts, digests[p.path], hidden, entry,
                                  listed)
        for d in p.deps:
            want(d.module, (by_path.get(d.easyconfig) if d.easyconfig else None) or parsed[d.module], entry, d.hidden,
                 False)

    for e in entries:
        own = by_path.get(e.easyconfig)
        if own is None:  # _resolve kept another easyconfig of the same module
            raise BadInput(e.stack, f"entry {e.listed}: {e.easyconfig} gives a module that another easyconfig "
                                    f"of the plan gives too")
        want(eb.hidden_name(own.module) if e.options.hidden else own.module, own, e, e.options.hidden, True)
    return list(planned.values())


def _merge(into: dict[str, Planned], more: list[Planned]) -> None:
    """Add a session's modules. One that an earlier entry already plans from the same easyconfig is kept as
    planned there (``eb`` runs the entries in order and finds it installed); two entries that list it with
    different options, or another easyconfig under the same module name, are bad input."""
    for new in more:
        old = into.setdefault(new.module, new)
        listed_twice = old.listed and new.listed and old.options != new.options
        if old is not new and (old.sha256 != new.sha256 or listed_twice):
            raise BadInput(new.entry.stack, f"entry {new.entry.listed}: module {new.module} would be built twice, "
                                            f"differently: from {old.parsed.path} (options {dict(old.options)}, "
                                            f"entry {old.entry.listed}) and from {new.parsed.path} "
                                            f"(options {dict(new.options)})")


def plan_target(settings: Settings, target: Target, stacks: list[Path] | None = None,
                digests: dict[Path, str] | None = None) -> list[Node]:
    """The nodes one target needs; a cuda target places what does not need CUDA in its cpu tree.
    ``digests`` gets the digest of every easyconfig parsed, nodes or not (what the plan cache watches)."""
    planned: dict[str, Planned] = {}
    for group in _sessions(_listed(list(stacks or target.easystacks))):
        _merge(planned, _plan_session(settings, target, group, {} if digests is None else digests))
    deps = {m: list(p.deps) for m, p in planned.items()}
    bound = cuda_bound(deps, {m: p.parsed.name for m, p in planned.items()}) if target.kind == "cuda" \
        else set(planned)
    base = settings.targets[target.layers_over] if target.layers_over else target
    place = {m: (target if m in bound else base) for m in planned}
    nodes = []
    for module, p in planned.items():
        _inside_the_store(module, p.parsed.path)
        owner = place[module]
        nodes.append(Node(
            tree=owner.tree, module=module, name=p.parsed.name, easyconfig=p.parsed.path, target=owner.name,
            deps=tuple(sorted((place[d].tree, d) for d in deps[module])),
            installed=settings.layout.module_file(owner.tree, module).is_file(),
            sha256=p.sha256, hidden=p.hidden, options=p.options, moduleclass=p.parsed.moduleclass))
    return nodes


def _inside_the_store(module: str, easyconfig: Path) -> None:
    """A module name is a path below a tree's store (``Name/version.lua``), and the runner publishes there:
    a name or version with ``..`` or a leading ``/`` would make it write a module file anywhere."""
    parts = PurePosixPath(module).parts
    if not parts or parts[0] == "/" or ".." in parts or "\0" in module:
        raise BadInput(easyconfig, f"its name and version make the module name {module!r}, which is not a path "
                                   "inside the module tree (no '..', no leading '/')")


def make_plan(settings: Settings, targets: list[Target], easystack: Path | None = None) -> Plan:
    """One DAG over all entries of all given targets, deduplicated by (tree, module): the pure input of
    ``plan``, ``build --dry-run``, ``render``, ``status`` and every executor. Taken from the plan cache
    when none of its inputs moved, so that asking again costs no EasyBuild."""
    cache = PlanCache(settings, targets, easystack, robot_paths(settings))
    return cache.load() or cache.make(lambda parsed: fresh_plan(settings, targets, easystack, parsed))


def fresh_plan(settings: Settings, targets: list[Target], easystack: Path | None,
               parsed: dict[Path, str] | None = None) -> Plan:
    """The plan made by asking EasyBuild (parses from the parse cache): what the plan cache must equal.
    ``parsed`` gets the digest of every easyconfig read (see ``plan_target``)."""
    merged: dict[tuple[str, str], Node] = {}
    for target in targets:
        for node in plan_target(settings, target, [easystack] if easystack else None, parsed):
            merged.setdefault(node.key, node)
    return Plan.of(merged.values())
