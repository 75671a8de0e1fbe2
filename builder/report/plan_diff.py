"""``modlib plan --diff REF``: what merging the working tree would change in the library, per target.

Reviewers of a merge request that edits a curated list need to see its effect, not the YAML: the
modules a merge adds (in build order, and whether what they need is already published; one already
built is only listed, not built), the ones it drops (they stay published, orphaned), the ones whose
easyconfig or options changed under a published install (drifted: rebuilt only on request, so not in
what the merge builds), and how long the builds are expected to take (builder/execute/expected.py:
the records, else the build model, the figures the run's scheduler ranks by). Both sides are
planned by the same planner against the same library root, so ``published`` means the same thing on
both; the side at REF is extracted by ``git archive`` and planned without the caches (its paths are
temporary, and entries for them would only pile up).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from builder.digests import file_sha256
from builder.errors import BadInput
from builder.execute.command import effective_options
from builder.execute.expected import Expected, expectations
from builder.plan.graph import Node, Plan
from builder.plan.planner import make_plan
from builder.read.config import Settings, load_settings
from builder.report.git_ref import checked_out, repository_of
from builder.report.where import text


@dataclass(frozen=True)
class Change:
    node: Node
    published: bool
    needs: tuple[tuple[str, str], ...] = ()  # (module, "published" | "added" | "to build")
    why: tuple[str, ...] = ()  # what changed under a rebuild
    estimate: Expected | None = None  # for what a merge would build

    def as_json(self) -> dict:
        out: dict = {"module": self.node.module, "tree": self.node.tree, "published": self.published}
        if self.needs:
            out["needs"] = [{"module": m, "state": s} for m, s in self.needs]
        if self.why:
            out["why"] = list(self.why)
        if self.estimate is not None:
            out["estimate_seconds"] = self.estimate.seconds
            out["estimate_from"] = self.estimate.basis
        return out


@dataclass
class TargetDiff:
    add: list[Change] = field(default_factory=list)
    drop: list[Change] = field(default_factory=list)
    rebuild: list[Change] = field(default_factory=list)

    def builds(self) -> list[Change]:
        """What the next run after a merge builds: what it adds that is not published yet. A drifted module
        is not among them: only ``modlib build --rebuild`` rebuilds it."""
        return [c for c in self.add if not c.published]

    def as_json(self) -> dict:
        (seconds, modelled), (again, again_modelled) = total(self.builds()), total(self.rebuild)
        return {"add": [c.as_json() for c in self.add], "drop": [c.as_json() for c in self.drop],
                "rebuild": [c.as_json() for c in self.rebuild],
                "estimate": {"seconds": round(seconds, 1), "from_model": modelled},
                "rebuild_on_request": {"seconds": round(again, 1), "from_model": again_modelled}}


def total(changes: list[Change]) -> tuple[float, int]:
    """Seconds of the builds of ``changes``, one after another, and how many of them only the build model
    estimates (no version of the software was built here yet)."""
    estimates = [c.estimate for c in changes if c.estimate is not None]
    return sum(e.seconds for e in estimates), sum(not e.recorded for e in estimates)


@dataclass
class PlanDiff:
    ref: str
    commit: str
    targets: dict[str, TargetDiff]
    hooks_changed: bool

    def as_json(self) -> dict:
        return {"ref": self.ref, "commit": self.commit, "hooks_changed": self.hooks_changed,
                "targets": {name: t.as_json() for name, t in self.targets.items()}}


def plan_diff(settings: Settings, ref: str) -> PlanDiff:
    """The working tree's plan against REF's; the working tree not planning is bad input (exit 2)."""
    repo = repository_of(settings.config_file)
    with checked_out(repo, ref) as (tree, commit):
        new = make_plan(settings, list(settings.targets.values()))
        old_settings = _settings_at(settings, repo, tree, ref)
        try:
            old = make_plan(old_settings, list(old_settings.targets.values()))
        except BadInput as err:
            raise BadInput(f"--diff {ref}", f"the plan at {ref} fails: {str(err).replace(str(tree), ref)}") from None
        return PlanDiff(ref=ref, commit=commit, targets=compare(settings, old_settings, old, new),
                        hooks_changed=file_sha256(settings.hooks) != file_sha256(old_settings.hooks))


def _settings_at(settings: Settings, repo: Path, tree: Path, ref: str) -> Settings:
    """REF's library.yaml, read against this library's root and Python (the ones the admin uses now)."""
    config = tree / settings.config_file.relative_to(repo)
    if not config.is_file():
        raise BadInput(f"--diff {ref}", f"{config.relative_to(tree)} does not exist at {ref}")
    env = {**os.environ, "MODLIB_ROOT": str(settings.root)}
    if settings.python:
        env["MODLIB_PYTHON"] = settings.python
    try:
        return dataclasses.replace(load_settings(config, env), cache_dir=None)
    except BadInput as err:
        raise BadInput(f"--diff {ref}", f"library.yaml at {ref}: {str(err).replace(str(tree), ref)}") from None


def compare(settings: Settings, old_settings: Settings, old: Plan, new: Plan) -> dict[str, TargetDiff]:
    """Per target (the one that owns each node), new nodes in build order, gone ones, and changed ones."""
    names = list(dict.fromkeys([*settings.targets, *old_settings.targets]))
    out = {name: TargetDiff() for name in names}
    added = {n.key for n in new.nodes if n.key not in old.index}
    for node in new.nodes:
        before = old.index.get(node.key)
        if before is None:
            needs = tuple((key[1], _state(key, added, new)) for key in node.deps)
            out[node.target].add.append(Change(node, node.installed, needs=needs))
            continue
        why = _why(settings, old_settings, before, node)
        if why:
            out[node.target].rebuild.append(Change(node, node.installed, why=why))
    out_of_plan = [n for n in old.nodes if n.key not in new.index]
    for node in out_of_plan:
        out[node.target].drop.append(Change(node, node.installed))
    _estimate(settings, out.values())
    return out


def _estimate(settings: Settings, diffs: Iterable[TargetDiff]) -> None:
    """What a merge would build (and what a rebuild would) gets its expected duration, all in one read of
    the records."""
    diffs = list(diffs)
    costs = expectations(settings.layout, [c.node for t in diffs for c in [*t.builds(), *t.rebuild]])
    for t in diffs:
        t.add = [dataclasses.replace(c, estimate=costs.get(c.node.key)) for c in t.add]
        t.rebuild = [dataclasses.replace(c, estimate=costs[c.node.key]) for c in t.rebuild]


def _state(key: tuple[str, str], added: set, plan: Plan) -> str:
    if key in added and not plan.index[key].installed:
        return "added"
    return "published" if plan.index[key].installed else "to build"


def _why(settings: Settings, old_settings: Settings, before: Node, after: Node) -> tuple[str, ...]:
    why = []
    if before.sha256 != after.sha256:
        why.append(f"easyconfig changed ({after.easyconfig.name})")
    old_opts, new_opts = effective_options(old_settings, before), effective_options(settings, after)
    moved = sorted(k for k in {*old_opts, *new_opts} if old_opts.get(k) != new_opts.get(k))
    if moved:
        why.append("options changed: " + ", ".join(f"{k} {text(old_opts.get(k))} -> {text(new_opts.get(k))}"
                                                     for k in moved))
    return tuple(why)
