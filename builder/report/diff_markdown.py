"""A plan diff as Markdown: one comment on a merge request (GitLab and GitHub render the same tables).

A summary row per target first, so a reviewer sees at a glance what the next run after a merge builds
(and, apart, what drifted and is rebuilt only on request), then one table per target that changes:
every module added, dropped or drifted, what it needs, what a merge does with it and how long its
build is expected to take (builder/report/estimates.py).
"""

from __future__ import annotations

from builder.report.estimates import duration, exact, label
from builder.report.plan_diff import Change, PlanDiff, total

_MARKS = {"published": "✓", "added": "+", "to build": "✗"}
_LEGEND = ("needs: ✓ published, + added by this change, ✗ not built yet. Build times are the module's "
           "last build's, else (`~`) another version's or the build model's, one after another.")


def _total(changes: list[Change], nothing: str) -> str:
    seconds, modelled = total(changes)
    if not changes:
        return nothing
    about = "" if all(c.estimate and exact(c.estimate) for c in changes) else "~"
    return f"{len(changes)} ({about}{duration(seconds)}{f', {modelled} by the model' if modelled else ''})"


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
    estimate = label(change.estimate) if change.estimate is not None else ""
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
