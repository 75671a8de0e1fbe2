"""How plan and plan --diff tell how long building takes: one answer (expected.py's), its source shown."""

import json

from builder.execute.expected import Expected, expected
from builder.layout import Layout
from builder.report.diff_markdown import render
from builder.report.estimates import duration, estimate_run, label
from builder.report.plan_diff import Change, PlanDiff, TargetDiff
from tests.helpers import record
from tests.unit.test_expected import node


def test_labels_show_where_a_figure_comes_from():
    assert label(Expected(754, "its last build")) == "12 min"
    assert label(Expected(1500, "model: GCCcore")) == "~25 min (model)"
    assert label(Expected(95, "Jinja2/3.1.4's last build")) == "~1 min 35 s (Jinja2/3.1.4's last build)"
    assert [duration(s) for s in (42, 120, 3 * 3600 + 65)] == ["42 s", "2 min", "3 h 1 min"]


def test_the_diff_estimates_builds_with_no_record_by_the_model(tmp_path):
    layout = Layout(tmp_path / "library")
    gcc, zlib = node("GCCcore/14.2.0", "compiler"), node("zlib/1.3", "lib")
    record(layout, "zlib/1.3", 61)
    diff = PlanDiff("main", "0" * 40, {"cpu": TargetDiff(
        add=[Change(gcc, False, estimate=expected(layout, gcc))],
        rebuild=[Change(zlib, True, why=("easyconfig changed (zlib-1.3.eb)",), estimate=expected(layout, zlib))])},
        hooks_changed=False)
    text = render(diff)
    assert "| cpu | 1 | 0 | 1 | 1 (~1 h 15 min, 1 by the model) | 1 (1 min 1 s) |" in text
    assert "| builds it | ~1 h 15 min (model) |" in text and "zlib/1.3` | 1 min 1 s |" in text
    cpu = json.loads(json.dumps(diff.as_json()))["targets"]["cpu"]
    assert cpu["estimate"] == {"seconds": 4500.0, "from_model": 1}
    assert cpu["rebuild_on_request"] == {"seconds": 61.0, "from_model": 0}
    assert cpu["add"][0]["estimate_from"] == "model: GCCcore"


def test_the_runs_length_is_the_run_schedulers_with_the_expected_durations(tmp_path):
    layout = Layout(tmp_path / "library")
    # GCCcore -> zlib, and an independent Boost: at 2 at once the run takes the longer of the two branches
    todo = [node("GCCcore/14", "compiler"), node("zlib/1.3", "lib", deps=["GCCcore/14"]), node("Boost/1.8", "lib")]
    run = estimate_run(layout, todo, 2)
    assert run.makespan == (75 + 6) * 60 and run.work(todo) == (75 + 6 + 30) * 60
    assert run.as_json() == {"jobs": 2, "makespan_seconds": 4860.0, "seconds": 6660.0, "from_model": 3}
    assert estimate_run(layout, todo, 1).makespan == run.work(todo)
    record(layout, "Boost/1.8", 3 * 3600)  # Boost's record: now the longest branch
    assert estimate_run(layout, todo, 2).makespan == 3 * 3600
    assert estimate_run(layout, [], 4).makespan == 0
