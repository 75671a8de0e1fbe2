"""A plan diff as Markdown: one comment on a merge request (GitLab and GitHub render the same tables).

A summary row per target first, so a reviewer sees at a glance what the next run after a merge builds
(and, apart, what drifted and is rebuilt only on request), then one table per target that changes:
every module added, dropped or drifted, what it needs, what a merge does with it and how long its
build took before.
"""

from __future__ import annotations

from builder.report.plan_diff import Change, Estimate, PlanDiff, total

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


def _total(changes: list[Change], nothing: str) -> str:
    seconds, unknown = total(changes)
    if not changes:
        return nothing
    known = duration(seconds) if unknown < len(changes) else ""
    return f"{len(changes)} ({', '.join(filter(None, [known, f'{unknown} unknown' if unknown else '']))})"


def _row(kind: str, change: Change) -> str:
    node = change.node
    needs = ", ".join(f"{_MARKS[state]} `{module}`" for module, state in change.needs)
    if kind == "add":
        merge = "nothing: already published, now listed" if change.published else "builds it"
    elif kind == "drop":
        merge = "nothing: stays published, orphaned" if change.published else "nothing: never built"
    else:
        merge = f"nothing until `modlib build --rebuild {node.module}`" if change.published else "builds it"
        needs = "; ".join(change.why)
    estimate = _estimate(change.estimate) if kind == "rebuild" or not change.published else ""
    return f"| {kind} | `{node.module}` | {node.tree} | {needs} | {merge} | {estimate} |"


def render(diff: PlanDiff) -> str:
    lines = [f"#### modlib plan: this change against `{diff.ref}` ({diff.commit[:12]})", "",
             "| target | add | drop | drifted | the next run builds | rebuilt only with `--rebuild` |",
             "|---|---|---|---|---|---|"]
    for name, t in diff.targets.items():
        lines.append(f"| {name} | {len(t.add)} | {len(t.drop)} | {len(t.rebuild)} | "
                     f"{_total(t.builds(), 'nothing')} | {_total(t.rebuild, '')} |")
    if diff.hooks_changed:
        lines += ["", "The hooks file changed: builds from now on use it; published modules are not rebuilt."]
    for name, t in diff.targets.items():
        changes = [("add", c) for c in t.add] + [("drop", c) for c in t.drop] + [("rebuild", c) for c in t.rebuild]
        if not changes:
            continue
        lines += ["", f"**{name}**", "", "| change | module | tree | needs / why | a merge | build time |",
                  "|---|---|---|---|---|---|", *(_row(kind, c) for kind, c in changes)]
    if not any(t.add or t.drop or t.rebuild for t in diff.targets.values()):
        lines += ["", "No module is added, dropped or changed."]
    else:
        lines += ["", _LEGEND]
    return "\n".join(lines) + "\n"
