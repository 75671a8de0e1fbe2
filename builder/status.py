"""What the library holds per target: published, missing, failed, drifted, and the last run."""

from __future__ import annotations

from builder.execute import records
from builder.plan.graph import Plan
from builder.publish.featured import python_minor
from builder.publish.live import read_manifest
from builder.read.config import Settings


def library_status(settings: Settings, plans: dict[str, Plan]) -> dict:
    """``plans`` maps each target name to its plan (made by the caller: planning is the only EasyBuild part)."""
    out: dict = {"root": str(settings.root), "targets": {}, "last_run": records.read_last_run(settings.layout)}
    for name, plan in plans.items():
        published, missing, failed, drifted = [], [], [], []
        for node in plan.nodes:
            entry = {"module": node.module, "tree": node.tree}
            if node.installed:
                published.append(entry)
                manifest = read_manifest(settings.layout, node.tree, node.module)
                if manifest and manifest["sha256"] != node.sha256:
                    drifted.append({**entry, "easyconfig": str(node.easyconfig),
                                    "built_from": manifest["sha256"], "now": node.sha256})
                continue
            missing.append(entry)
            record = records.latest(settings.layout, node.tree, node.module)
            if record and record["exit_code"] not in (0, None):
                failed.append({**entry, "record": record})
        out["targets"][name] = {"published": published, "missing": missing, "failed": failed,
                                "drifted": drifted, "python_mismatch": _python_mismatch(settings, name),
                                "last_run": _for_trees(out["last_run"], plan)}
    return out


def _for_trees(last_run: dict | None, plan: Plan) -> dict | None:
    """The last run as one target saw it: only the nodes of its plan."""
    if last_run is None:
        return None
    mine = {f"{n.tree}/{n.module}" for n in plan.nodes}
    return {**last_run, "built": [k for k in last_run["built"] if k in mine],
            "failed": [k for k in last_run["failed"] if k in mine],
            "blocked": {k: v for k, v in last_run["blocked"].items() if k in mine}}


def _python_mismatch(settings: Settings, target: str) -> list[dict]:
    """Published modules (planned or not) whose Python packages would not import in the notebook's Python."""
    out = []
    for tree in settings.layered_trees(settings.target(target)):
        base = settings.layout.store(tree)
        for path in sorted(base.rglob("*.lua")) if base.is_dir() else []:
            built_for = python_minor(path.read_text())
            if built_for and built_for != settings.python_version:
                module = str(path.relative_to(base))[: -len(".lua")]
                out.append({"module": module, "tree": tree, "python": built_for})
    return out
