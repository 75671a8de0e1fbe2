"""Damage after publish, with real EasyBuild and Lmod: verify and status name it, build refuses to republish it."""

import json
import os
import time

import pytest

from tests.helpers import (
    bundle_easyconfig,
    copy_site_easyconfigs,
    link_sources,
    modlib,
    write_config,
    write_easystack,
)

pytestmark = pytest.mark.e2e

MARKUPSAFE = "MarkupSafe/3.0.2-GCCcore-system"
TIDY = {v: f"tidy/{v}-GCCcore-system" for v in ("1.0", "2.0")}
BROKEN = "broken-1.0-GCCcore-system.eb"


@pytest.fixture()
def library(tmp_path, source_cache):
    """MarkupSafe and two versions of a Bundle, built; a second target whose easyconfig does not parse is
    added only afterwards (it would stop the build)."""
    site = copy_site_easyconfigs(tmp_path / "site")
    (site / "t" / "tidy").mkdir(parents=True)
    for version in TIDY:
        text = bundle_easyconfig("tidy", "").replace("version = '1.0'", f"version = '{version}'")
        (site / "t" / "tidy" / f"tidy-{version}-GCCcore-system.eb").write_text(text)
    (site / "b" / "broken").mkdir(parents=True)
    (site / "b" / "broken" / BROKEN).write_text("name = 'broken'\nversion = \n")
    stack = write_easystack(tmp_path / "cpu.yaml", ["MarkupSafe-3.0.2-GCCcore-system.eb",
                                                    "tidy-1.0-GCCcore-system.eb", "tidy-2.0-GCCcore-system.eb"])
    targets = {"cpu": {"kind": "cpu", "tree": "cpu", "easystacks": [str(stack)]}}
    config = write_config(tmp_path, targets, easyconfig_paths=[str(site)])
    link_sources(tmp_path / "library", source_cache)
    built = modlib("build", "--config", str(config))
    assert built.returncode == 0, built.stdout + built.stderr
    return tmp_path / "library", site, stack, config


def verify(config, *modules):
    result = modlib("verify", "--config", str(config), "--json", *modules)
    damaged = json.loads(result.stdout)["damaged"]
    return result.returncode, {f"{d['tree']}/{d['module']}": d["problems"] for d in damaged}


def test_damage_is_named_and_never_republished(library):
    root, site, stack, config = library
    assert verify(config) == (0, {})
    store = root / "cpu" / "modules" / "all"
    with open(store / f"{MARKUPSAFE}.lua", "a") as f:  # in place: every kept generation shares the inode
        f.write('setenv("PYTHONPATH", "/tmp/evil")\n')
    (prefix,) = (root / "cpu" / "software").glob("tidy-*/tidy/1.0-GCCcore-system")  # its build's own prefix
    victim = sorted(p for p in prefix.rglob("*") if p.is_file())[0]
    victim.unlink()
    (root / "live" / "trees" / "cpu" / "modules" / "all" / f"{TIDY['2.0']}.lua").unlink()  # a publish cut short

    code, damaged = verify(config)
    assert code == 1 and sorted(damaged) == [f"cpu/{MARKUPSAFE}", f"cpu/{TIDY['1.0']}", f"cpu/{TIDY['2.0']}"]
    assert "was altered since publish" in damaged[f"cpu/{MARKUPSAFE}"][0]
    assert damaged[f"cpu/{TIDY['1.0']}"] == [f"1 entry of {prefix} deleted: {victim.relative_to(prefix)}"]
    assert "published but not in live" in damaged[f"cpu/{TIDY['2.0']}"][0]
    assert verify(config, "tidy")[1].keys() == {f"cpu/{TIDY['1.0']}", f"cpu/{TIDY['2.0']}"}
    unknown = modlib("verify", "--config", str(config), "Nope")
    assert unknown.returncode == 2 and "modlib verify: not published: Nope" in unknown.stderr

    state = json.loads(modlib("status", "--config", str(config), "--json", check=True).stdout)["targets"]["cpu"]
    assert [d["module"] for d in state["damaged"]] == [MARKUPSAFE, TIDY["1.0"]]
    assert [d["module"] for d in state["not_live"]] == [TIDY["2.0"]]

    live_before = os.readlink(root / "live")
    again = modlib("build", "--config", str(config))
    assert again.returncode == 1
    assert f"warning: cpu/{MARKUPSAFE}: module file {store / MARKUPSAFE}.lua was altered" in again.stdout
    assert os.readlink(root / "live") == live_before

    ambiguous = modlib("build", "--config", str(config), "--rebuild", "tidy")
    assert ambiguous.returncode == 2
    assert f"--rebuild: tidy is ambiguous, name one of: {TIDY['1.0']}, {TIDY['2.0']}" in ambiguous.stderr
    # MarkupSafe: the one version planned. Whichever builds first is stored, and published once both are.
    rebuilt = modlib("build", "--config", str(config), "--rebuild", "MarkupSafe", "--rebuild", TIDY["1.0"])
    assert rebuilt.returncode == 0 and "built 2" in rebuilt.stdout, rebuilt.stdout + rebuilt.stderr
    assert "evil" not in (root / "live" / "trees" / "cpu" / "modules" / "all" / f"{MARKUPSAFE}.lua").read_text()
    assert verify(config) == (0, {})  # tidy/2.0 is in the new generation again


def test_status_shows_orphans_the_run_in_progress_and_survives_a_broken_easyconfig(library):
    root, site, stack, config = library
    write_easystack(stack, ["MarkupSafe-3.0.2-GCCcore-system.eb", "tidy-1.0-GCCcore-system.eb"])
    broken = write_easystack(root.parent / "broken.yaml", [BROKEN])
    targets = {"cpu": {"kind": "cpu", "tree": "cpu", "easystacks": [str(stack)]},
               "other": {"kind": "cpu", "tree": "other", "easystacks": [str(broken)]}}
    write_config(root.parent, targets, easyconfig_paths=[str(site)])
    now = time.time()
    holder = {"holder": "modlib build", "host": "builder-pod-7", "pid": 1, "token": "t", "started": now - 60,
              "heartbeat": now}
    (root / ".modlib" / "run.lock").write_text(json.dumps(holder))

    result = modlib("status", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert f"orphaned: cpu/{TIDY['2.0']} (published, in no curated list any more)" in result.stdout
    assert "other: 0 published" in result.stdout and f"error: {site / 'b' / 'broken' / BROKEN}" in result.stdout
    assert "run in progress: modlib build on builder-pod-7, process 1, since" in result.stdout
    info = json.loads(modlib("status", "--config", str(config), "--json", check=True).stdout)
    assert info["run_in_progress"]["gone"] is False and "token" not in info["run_in_progress"]
    assert info["targets"]["cpu"]["error"] is None and len(info["targets"]["cpu"]["published"]) == 3
