"""A small real library: a failing node stops only its dependents; drift is reported, rebuilt on request."""

import json
import sys

import pytest

from tests.helpers import (
    bundle_easyconfig,
    copy_site_easyconfigs,
    link_sources,
    lmod,
    modlib,
    write_config,
    write_easystack,
)

pytestmark = pytest.mark.e2e

FAILING = bundle_easyconfig("failing", "sanity_check_paths = {'files': ['bin/never-there'], 'dirs': []}")
NEEDS_FAILING = bundle_easyconfig("needsfailing", "dependencies = [('failing', '1.0')]")

MARKUPSAFE = "MarkupSafe/3.0.2-GCCcore-system"


@pytest.fixture()
def small(tmp_path, source_cache):
    site = copy_site_easyconfigs(tmp_path / "site")
    for name, text in (("failing", FAILING), ("needsfailing", NEEDS_FAILING)):
        (site / name[0] / name).mkdir(parents=True)
        (site / name[0] / name / f"{name}-1.0-GCCcore-system.eb").write_text(text)
    (tmp_path / "easyconfigs").mkdir()
    stack = write_easystack(tmp_path / "easyconfigs" / "cpu.yaml", ["MarkupSafe-3.0.2-GCCcore-system.eb"])
    config = write_config(tmp_path, {"cpu": {"kind": "cpu", "tree": "cpu", "easystacks": [str(stack)]}},
                          easyconfig_paths=[str(site)])
    link_sources(tmp_path / "library", source_cache)
    return tmp_path, site, stack, config


def status(config):
    return json.loads(modlib("status", "--config", str(config), "--json", check=True).stdout)["targets"]["cpu"]


def test_failed_node_stops_only_its_dependents(small):
    tmp, site, stack, config = small
    write_easystack(stack, ["needsfailing-1.0-GCCcore-system.eb", "MarkupSafe-3.0.2-GCCcore-system.eb"])
    result = modlib("build", "--config", str(config))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "built 2, already published 0, failed 1, not built because a dependency failed 1" in result.stdout
    assert "cpu/failing/1.0-GCCcore-system failed; last lines of its log" in result.stdout
    assert "not built: cpu/needsfailing/1.0-GCCcore-system (needs cpu/failing/1.0-GCCcore-system)" in result.stdout
    live = tmp / "library" / "cpu" / "modules" / "all"
    assert (live / "MarkupSafe" / "3.0.2-GCCcore-system.lua").is_file()
    assert not (live / "failing").exists() and not (live / "needsfailing").exists()  # never half-visible
    state = status(config)
    failed = {f["module"]: f["record"] for f in state["failed"]}
    assert list(failed) == ["failing/1.0-GCCcore-system"]
    assert failed["failing/1.0-GCCcore-system"]["exit_code"] != 0
    assert "sanity check" in open(failed["failing/1.0-GCCcore-system"]["log"]).read().lower()
    assert {m["module"] for m in state["missing"]} == {"failing/1.0-GCCcore-system",
                                                       "needsfailing/1.0-GCCcore-system"}


def test_drift_is_reported_and_rebuilt_only_on_request(small):
    tmp, site, stack, config = small
    assert modlib("build", "--config", str(config)).returncode == 0
    live = tmp / "library" / "cpu" / "modules" / "all" / "MarkupSafe" / "3.0.2-GCCcore-system.lua"
    first = live.stat().st_mtime_ns
    ec = site / "m" / "MarkupSafe" / "MarkupSafe-3.0.2-GCCcore-system.eb"
    ec.write_text(ec.read_text() + "\n# an admin's edit under an installed module\n")

    assert [d["module"] for d in status(config)["drifted"]] == [MARKUPSAFE]
    planned = json.loads(modlib("plan", "--config", str(config), "--json", check=True).stdout)["nodes"]
    assert {n["module"]: n["drift"] for n in planned} == {"GCCcore/system": False, MARKUPSAFE: True}
    again = modlib("build", "--config", str(config))
    assert again.returncode == 0 and "built 0" in again.stdout and live.stat().st_mtime_ns == first

    rebuilt = modlib("build", "--config", str(config), "--rebuild", MARKUPSAFE)
    assert rebuilt.returncode == 0 and "built 1" in rebuilt.stdout, rebuilt.stdout + rebuilt.stderr
    assert live.stat().st_mtime_ns != first
    assert status(config)["drifted"] == []
    out = lmod(f"module use {live.parent.parent}; module load {MARKUPSAFE} && {sys.executable} -c 'import markupsafe'")
    assert out.returncode == 0, out.stderr


def test_rebuild_of_unknown_module_is_bad_input(small):
    tmp, site, stack, config = small
    result = modlib("build", "--config", str(config), "--rebuild", "Nope/1.0")
    assert result.returncode == 2 and "--rebuild: module(s) not in the plan: Nope/1.0" in result.stderr
