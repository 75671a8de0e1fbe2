"""Resolve the curated easystacks of the chosen targets into one Plan, with EasyBuild's parser and robot.

EasyBuild's own ``resolve_dependencies`` compares EasyConfig objects pairwise (quadratic); here
each easyconfig is parsed once and the graph is kept by module name, which gives the same nodes.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from builder import ebadapter
from builder.plan.graph import Node, Plan, cuda_bound
from builder.plan.parse_cache import ParseCache, entry_key
from builder.plan.plan_cache import PlanCache
from builder.read.config import Settings, Target


@dataclass(frozen=True)
class Entry:
    """One curated easystack entry: the easyconfig it names and the options it carries."""

    easyconfig: Path
    options: tuple[tuple[str, object], ...]


def robot_paths(settings: Settings) -> list[Path]:
    """Site folders shadow EasyBuild's own easyconfigs, as with ``eb --robot-paths=site:upstream``."""
    return [*settings.easyconfig_paths, ebadapter.upstream_easyconfigs()]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _entries(eb: ebadapter.Session, stacks: list[Path]) -> list[Entry]:
    entries = []
    for stack in stacks:
        listed = ebadapter.read_easystack(stack)
        paths = eb.locate([filename for filename, _ in listed], stack)
        entries += [Entry(path, tuple(sorted(opts.items()))) for path, (_, opts) in zip(paths, listed, strict=True)]
    return entries


#: The session a forked parse worker inherited from the planner (set by the pool's initializer).
_worker_session: ebadapter.Session | None = None


def _enter_worker(eb: ebadapter.Session) -> None:
    global _worker_session
    _worker_session = eb


def _parse_in_worker(path: Path) -> ebadapter.ParsedEasyconfig:
    assert _worker_session is not None, "a parse worker runs only inside the planner's pool"
    return _worker_session.parse(path)


def _parse_all(eb: ebadapter.Session, paths: list[Path], cache: ParseCache,
               digests: dict[Path, str]) -> list[ebadapter.ParsedEasyconfig]:
    """Parse a batch: cached entries are reused, the rest parsed by EasyBuild in forked workers
    (they inherit this process's EasyBuild configuration). Records each file's digest in ``digests``."""
    digests.update({p: _digest(p) for p in paths})
    keys = {p: entry_key(p, digests[p]) for p in paths}
    cached = {p: cache.get(eb, keys[p], p) for p in paths}
    done = {p: parsed for p, parsed in cached.items() if parsed is not None}
    todo = [p for p in paths if p not in done]
    workers = min(os.cpu_count() or 1, 8)
    if len(todo) >= 2 * workers > 2:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                                 initializer=_enter_worker, initargs=(eb,)) as pool:
            fresh = list(pool.map(_parse_in_worker, todo, chunksize=4))
    else:
        fresh = [eb.parse(p) for p in todo]
    for path, parsed in zip(todo, fresh, strict=True):
        cache.put(keys[path], parsed)
        done[path] = parsed
    return [done[p] for p in paths]


def _resolve(eb: ebadapter.Session, entries: list[Entry], cache: ParseCache,
             digests: dict[Path, str]) -> dict[str, ebadapter.ParsedEasyconfig]:
    """Every module reachable from the entries, parsed once each (keyed by module name), level by level."""
    by_module: dict[str, ebadapter.ParsedEasyconfig] = {}
    seen: set[Path] = set()
    level = list(dict.fromkeys(e.easyconfig for e in entries))
    while level:
        seen.update(level)
        following = []
        for parsed in _parse_all(eb, level, cache, digests):
            by_module.setdefault(parsed.module, parsed)
            following += [d.easyconfig for d in parsed.deps if d.easyconfig not in seen]
        level = list(dict.fromkeys(following))
    return by_module


def plan_target(settings: Settings, target: Target, stacks: list[Path] | None = None,
                digests: dict[Path, str] | None = None) -> list[Node]:
    """The nodes one target needs; a cuda target places what does not need CUDA in its cpu tree.
    ``digests`` gets the digest of every easyconfig parsed, nodes or not (what the plan cache watches)."""
    paths = robot_paths(settings)
    with ebadapter.configured(paths, settings.hooks, target.options()) as eb:
        cache = ParseCache(settings.cache_dir, eb.parse_context(settings.hooks, paths, target.options()))
        entries = _entries(eb, list(stacks or target.easystacks))
        digests = {} if digests is None else digests
        parsed = _resolve(eb, entries, cache, digests)
        cache.save()
    deps = {m: [d.module for d in p.deps] for m, p in parsed.items()}
    bound = cuda_bound(deps, {m: p.name for m, p in parsed.items()}) if target.kind == "cuda" else set(parsed)
    base = settings.targets[target.layers_over] if target.layers_over else target
    place = {m: (target if m in bound else base) for m in parsed}
    entry_opts = {e.easyconfig: e.options for e in entries}
    hidden = {d.module for p in parsed.values() for d in p.deps if d.hidden}
    nodes = []
    for module, p in parsed.items():
        owner = place[module]
        nodes.append(Node(
            tree=owner.tree, module=module, name=p.name, easyconfig=p.path, target=owner.name,
            deps=tuple(sorted((place[d].tree, d) for d in deps[module])),
            installed=settings.layout.module_file(owner.tree, module).is_file(),
            sha256=digests[p.path], hidden=module in hidden, options=entry_opts.get(p.path, ()),
            moduleclass=p.moduleclass))
    return nodes


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
