"""Resolve the curated easystacks of the chosen targets into one Plan, with EasyBuild's parser and robot.

EasyBuild's own ``resolve_dependencies`` compares EasyConfig objects pairwise (quadratic); here
each easyconfig is parsed once and the graph is kept by module name, which gives the same nodes.
"""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from builder import ebadapter, jsonfile
from builder.digests import read_sha256
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
class Listed:
    """One easystack entry as written: the easystack, the easyconfig it names, and its options."""

    stack: Path
    name: str
    options: EntryOptions


@dataclass(frozen=True)
class EasystackEntry:
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
    entry: EasystackEntry
    listed: bool  # the entry's own easyconfig, not one it pulls in


@dataclass(frozen=True)
class Wanted:
    """A module on the worklist of one session: the parse it is planned from and who wants it how."""

    module: str
    parsed: ebadapter.ParsedEasyconfig
    entry: EasystackEntry
    hidden: bool
    listed: bool


@dataclass(frozen=True)
class Resolved:
    """What a session's entries pull in: each module's parse, by the module it is wanted as, and the digest
    of every easyconfig parsed on the way, nodes or not (what the plan cache watches)."""

    by_module: dict[str, ebadapter.ParsedEasyconfig]
    digests: dict[Path, str]

    @functools.cached_property
    def by_path(self) -> dict[Path, ebadapter.ParsedEasyconfig]:
        """Each easyconfig's first module: an entry's own module, before a hidden dependency on the same file."""
        first: dict[Path, ebadapter.ParsedEasyconfig] = {}
        for parsed in self.by_module.values():
            first.setdefault(parsed.path, parsed)
        return first


@dataclass(frozen=True)
class SessionPlan:
    """The modules one EasyBuild session plans, and the digests of what it parsed (a generated easyconfig's
    under its kept copy, where the plan and the build find it)."""

    modules: list[Planned]
    digests: dict[Path, str]


@dataclass(frozen=True)
class TargetPlan:
    """The nodes one target needs, and the digests of every easyconfig parsed to find them."""

    nodes: list[Node]
    digests: dict[Path, str]


def robot_paths(settings: Settings) -> list[Path]:
    """Site folders shadow EasyBuild's own easyconfigs, as with ``eb --robot-paths=site:upstream``."""
    return [*settings.easyconfig_paths, ebadapter.upstream_easyconfigs()]


def _listed(stacks: list[Path]) -> list[Listed]:
    """Every entry of the easystacks, in order; a refused option is bad input here."""
    return [Listed(stack=stack, name=name, options=entry_options.split(stack, name, opts))
            for stack in stacks for name, opts in ebadapter.read_easystack(stack)]


def _entries(eb: ebadapter.Session, listed: list[Listed]) -> list[EasystackEntry]:
    """The listed easyconfigs located in the session's robot path, as ``eb`` locates them for that entry."""
    entries = []
    for stack in dict.fromkeys(item.stack for item in listed):
        mine = [item for item in listed if item.stack == stack]
        paths = eb.locate([item.name for item in mine], stack)
        entries += [EasystackEntry(easyconfig=path, options=item.options, stack=stack, listed=item.name)
                    for path, item in zip(paths, mine, strict=True)]
    return entries


#: The session a forked parse worker inherited from the planner (set by the pool's initializer).
_worker_session: ebadapter.Session | None = None


def _enter_worker(eb: ebadapter.Session) -> None:
    global _worker_session
    _worker_session = eb


def _parse_in_worker(path: Path) -> ebadapter.ParsedEasyconfig:
    assert _worker_session is not None, "a parse worker runs only inside the planner's pool"
    return _worker_session.parse(path)


def _parse_all(eb: ebadapter.Session, digests: dict[Path, str], cache: ParseCache,
               sandboxed: Workers | None) -> list[ebadapter.ParsedEasyconfig]:
    """Parse a batch (the files ``digests`` has, by the digest their cache entries are keyed by): cached
    entries are reused, the rest parsed by EasyBuild in sandboxed workers, or, where the site allows
    parsing unisolated, in forked workers (they inherit this process's EasyBuild configuration)."""
    paths = list(digests)
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


