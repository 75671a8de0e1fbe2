"""How the planner finds easyconfigs, compared with ``eb --dry-run --robot`` run in the same test on
EasyBuild's own SQLite/GCCcore-13.3.0 family: archives, hidden dependencies, easystack entries given
by path, the working folder, names held twice, the diagnostics, and ``plan --check-sources``."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import yaml

from builder.execute.command import easyconfig_argument, host_env, invocation, staged_file
from builder.execute.inputs import inputs_dir, stage_node_files
from builder.execute.k8s_objects import ENTRY, build_job
from builder.plan.planner import make_plan
from builder.read.config import load_settings
from tests.helpers import EB_MODULE, bundle_easyconfig, eb_dry_run, modlib, write_config

UPSTREAM = Path(sys.prefix) / "easybuild" / "easyconfigs"
SQLITE = "SQLite-3.45.3-GCCcore-13.3.0.eb"
TCL = "Tcl-8.6.14-GCCcore-13.3.0.eb"


def _site_file(site: Path, rel: str, text: str) -> Path:
    path = site / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _library(tmp: Path, entries: list[str], options: dict | None = None) -> tuple[Path, dict, Path]:
    """A library with the site folder ``tmp/site`` and one easystack ``tmp/stacks/cpu.yaml``."""
    (tmp / "site").mkdir(exist_ok=True)
    stack = tmp / "stacks" / "cpu.yaml"
    stack.parent.mkdir(exist_ok=True)
    stack.write_text(yaml.safe_dump({"easyconfigs": entries}))
    target = {"kind": "cpu", "tree": "cpu", "easystacks": [str(stack)], "easybuild_options": options or {}}
    config = write_config(tmp, {"cpu": target}, easyconfig_paths=[str(tmp / "site")])
    return config, {"MODLIB_CACHE": str(tmp / "cache"), "MODLIB_ROOT": str(tmp / "library")}, stack


def _plan(config: Path, env: dict, cwd: Path | None = None) -> list[dict]:
    result = modlib("plan", "--config", str(config), "--json", env=env, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["nodes"]


def _eb(tmp: Path, args: list[str]) -> subprocess.CompletedProcess:
    scratch = tmp / "eb-scratch"
    scratch.mkdir(exist_ok=True)
    return eb_dry_run(args, [tmp / "site", UPSTREAM], scratch)


def test_archived_easyconfigs_count_only_with_consider_archived(tmp_path):
    archived = _site_file(tmp_path / "site", "__archive__/o/old/old-1.0-GCCcore-system.eb",
                          bundle_easyconfig("old", ""))
    _site_file(tmp_path / "site", ".git/g/ingit/ingit-1.0-GCCcore-system.eb", bundle_easyconfig("ingit", ""))
    config, env, _ = _library(tmp_path, ["old-1.0-GCCcore-system.eb"])
    refused = modlib("plan", "--config", str(config), env=env)
    assert refused.returncode == 2 and "unknown easyconfig 'old-1.0-GCCcore-system.eb'" in refused.stderr
    assert _eb(tmp_path, ["old-1.0-GCCcore-system.eb"]).returncode != 0  # eb does not find it either

    config, env, _ = _library(tmp_path, ["old-1.0-GCCcore-system.eb"], {"consider-archived-easyconfigs": True})
    planned = {n["module"]: n["easyconfig"] for n in _plan(config, env)}
    eb = _eb(tmp_path, ["old-1.0-GCCcore-system.eb", "--consider-archived-easyconfigs"])
    assert eb.returncode == 0, eb.stdout[-2000:]
    assert planned == {m: f for f, m in EB_MODULE.findall(eb.stdout)}
    assert planned["old/1.0-GCCcore-system"] == str(archived)

    config, env, _ = _library(tmp_path, ["ingit-1.0-GCCcore-system.eb"], {"consider-archived-easyconfigs": True})
    assert modlib("plan", "--config", str(config), env=env).returncode == 2  # .git is never looked into


def test_a_hidden_dependency_plans_as_eb_plans_it(tmp_path):
    """SQLite lists Tcl under hiddendependencies and Tcl is an entry too: eb plans Tcl twice, hidden and not."""
    sqlite = (UPSTREAM / "s" / "SQLite" / SQLITE).read_text() + "hiddendependencies = [('Tcl', '8.6.14')]\n"
    _site_file(tmp_path / "site", f"s/SQLite/{SQLITE}", sqlite)
    config, env, _ = _library(tmp_path, [SQLITE, TCL])
    planned = {n["module"]: n for n in _plan(config, env)}
    eb = _eb(tmp_path, [SQLITE, TCL])
    assert eb.returncode == 0, eb.stdout[-2000:]
    assert set(planned) == {m for _, m in EB_MODULE.findall(eb.stdout)}
    assert {"Tcl/.8.6.14-GCCcore-13.3.0", "Tcl/8.6.14-GCCcore-13.3.0"} <= set(planned)
    assert "Tcl/.8.6.14-GCCcore-13.3.0" in planned["SQLite/3.45.3-GCCcore-13.3.0"]["deps"]
    settings = load_settings(config, env)
    plan = make_plan(settings, [settings.target("cpu")])
    hidden, visible = (plan.index[("cpu", f"Tcl/{v}8.6.14-GCCcore-13.3.0")] for v in (".", ""))
    assert "--hidden" in invocation(settings, hidden).argv and "--hidden" not in invocation(settings, visible).argv


def test_an_easyconfig_that_hides_itself_is_bad_input_as_a_dependency_and_planned_as_an_entry(tmp_path):
    tcl = (UPSTREAM / "t" / "Tcl" / TCL).read_text() + "hidden = True\n"
    _site_file(tmp_path / "site", f"t/Tcl/{TCL}", tcl)
    config, env, stack = _library(tmp_path, [SQLITE])
    result = modlib("plan", "--config", str(config), env=env)
    assert result.returncode == 2, result.stderr
    assert str(stack) in result.stderr
    assert ("SQLite/3.45.3-GCCcore-13.3.0 → Tcl/8.6.14-GCCcore-13.3.0 (its easyconfig "
            f"{tmp_path / 'site' / 't' / 'Tcl' / TCL} installs Tcl/.8.6.14-GCCcore-13.3.0") in result.stderr
    eb = _eb(tmp_path, [SQLITE])
    assert eb.returncode != 0 and "Maximum loop cnt" in eb.stderr  # eb cannot resolve it either

    config, env, _ = _library(tmp_path, [TCL])
    eb = _eb(tmp_path, [TCL])
    assert {n["module"] for n in _plan(config, env)} == {m for _, m in EB_MODULE.findall(eb.stdout)}
    assert "Tcl/.8.6.14-GCCcore-13.3.0" in eb.stdout


def test_path_entries_are_read_beside_the_easystack_and_built_from_that_file(tmp_path):
    site_copy = _site_file(tmp_path / "site", "p/pe/pe-1.0-GCCcore-system.eb",
                           bundle_easyconfig("pe", "", description="the site's copy"))
    entry = _site_file(tmp_path, "elsewhere/pe-1.0-GCCcore-system.eb", bundle_easyconfig("pe", "", "the entry's"))
    absolute = _site_file(tmp_path, "abs/pa-1.0-GCCcore-system.eb", bundle_easyconfig("pa", ""))
    config, env, _ = _library(tmp_path, ["../elsewhere/pe-1.0-GCCcore-system.eb", str(absolute)])
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    planned = {n["module"]: n["easyconfig"] for n in _plan(config, env, cwd=elsewhere)}
    assert planned["pe/1.0-GCCcore-system"] == str(entry) and planned["pa/1.0-GCCcore-system"] == str(absolute)

    settings = load_settings(config, env)
    plan = make_plan(settings, [settings.target("cpu")])
    nodes = [plan.index[("cpu", "pe/1.0-GCCcore-system")], plan.index[("cpu", "pa/1.0-GCCcore-system")]]
    stage_node_files(settings, nodes)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    for node in nodes:
        argv = list(invocation(settings, node).argv)
        assert argv[1] == easyconfig_argument(settings, node) == str(staged_file(settings.layout, node.easyconfig))
        assert Path(argv[1]).read_bytes() == node.easyconfig.read_bytes() != site_copy.read_bytes()
        result = subprocess.run([str(Path(sys.executable).parent / "eb"), *argv[1:], "--dry-run",
                                 f"--tmpdir={scratch}"], capture_output=True, text=True,
                                env=host_env(settings, scratch), cwd=scratch)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        listed = EB_MODULE.findall(result.stdout)  # its dependencies first, as --dry-run lists them
        assert {f for f, m in listed if m == node.module} == {argv[1]}  # eb builds the staged copy
        pod = build_job(settings, node, invocation(settings, node), inputs_dir(settings))["spec"]["template"]["spec"]
        assert pod["containers"][0]["command"] == [*ENTRY, *argv]  # a Job reads the same copy, on the volume it mounts
        assert {"name": "library", "mountPath": str(settings.root), "readOnly": True} in \
            pod["containers"][0]["volumeMounts"]


def test_a_path_entry_inside_the_robot_paths_must_be_what_its_name_finds(tmp_path):
    _site_file(tmp_path / "site", f"s/SQLite/{SQLITE}", (UPSTREAM / "s" / "SQLite" / SQLITE).read_text())
    config, env, stack = _library(tmp_path, [str(UPSTREAM / "s" / "SQLite" / SQLITE)])
    result = modlib("plan", "--config", str(config), env=env)
    assert result.returncode == 2 and str(stack) in result.stderr and "inside the robot path" in result.stderr

    config, env, _ = _library(tmp_path, [f"../site/s/SQLite/{SQLITE}"])  # the site's own: built by its name
    settings = load_settings(config, env)
    node = make_plan(settings, [settings.target("cpu")]).index[("cpu", "SQLite/3.45.3-GCCcore-13.3.0")]
    assert node.easyconfig == tmp_path / "site" / "s" / "SQLite" / SQLITE
    assert invocation(settings, node).argv[1] == SQLITE


def test_the_working_folder_is_never_looked_into(tmp_path):
    site_file = _site_file(tmp_path / "site", "w/wd/wd-1.0-GCCcore-system.eb", bundle_easyconfig("wd", ""))
    config, env, _ = _library(tmp_path, ["wd-1.0-GCCcore-system.eb"])
    cwd = tmp_path / "cwd"
    _site_file(cwd, "wd-1.0-GCCcore-system.eb", bundle_easyconfig("wd", "", description="not the site's"))
    layout = load_settings(config, env).layout  # installed from the site's file, as a build records it
    layout.module_file("cpu", "wd/1.0-GCCcore-system").parent.mkdir(parents=True)
    layout.module_file("cpu", "wd/1.0-GCCcore-system").write_text("-- installed\n")
    layout.manifest("cpu", "wd/1.0-GCCcore-system").parent.mkdir(parents=True)
    layout.manifest("cpu", "wd/1.0-GCCcore-system").write_text(
        json.dumps({"sha256": hashlib.sha256(site_file.read_bytes()).hexdigest()}))
    node = {n["module"]: n for n in _plan(config, env, cwd=cwd)}["wd/1.0-GCCcore-system"]
    assert node["easyconfig"] == str(site_file) and node["installed"] and not node["drift"]
    site_file.write_text(bundle_easyconfig("wd", "", description="changed"))
    assert {n["module"]: n for n in _plan(config, env, cwd=cwd)}["wd/1.0-GCCcore-system"]["drift"]


def test_a_name_held_twice_in_one_robot_path_is_bad_input_naming_both(tmp_path):
    one = _site_file(tmp_path / "site", "d/dup/dup-1.0-GCCcore-system.eb", bundle_easyconfig("dup", ""))
    two = _site_file(tmp_path / "site", "old/dup-1.0-GCCcore-system.eb", bundle_easyconfig("dup", "", "older"))
    config, env, stack = _library(tmp_path, ["dup-1.0-GCCcore-system.eb"])
    results = [modlib("plan", "--config", str(config), env=env) for _ in range(2)]
    assert [r.returncode for r in results] == [2, 2] and results[0].stderr == results[1].stderr
    assert str(stack) in results[0].stderr and str(one) in results[0].stderr and str(two) in results[0].stderr


def test_every_missing_dependency_is_named_with_its_chain(tmp_path):
    site = tmp_path / "site"
    _site_file(site, "t/top/top-1.0-GCCcore-system.eb",
               bundle_easyconfig("top", "dependencies = [('mid', '1.0'), ('nothere', '2.0')]"))
    _site_file(site, "m/mid/mid-1.0-GCCcore-system.eb", bundle_easyconfig("mid", "dependencies = [('gone', '3.0')]"))
    _site_file(site, "g/gone/gone-3.1-GCCcore-system.eb", bundle_easyconfig("gone", "").replace("1.0", "3.1"))
    config, env, stack = _library(tmp_path, ["top-1.0-GCCcore-system.eb"])
    result = modlib("plan", "--config", str(config), env=env)
    assert result.returncode == 2 and str(stack) in result.stderr
    assert "2 dependencies cannot be planned" in result.stderr
    assert "top/1.0-GCCcore-system → nothere/2.0-GCCcore-system (no easyconfig in any robot path)" in result.stderr
    assert ("top/1.0-GCCcore-system → mid/1.0-GCCcore-system → gone/3.0-GCCcore-system "
            "(no easyconfig in any robot path; did you mean gone-3.1-GCCcore-system.eb?)") in result.stderr
    eb = _eb(tmp_path, ["top-1.0-GCCcore-system.eb"])
    missing = re.search(r"Missing dependencies: (.*) \(no easyconfig", eb.stdout + eb.stderr)
    assert missing and set(missing.group(1).split(", ")) == {"nothere/2.0-GCCcore-system", "gone/3.0-GCCcore-system"}


def test_an_unknown_name_close_to_a_known_one_gets_a_suggestion(tmp_path):
    config, env, stack = _library(tmp_path, ["SQLite-3.45.3-GCCcore-13.3.eb", "nosuchthing-0.1.eb"])
    result = modlib("plan", "--config", str(config), env=env)
    assert result.returncode == 2 and str(stack) in result.stderr
    assert "unknown easyconfig 'SQLite-3.45.3-GCCcore-13.3.eb' (not in any robot path; did you mean " \
           "SQLite-3.45.3-GCCcore-13.3.0.eb" in result.stderr
    assert "unknown easyconfig 'nosuchthing-0.1.eb' (not in any robot path)" in result.stderr


def _tarball_easyconfig(checksum: str) -> str:
    return f"""easyblock = 'Tarball'
