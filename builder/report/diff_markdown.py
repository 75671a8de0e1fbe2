"""A plan diff as Markdown: one comment on a merge request (GitLab and GitHub render the same tables).

A summary row per target first, so a reviewer sees at a glance whether the change builds anything,
then one table per target that changes: every module added, dropped or to rebuild, what it needs and
how long its build took before.
"""

from __future__ import annotations

from builder.report.plan_diff import Change, Estimate, PlanDiff, TargetDiff

_MARKS = {"published": "✓", "added": "+", "to build": "✗"}
_LEGEND = ("needs: ✓ published, + added by this change, ✗ not built yet. Build times are the last "
           "build's of the module (or `~` of another version of it), one after another.")


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


def _estimate(est: Estimate | None) -> str:
    if est is None:
        return ""
    if est.seconds is None:
        return "unknown"
    return duration(est.seconds) if est.basis == "its last build" else f"~{duration(est.seconds)} ({est.basis})"


def _total(diff: TargetDiff) -> str:
    seconds, unknown = diff.total()
    if not diff.builds():
        return "nothing to build"
    known = duration(seconds) if unknown < len(diff.builds()) else ""
    return ", ".join(filter(None, [known, f"{unknown} unknown" if unknown else ""]))


def _row(kind: str, change: Change) -> str:
    node = change.node
    needs = ", ".join(f"{_MARKS[state]} `{module}`" for module, state in change.needs)
    if kind == "add":
        published = "yes (listed again)" if change.published else "no"
    elif kind == "drop":
        published = "yes: stays published, orphaned" if change.published else "no"
    else:
        published = "yes: drifted, `modlib build --rebuild`" if change.published else "no"
        needs = "; ".join(change.why)
    return f"| {kind} | `{node.module}` | {node.tree} | {needs} | {published} | {_estimate(change.estimate)} |"


def render(diff: PlanDiff) -> str:
    lines = [f"#### modlib plan: this change against `{diff.ref}` ({diff.commit[:12]})", "",
             "| target | add | drop | rebuild | build time |", "|---|---|---|---|---|"]
    for name, t in diff.targets.items():
        lines.append(f"| {name} | {len(t.add)} | {len(t.drop)} | {len(t.rebuild)} | {_total(t)} |")
    if diff.hooks_changed:
        lines += ["", "The hooks file changed: builds from now on use it; published modules are not rebuilt."]
    for name, t in diff.targets.items():
        changes = [("add", c) for c in t.add] + [("drop", c) for c in t.drop] + [("rebuild", c) for c in t.rebuild]
        if not changes:
            continue
        lines += ["", f"**{name}**", "", "| change | module | tree | needs / why | published | build time |",
                  "|---|---|---|---|---|---|", *(_row(kind, c) for kind, c in changes)]
    if not any(t.add or t.drop or t.rebuild for t in diff.targets.values()):
        lines += ["", "No module is added, dropped or changed."]
    else:
        lines += ["", _LEGEND]
    return "\n".join(lines) + "\n"
