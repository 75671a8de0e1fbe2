"""What the library holds per target: published, missing, failed, drifted, and the last run."""

from __future__ import annotations

from builder.build import records
from builder.plan.graph import Plan
from builder.publish.live import read_manifest
from builder.read.config import Settings


def library_status(settings: Settings, plans: dict[str, Plan]) -> dict:
    """``plans`` maps each target name to its plan (made by the caller: planning is the only EasyBuild part)."""
    out: dict = {"root": str(settings.root), "targets": {}, "last_run": records.read_last_run(settings.root)}
    for name, plan in plans.items():
        published, missing, failed, drifted = [], [], [], []
        for node in plan.nodes:
            entry = {"module": node.module, "tree": node.tree}
            if node.installed:
                published.append(entry)
                manifest = read_manifest(settings.root, node.tree, node.module)
                if manifest and manifest["sha256"] != node.sha256:
                    drifted.append({**entry, "easyconfig": str(node.easyconfig),
                                    "built_from": manifest["sha256"], "now": node.sha256})
                continue
            missing.append(entry)
            record = records.latest(settings.root, node.tree, node.module)
            if record and record["exit_code"] not in (0, None):
                failed.append({**entry, "record": record})
        out["targets"][name] = {"published": published, "missing": missing, "failed": failed,
                                "drifted": drifted}
    return out
