"""What the library holds per target: published, missing, failed, drifted, damaged, not live, orphaned,
and the run in progress or the last run.

Status must work when the library needs attention most: a target whose easyconfigs do not parse is
reported with its error and the store's modules instead of stopping the report, and damage comes from
the quick integrity check (sizes and mtimes, digests only where they moved; ``modlib verify`` reads
everything).
"""

from __future__ import annotations

import time

from builder.commands.verify import Finding, select, store_modules, verify
from builder.errors import BadInput
from builder.execute import records
from builder.execute.lock import holder_gone, read_holder
from builder.execute.records import UNISOLATED
from builder.jsonfile import Garbled
from builder.layout import Layout
from builder.plan.graph import NodeKey, Plan
from builder.publish.featured import python_minor
from builder.publish.live import drifted, read_manifest
from builder.read.config import Settings


def plan_targets(settings: Settings) -> dict[str, Plan | BadInput]:
    """Each target's plan, or the bad input that stopped it: one bad easyconfig hides only its target."""
    from builder.plan.planner import make_plan

    plans: dict[str, Plan | BadInput] = {}
    for target in settings.targets.values():
        try:
            plans[target.name] = make_plan(settings, [target])
        except BadInput as err:
            plans[target.name] = err
    return plans


def library_status(settings: Settings, plans: dict[str, Plan | BadInput]) -> dict:
    """``plans`` maps each target name to its plan or its planning error (see ``plan_targets``)."""
    layout = settings.layout
    integrity = verify(layout, select(layout, settings.trees(), []), thorough=False, trees=settings.trees())
    planned = {n.key for p in plans.values() if isinstance(p, Plan) for n in p.nodes}
    unplanned = {tree for name, p in plans.items() if not isinstance(p, Plan)
                 for tree in settings.layered_trees(settings.target(name))}
    out: dict = {"root": str(settings.root), "targets": {}, "run_in_progress": run_in_progress(layout),
                 "last_run": None, "damage": integrity.library}
    try:
        out["last_run"] = records.read_last_run(layout)
    except Garbled as err:
        out["damage"].append(str(err))
    owners = _owners(settings, plans)
    for name, plan in plans.items():
        tree = settings.target(name).tree
        stored = [f for f in integrity.findings if f.tree == tree]  # every published module of its own tree
        state = _planned(layout, plan, owners, name) if isinstance(plan, Plan) else _unplanned(stored, plan)
        state.update(_integrity(stored))
        state["orphaned"] = [{"module": f.module, "tree": f.tree} for f in stored
                             if f.tree not in unplanned and (f.tree, f.module) not in planned]
        state["python_mismatch"] = _python_mismatch(settings, tree)
        state["unisolated"] = [{"module": f.module, "tree": f.tree} for f in stored if _unisolated(layout, f)]
        state["last_run"] = _for_trees(out["last_run"], plan) if isinstance(plan, Plan) else None
        out["targets"][name] = state
    return out


def _owners(settings: Settings, plans: dict[str, Plan | BadInput]) -> dict[NodeKey, str]:
    """The one target each planned module is counted under: the target of its tree where that target
    plans it, else the first that does (a cuda target's plan holds the cpu-tree modules it loads, which
    the cpu target counts)."""
    owners: dict[NodeKey, str] = {}
    for name, plan in plans.items():
        for node in plan.nodes if isinstance(plan, Plan) else []:
            if settings.target(name).tree == node.tree or node.key not in owners:
                owners[node.key] = name
    return owners


def _planned(layout: Layout, plan: Plan, owners: dict[NodeKey, str], target: str) -> dict:
    published_, missing, failed, drift = [], [], [], []
    for node in (n for n in plan.nodes if owners[n.key] == target):
        entry = {"module": node.module, "tree": node.tree}
        if node.installed:
            published_.append(entry)
            manifest = drifted(layout, node)
            if manifest:
                drift.append({**entry, "easyconfig": str(node.easyconfig), "built_from": manifest["sha256"],
                              "now": node.sha256})
            continue
        missing.append(entry)
        record = records.latest(layout, node.tree, node.module)
        if record and record["exit_code"] not in (0, None):
            failed.append({**entry, "record": record})
    return {"error": None, "published": published_, "missing": missing, "failed": failed, "drifted": drift}


def _unplanned(stored: list[Finding], err: BadInput) -> dict:
    """A target that could not be planned: its error, and what its trees' stores hold."""
    return {"error": str(err), "published": [{"module": f.module, "tree": f.tree} for f in stored],
            "missing": [], "failed": [], "drifted": []}


def _integrity(mine: list[Finding]) -> dict:
    return {"damaged": [{"module": f.module, "tree": f.tree, "problems": f.problems} for f in mine if f.problems],
            "not_live": [{"module": f.module, "tree": f.tree, "why": f.not_live} for f in mine if f.not_live],
            "unrecorded": [{"module": f.module, "tree": f.tree} for f in mine if not f.recorded]}


def _unisolated(layout: Layout, found: Finding) -> bool:
    """Whether the published build of a module ran without a sandbox (sandbox.unisolated allowed it). A
    garbled manifest says nothing of it: the module's integrity finding reports the damage."""
    try:
        manifest = read_manifest(layout, found.tree, found.module)
    except Garbled:
        return False
    record = records.read(manifest["record"]) if manifest and manifest.get("record") else None
    return isinstance(record, dict) and UNISOLATED in str(record.get("where", ""))


def run_in_progress(layout: Layout) -> dict | None:
    """The run lock's holder (without its token), and whether it looks gone (the next run takes over)."""
    holder = read_holder(layout.run_lock())
    if holder is None:
        return None
    unknown = {"holder": f"an unreadable lock ({layout.run_lock()})", "host": "?", "pid": "?",
               "started": holder["heartbeat"]}  # torn or garbled: read_holder kept the well-formed fields
    return {**unknown, **{k: v for k, v in holder.items() if k != "token"}, "gone": holder_gone(holder, time.time())}


def _for_trees(last_run: dict | None, plan: Plan) -> dict | None:
    """The last run as one target saw it: only the nodes of its plan."""
    if last_run is None:
        return None
    mine = {f"{n.tree}/{n.module}" for n in plan.nodes}
    return {**last_run, "built": [k for k in last_run["built"] if k in mine],
            "failed": [k for k in last_run["failed"] if k in mine],
            "blocked": {k: v for k, v in last_run["blocked"].items() if k in mine}}


def _python_mismatch(settings: Settings, tree: str) -> list[dict]:
    """Published modules (planned or not) whose Python packages would not import in the notebook's Python."""
    out = []
    for module in store_modules(settings.layout, tree):
        built_for = python_minor(settings.layout.module_file(tree, module).read_text())
        if built_for and settings.python_version and built_for != settings.python_version:
            out.append({"module": module, "tree": tree, "python": built_for})
    return out