def _resolve(eb: ebadapter.Session, entries: list[EasystackEntry], cache: ParseCache,
             sandboxed: Workers | None) -> Resolved:
    """Every module reachable from the entries, each easyconfig parsed once, level by level, and keyed by
    the module each wants (a hidden dependency is its easyconfig under the hidden name, as ``eb`` plans
    it); what cannot be planned is bad input, all of it in one error naming the easystacks."""
    by_path: dict[Path, ebadapter.ParsedEasyconfig] = {}
    digests: dict[Path, str] = {}  # parsed or in the level being parsed: each file is parsed once
    level = list(dict.fromkeys(e.easyconfig for e in entries))
    while level:
        batch = {path: read_sha256(path) for path in level}
        digests.update(batch)
        following = []
        for parsed in _parse_all(eb, batch, cache, sandboxed):
            by_path[parsed.path] = parsed
            following += [d.easyconfig for d in parsed.deps if d.easyconfig is not None and d.easyconfig not in digests]
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
    return Resolved(by_module=by_module, digests=digests)


def _sessions(listed: list[Listed]) -> list[list[Listed]]:
    """Entries that plan in one EasyBuild session: equal session options; an entry to tweak alone, as ``eb``
    tweaks it (a tweak is applied to the listed easyconfig only)."""
    groups: dict[object, list[Listed]] = {}
    for i, item in enumerate(listed):
        groups.setdefault(i if item.options.tweaks else item.options.session, []).append(item)
    return list(groups.values())


def _generated_copy(settings: Settings, path: Path, sha256: str) -> Path:
    """A generated (tweaked) easyconfig, copied out of the session's temporary folder to where the plan
    and the build find it: by content, under the cache (or the system's temporary folder without one)."""
    folder = (settings.cache_dir or Path(tempfile.gettempdir()) / "modlib") / "generated" / sha256[:16]
    kept = folder / path.name
    if not kept.is_file():
        jsonfile.write_bytes(kept, path.read_bytes())
    return kept


def _plan_session(settings: Settings, target: Target, group: list[Listed]) -> SessionPlan:
    """The modules one group of entries wants, planned in an EasyBuild session configured with their
    options: each listed easyconfig (tweaked, hidden) and everything it pulls in, as ``eb --robot`` would."""
    first = group[0]
    options = {**target.options(), **dict(first.options.session)}  # the entry's override the target's, as in eb
    origin = f"{first.stack}: entry {first.name}" if first.options.session else "easybuild_options"
    isolated = sandbox.wanted(settings, "parses", lambda message: None)  # builds warn, where they run so
    # The site hooks are loaded where easyconfigs are parsed and tweaked: in the workers, if sandboxed
    hooks = None if isolated else settings.hooks
    with ebadapter.configured(robot_paths(settings), hooks, options, origin) as eb:
        entries = _entries(eb, group)
        # tweaked files live in this session's temporary folder only
        cache = ParseCache(None, {}) if eb.build_specs else \
            ParseCache(settings.cache_dir, {**eb.parse_context(settings.hooks, eb.robot_paths(), options),
                                            "included": entry_options.included_digests(options)})
        with parse_sandbox.workers(settings, eb, [e.easyconfig for e in entries], options, origin) if isolated \
                else contextlib.nullcontext() as sandboxed:
            if eb.build_specs:  # a tweak parses the easyconfig it tweaks: in the sandbox, where parses run
                entries = [replace(e, easyconfig=sandboxed.tweak(eb, e.easyconfig) if sandboxed else
                                   eb.tweak(e.easyconfig)) for e in entries]
            resolved = _resolve(eb, entries, cache, sandboxed)
        cache.save()
        kept = {p.path: _generated_copy(settings, p.path, resolved.digests[p.path])
                for p in resolved.by_module.values() if eb.generated(p.path)}
    tops = [_top(eb, e, resolved) for e in entries]
    build_options = tuple((k, v) for k, v in first.options.session if k not in entry_options.TWEAK)
    modules = _walk(tops, resolved, kept, build_options)
    return SessionPlan(modules=modules, digests={kept.get(path, path): d for path, d in resolved.digests.items()})


