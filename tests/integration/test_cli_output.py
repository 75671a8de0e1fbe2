"""What the CLI says where it said something else: a reader that goes away (``modlib status | head`` ended
in "internal error: BrokenPipeError"), a ``--where`` key eb does not know (it matched every module), and
how long building what ``plan`` lists takes."""

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from builder.layout import Layout
from tests.helpers import modlib, record, write_config, write_easystack


@pytest.fixture()
def config(tmp_path):
    (tmp_path / "easyconfigs").mkdir()
    stack = write_easystack(tmp_path / "easyconfigs" / "cpu.yaml", ["GCCcore-system.eb"])
    return write_config(tmp_path, {"cpu": {"kind": "cpu", "tree": "cpu", "easystacks": [str(stack)]}})


@pytest.mark.parametrize("command", [["status"], ["plan", "--json"]])
def test_a_closed_pipe_stops_quietly_as_sigpipe_would(config, command):
    exe = Path(sys.executable).parent / "modlib"
    run = subprocess.Popen([str(exe), *command, "--config", str(config)], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    assert run.stdout is not None and run.stderr is not None
    run.stdout.close()  # the reader is gone before the first line is written
    stderr = run.stderr.read()
    assert run.wait(timeout=600) == 128 + signal.SIGPIPE, stderr
    assert stderr == ""


def test_a_where_key_is_an_option_eb_knows(config):
    typo = modlib("status", "--config", str(config), "--where", "cuda-compute-capability=9.0")
    assert typo.returncode == 2 and typo.stderr == (
        "modlib: error: --where: 'cuda-compute-capability' is not an EasyBuild option; did you mean "
        "'cuda-compute-capabilities'?\n")
    known = modlib("status", "--config", str(config), "--where", "skip-test-step=true")
    assert known.returncode == 0 and known.stdout.startswith("0 published modules built with skip-test-step=true")


def test_plan_shows_how_long_building_takes(tmp_path):
    stack = write_easystack(tmp_path / "cpu.yaml", ["Jinja2-3.1.4-GCCcore-system.eb"])
    config = write_config(tmp_path, {"cpu": {"kind": "cpu", "tree": "cpu", "easystacks": [str(stack)], "jobs": 2}})
    env = {"MODLIB_CACHE": str(tmp_path / "cache"), "COLUMNS": "250"}

    def planned():
        return json.loads(modlib("plan", "--config", str(config), "--json", env=env, check=True).stdout)

    plan = planned()
    todo = [n for n in plan["nodes"] if not n["installed"]]
    assert len(todo) > 1 and all(n["estimate"]["from"].startswith("model: ") for n in todo)
    assert all(n["estimate"]["peak_memory_bytes"] > 0 for n in todo)
    assert plan["estimate"]["jobs"] == 2 and plan["estimate"]["from_model"] == len(todo)
    assert plan["estimate"]["seconds"] == round(sum(n["estimate"]["seconds"] for n in todo), 1)
    assert plan["estimate"]["seconds"] / 2 <= plan["estimate"]["makespan_seconds"] <= plan["estimate"]["seconds"]
    jinja = next(n["module"] for n in todo if n["module"].startswith("Jinja2/"))
    record(Layout(tmp_path / "library"), jinja, 4 * 3600)  # Jinja2 built before, and took four hours
    plan = planned()
    mine = next(n for n in plan["nodes"] if n["module"] == jinja)
    assert mine["estimate"]["from"] == "its last build" and mine["estimate"]["seconds"] == 4 * 3600
    assert plan["estimate"]["makespan_seconds"] > 4 * 3600  # it waits for what it needs to build first
    text = modlib("plan", "--config", str(config), env=env, check=True).stdout
    assert re.search(rf"│ {re.escape(jinja)} .*│ to build +│ 4 h 0 min +│", text), text
    assert f"cpu: {len(todo)} to build, ~" in text and " at 2 builds at once (the targets' jobs)" in text