name = 'srcd'
version = '1.0'
homepage = 'https://example.org'
description = "a local source"
toolchain = SYSTEM
sources = ['srcd-1.0.tar.gz']
checksums = ['{checksum}']
moduleclass = 'tools'
"""


def test_check_sources_fetches_and_verifies_without_building(tmp_path):
    site = tmp_path / "site"
    tarball = site / "sources" / "s" / "srcd" / "srcd-1.0.tar.gz"
    tarball.parent.mkdir(parents=True)
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(__file__, arcname="srcd-1.0/README")
    easyconfig = _site_file(site, "s/srcd/srcd-1.0.eb", _tarball_easyconfig("0" * 64))
    config, env, _ = _library(tmp_path, ["srcd-1.0.eb"])
    bad = modlib("plan", "--config", str(config), "--check-sources", env=env)
    assert bad.returncode == 2, bad.stderr
    assert str(easyconfig) in bad.stderr and "srcd-1.0.tar.gz" in bad.stderr and "checksum mismatch" in bad.stderr

    easyconfig.write_text(_tarball_easyconfig(hashlib.sha256(tarball.read_bytes()).hexdigest()))
    good = modlib("plan", "--config", str(config), "--check-sources", env=env)
    assert good.returncode == 0, good.stderr
    fetched = tmp_path / "library" / "sources" / "s" / "srcd" / "srcd-1.0.tar.gz"
    assert fetched.read_bytes() == tarball.read_bytes()
    assert not (tmp_path / "library" / "cpu").exists()  # nothing built