def _top(eb: ebadapter.Session, entry: EasystackEntry, resolved: Resolved) -> Wanted:
    """An entry's own module, as its options name it (a hidden one under its hidden name)."""
    own = resolved.by_path.get(entry.easyconfig)
    if own is None:  # _resolve kept another easyconfig of the same module
        raise BadInput(entry.stack, f"entry {entry.listed}: {entry.easyconfig} gives a module that another "
                                    f"easyconfig of the plan gives too")
    module = eb.hidden_name(own.module) if entry.options.hidden else own.module
    return Wanted(module=module, parsed=own, entry=entry, hidden=entry.options.hidden, listed=True)


def _walk(tops: list[Wanted], resolved: Resolved, kept: dict[Path, Path],
          build_options: tuple[tuple[str, object], ...]) -> list[Planned]:
    """Each entry's module and, depth first, everything it pulls in, each module planned once, by the first
    entry that reaches it: that entry's options for its own module, the session's build options for the
    rest."""
    planned: dict[str, Planned] = {}
    for top in tops:
        worklist = [top]
        while worklist:
            wanted = worklist.pop()
            if wanted.module in planned:
                continue
            p = wanted.parsed
            planned[wanted.module] = Planned(
                module=wanted.module, parsed=replace(p, path=kept.get(p.path, p.path)),
                deps=tuple(d.module for d in p.deps),
                options=wanted.entry.options.recorded() if wanted.listed else build_options,
                sha256=resolved.digests[p.path], hidden=wanted.hidden, entry=wanted.entry, listed=wanted.listed)
            worklist += reversed([_dependency(d, wanted.entry, resolved) for d in p.deps])  # the first on top
    return list(planned.values())


def _dependency(dep: ebadapter.Dependency, entry: EasystackEntry, resolved: Resolved) -> Wanted:
    """A dependency, planned from the first module of the easyconfig it names, else from its module's parse."""
    parsed = (resolved.by_path.get(dep.easyconfig) if dep.easyconfig else None) or resolved.by_module[dep.module]
    return Wanted(module=dep.module, parsed=parsed, entry=entry, hidden=dep.hidden, listed=False)


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


def plan_target(settings: Settings, target: Target, stacks: list[Path] | None = None) -> TargetPlan:
    """The nodes one target needs; a cuda target places what does not need CUDA in its cpu tree."""
    entry_options.check_build_options(target.options(), f"{settings.config_file}: target {target.name}: "
                                                        "easybuild_options")
    planned: dict[str, Planned] = {}
    digests: dict[Path, str] = {}
    for group in _sessions(_listed(list(stacks or target.easystacks))):
        session = _plan_session(settings, target, group)
        _merge(planned, session.modules)
        digests.update(session.digests)
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
    return TargetPlan(nodes=nodes, digests=digests)


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
    return cache.load() or cache.make(lambda: fresh_plan(settings, targets, easystack))


def fresh_plan(settings: Settings, targets: list[Target], easystack: Path | None) -> Plan:
    """The plan made by asking EasyBuild (parses from the parse cache): what the plan cache must equal. Its
    ``read`` holds the digest of every easyconfig parsed, nodes or not (what the plan cache watches)."""
    merged: dict[tuple[str, str], Node] = {}
    digests: dict[Path, str] = {}
    for target in targets:
        planned = plan_target(settings, target, [easystack] if easystack else None)
        for node in planned.nodes:
            merged.setdefault(node.key, node)
        digests.update(planned.digests)
    return Plan.of(merged.values(), read=digests)
