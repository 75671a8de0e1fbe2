"""Easystack entries' ``options``, planned as ``eb --dry-run --robot`` plans them: both run here, on
EasyBuild's own SQLite/GCCcore-13.3.0 family, and every refused option is bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from builder.execute.command import host_env, invocation, staged_file
from builder.execute.inputs import stage_node_files
from builder.plan.planner import make_plan
from builder.read.config import load_settings
from tests.helpers import EB_MODULE, REPO, eb_dry_run, modlib, write_config

UPSTREAM = Path(sys.prefix) / "easybuild" / "easyconfigs"
SQLITE = "SQLite-3.45.3-GCCcore-13.3.0.eb"
EASYBLOCK = """from easybuild.easyblocks.generic.configuremake import ConfigureMake


class EB_modlib_test(ConfigureMake):
    pass
"""


def _entries(site2: Path, easyblock: Path) -> list[tuple[str, dict]]:
    """One entry per option; each entry's own modules are told apart by the names they give."""
    return [
        (SQLITE, {"hidden": True}),
        (SQLITE, {"try-software-version": "3.46.0"}),
        (SQLITE, {"filter-deps": "Tcl,libreadline"}),
        (SQLITE, {"try-toolchain-version": "12.3.0"}),  # Tcl 8.6.14 and binutils 2.42 generated for it too
        ("SQLite-3.43.1-GCCcore-13.2.0.eb", {"try-toolchain-name": "GCCcore", "try-toolchain-version": "14.2.0",
                                             "try-update-deps": True, "experimental": True}),
        ("lz4-1.9.4-GCCcore-13.3.0.eb", {"module-naming-scheme": "EasyBuildMNS"}),
        ("pkgconf-2.2.0-GCCcore-13.3.0.eb", {"robot-paths": f"{site2}:{UPSTREAM}"}),
        ("bzip2-1.0.8-GCCcore-13.3.0.eb", {"include-easyblocks": str(easyblock)}),
        ("XZ-5.4.5-GCCcore-13.3.0.eb", {"optarch": "GENERIC"}),
        ("gzip-1.13-GCCcore-13.3.0.eb", {"cuda-compute-capabilities": "8.0,9.0"}),
        ("libreadline-8.2-GCCcore-13.3.0.eb", {"hide-deps": "ncurses"}),  # last: shares what the others plan
    ]


def eb_dry_run_by_entry(easystack: Path, scratch: Path, robot: list[Path], hooks: Path) -> list[list[str]]:
    """The modules ``eb --easystack --robot --dry-run`` lists, one list per easystack entry."""
    result = eb_dry_run(["--easystack", str(easystack), f"--hooks={hooks}"], robot, scratch)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    blocks = result.stdout.split("Dry run: printing build status")[1:]
    return [[m for _, m in EB_MODULE.findall(block)] for block in blocks]


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    """modlib's plan and eb's dry run of the same easystack, with the same robot path and hooks."""
    tmp = tmp_path_factory.mktemp("entry-options")
    site, site2 = tmp / "site", tmp / "site2"
    site.mkdir()
    pkgconf = (UPSTREAM / "p" / "pkgconf" / "pkgconf-2.2.0-GCCcore-13.3.0.eb").read_text()
    (site2 / "p" / "pkgconf").mkdir(parents=True)
    (site2 / "p" / "pkgconf" / "pkgconf-2.2.0-GCCcore-13.3.0.eb").write_text(pkgconf + "\nversionsuffix = '-site'\n")
    easyblock = tmp / "modlib_test.py"
    easyblock.write_text(EASYBLOCK)
    entries = _entries(site2, easyblock)
    stack = tmp / "options.yaml"
    stack.write_text(yaml.safe_dump({"easyconfigs": [{name: {"options": opts}} for name, opts in entries]}))
    hooks = REPO / "hooks" / "modlib_hooks.py"
    config = write_config(tmp, {"cpu": {"kind": "cpu", "tree": "cpu", "easystacks": [str(stack)]}},
                          easyconfig_paths=[str(site)])
    env = {"MODLIB_ROOT": str(tmp / "library"), "MODLIB_CACHE": str(tmp / "cache")}
    settings = load_settings(config, env=env)
    plan = make_plan(settings, [settings.target("cpu")])
    scratch = tmp / "eb"
    scratch.mkdir()
    blocks = eb_dry_run_by_entry(stack, scratch, [site, UPSTREAM], hooks)
    assert len(blocks) == len(entries)
    return settings, plan, blocks, entries, stack, config, env


def _closure(plan, module: str) -> set[str]:
    todo, seen = [("cpu", module)], set()
    while todo:
        key = todo.pop()
        if key[1] not in seen:
            seen.add(key[1])
            todo += list(plan.index[key].deps)
    return seen


def test_the_plan_holds_exactly_the_modules_eb_lists(planned):
    settings, plan, blocks, *_ = planned
    assert {n.module for n in plan.nodes} == {m for block in blocks for m in block}
    assert make_plan(settings, [settings.target("cpu")]).nodes == plan.nodes  # the same from the plan cache


@pytest.mark.parametrize("index", range(10), ids=lambda i: "+".join(_entries(Path(), Path())[i][1]))
def test_each_option_plans_its_entry_as_eb_does(planned, index):
    """The entry's module (eb lists it last) and all it pulls in: the same modules in modlib's plan; the node
    records the entry's options unless an earlier entry already plans it (eb would find it installed)."""
    _, plan, blocks, entries, *_ = planned
    listed = blocks[index][-1]
    assert _closure(plan, listed) == set(blocks[index])
    if not any(listed in block for block in blocks[:index]):  # else planned (and built) as an earlier entry wants
        assert dict(plan.index[("cpu", listed)].options) == entries[index][1]


def test_names_follow_the_options_effect(planned):
    _, plan, blocks, *_ = planned
    assert blocks[0][-1] == "SQLite/.3.45.3-GCCcore-13.3.0" and plan.index[("cpu", blocks[0][-1])].hidden
    assert blocks[1][-1] == "SQLite/3.46.0-GCCcore-13.3.0"
    assert len(blocks[2]) == 13 and not {"Tcl/8.6.14-GCCcore-13.3.0", "libreadline/8.2-GCCcore-13.3.0"} & \
        {d for _, d in plan.index[("cpu", "SQLite/3.45.3-GCCcore-13.3.0")].deps}
    assert blocks[5][-1] == "lz4/1.9.4-GCCcore-13.3.0"
    assert blocks[6][-1] == "pkgconf/2.2.0-GCCcore-13.3.0-site"
    # hide-deps: eb lists ncurses hidden for the last entry, and so does the plan
    assert "ncurses/.6.5-GCCcore-13.3.0" in blocks[10] and ("cpu", "ncurses/.6.5-GCCcore-13.3.0") in plan.index


def test_a_tweaked_easyconfig_is_kept_and_is_what_the_plan_was_made_of(planned):
    settings, plan, *_ = planned
    node = plan.index[("cpu", "SQLite/3.46.0-GCCcore-13.3.0")]
    assert node.easyconfig.is_relative_to(settings.cache_dir) and 'version = "3.46.0"' in node.easyconfig.read_text()


def test_the_build_command_builds_the_planned_module(planned, tmp_path):
    """Each entry's node, built by its own `eb` (its argv, with --dry-run added): the module the plan names,
    from a staged copy of exactly the planned file where the site's robot path would not find that file."""
    settings, plan, blocks, *_ = planned
    nodes = [plan.index[("cpu", blocks[i][-1])] for i in (0, 1, 2, 3, 4, 6, 7)]  # those whose eb differs
    stage_node_files(settings, nodes)
    env = host_env(settings, tmp_path)
    staged = set()
    for node in nodes:
        argv = list(invocation(settings, node).argv)
        if argv[1] != node.easyconfig.name:
            staged.add(node.module)
            assert argv[1] == str(staged_file(settings.layout, node.easyconfig))
            assert Path(argv[1]).read_bytes() == node.easyconfig.read_bytes()
        assert not any(a.startswith(("--try-", "--robot-paths")) for a in argv)
        result = subprocess.run([str(Path(sys.executable).parent / "eb"), *argv[1:], "--dry-run",
                                 f"--tmpdir={tmp_path}"], capture_output=True, text=True, env=env, cwd=tmp_path)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        assert {m for _, m in EB_MODULE.findall(result.stdout)} == {node.module}  # its log (on stdout) repeats the line
    assert staged == {"SQLite/3.46.0-GCCcore-13.3.0", "SQLite/3.45.3-GCCcore-12.3.0", "SQLite/3.43.1-GCCcore-14.2.0",
                      "pkgconf/2.2.0-GCCcore-13.3.0-site"}
    generated = {n.module for n in plan.nodes if n.easyconfig.is_relative_to(settings.cache_dir)}
    assert {"Tcl/8.6.14-GCCcore-12.3.0", "binutils/2.42-GCCcore-12.3.0"} < generated
    assert all(invocation(settings, n).argv[1] == str(staged_file(settings.layout, n.easyconfig))
               for n in plan.nodes if n.module in generated)
    easyblock = Path(dict(nodes[-1].options)["include-easyblocks"])
    assert f"--include-easyblocks={staged_file(settings.layout, easyblock)}" in invocation(settings, nodes[-1]).argv
    assert staged_file(settings.layout, easyblock).read_bytes() == easyblock.read_bytes()


def test_a_refused_option_is_bad_input_naming_entry_and_option(planned, tmp_path):
    *_, config, env = planned
    stack = tmp_path / "pr.yaml"
    stack.write_text(yaml.safe_dump({"easyconfigs": [{SQLITE: {"options": {"from-pr": 12345}}}]}))
    result = modlib("plan", "--config", str(config), "--easystack", str(stack), env=env)
    assert result.returncode == 2
    assert str(stack) in result.stderr and SQLITE in result.stderr and "'from-pr'" in result.stderr
    stack.write_text(yaml.safe_dump({"easyconfigs": [{SQLITE: {"options": {"skip-test-step": "sure"}}}]}))
    result = modlib("plan", "--config", str(config), "--easystack", str(stack), env=env)
    assert result.returncode == 2 and f"{stack}: entry {SQLITE}: EasyBuild rejects" in result.stderr
    hierarchical = {"module-naming-scheme": "HierarchicalMNS"}
    stack.write_text(yaml.safe_dump({"easyconfigs": [{SQLITE: {"options": hierarchical}}]}))
    result = modlib("plan", "--config", str(config), "--easystack", str(stack), env=env)
    assert result.returncode == 2 and "'module-naming-scheme'" in result.stderr


def test_one_module_listed_twice_with_different_options_is_bad_input(planned, tmp_path):
    *_, config, env = planned
    stack = tmp_path / "twice.yaml"
    stack.write_text(yaml.safe_dump({"easyconfigs": [{SQLITE: {"options": {"optarch": "GENERIC"}}}, SQLITE]}))
    result = modlib("plan", "--config", str(config), "--easystack", str(stack), "--json", env=env)
    assert result.returncode == 2 and "SQLite/3.45.3-GCCcore-13.3.0 would be built twice" in result.stderr


@pytest.mark.parametrize("option, value", [("parallel", 1), ("parallel", True), ("parallel", "abc"),
                                           ("set-default-module", 0), ("rebuild", "yes")])
def test_a_build_only_value_eb_refuses_is_bad_input_at_entry_and_target(planned, tmp_path, option, value):
    """Planning never hands these to EasyBuild, only every build does: ``eb`` itself refuses the entry (its
    ``--easystack`` run exits 2), and so does `modlib plan`, in one line naming the file, entry and option;
    the same value in library.yaml's easybuild_options is bad input naming the target."""
    *_, config, env = planned
    stack = tmp_path / "bad.yaml"
    stack.write_text(yaml.safe_dump({"easyconfigs": [{SQLITE: {"options": {option: value}}}]}))
    scratch = tmp_path / "eb"
    scratch.mkdir()
    assert eb_dry_run(["--easystack", str(stack)], [UPSTREAM], scratch).returncode == 2
    if option != "rebuild":  # refused at entry level anyway (modlib does not plan it per entry)
        result = modlib("plan", "--config", str(config), "--easystack", str(stack), env=env)
        assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
        assert f"{stack}: entry {SQLITE}: option '{option}'" in result.stderr and "EasyBuild refuses" in result.stderr
    data = yaml.safe_load(config.read_text())
    data["targets"]["cpu"]["easybuild_options"] = {option: value}
    target_config = config.with_name("target-options.yaml")
    target_config.write_text(yaml.safe_dump(data))
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump({"easyconfigs": ["zlib-1.3.1-GCCcore-13.3.0.eb"]}))
    result = modlib("plan", "--config", str(target_config), "--easystack", str(good), env=env)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert (f"{target_config}: target cpu: easybuild_options: option '{option}'" in result.stderr or
            f"{target_config}: invalid configuration at 'targets.cpu.easybuild_options.{option}'" in result.stderr)


def test_a_build_only_value_eb_takes_plans(planned, tmp_path):
    *_, config, env = planned
    stack = tmp_path / "good.yaml"
    stack.write_text(yaml.safe_dump({"easyconfigs": [{SQLITE: {"options": {"parallel": 2,
                                                                           "set-default-module": True}}}]}))
    result = modlib("plan", "--config", str(config), "--easystack", str(stack), "--json", env=env)
    assert result.returncode == 0, result.stderr


#: lz4's closure in the order ``eb --robot`` builds it: an EESSI-style replay lists each with ``robot: false``.
REPLAY = ["M4-1.4.19.eb", "Bison-3.8.2.eb", "flex-2.6.4.eb", "zlib-1.3.1.eb", "binutils-2.42.eb", "GCCcore-13.3.0.eb",
          "help2man-1.49.3-GCCcore-13.3.0.eb", "M4-1.4.19-GCCcore-13.3.0.eb", "zlib-1.3.1-GCCcore-13.3.0.eb",
          "Bison-3.8.2-GCCcore-13.3.0.eb", "flex-2.6.4-GCCcore-13.3.0.eb", "binutils-2.42-GCCcore-13.3.0.eb",
          "lz4-1.9.4-GCCcore-13.3.0.eb"]
MINAPP = """easyblock = 'Bundle'
name = 'minapp'
version = '1.0'
homepage = 'https://example.org'
description = 'minimal-toolchains fixture'
toolchain = {'name': 'GCC', 'version': '13.3.0'}
dependencies = [('zlib', '1.3.1')]
moduleclass = 'tools'
"""


def test_robot_false_and_minimal_toolchains_plan_as_eb_does(tmp_path):
    """EESSI's replays (every entry ``robot: false``, listed in build order) and ComputeCanada's
    ``minimal-toolchains``: the same modules as ``eb --easystack --robot --dry-run`` per entry. With
    ``minimal-toolchains`` minapp's zlib is GCCcore's, though the site has one for its own GCC toolchain
    (which ``eb`` takes without the option)."""
    site = tmp_path / "site"
    (site / "m" / "minapp").mkdir(parents=True)
    (site / "m" / "minapp" / "minapp-1.0-GCC-13.3.0.eb").write_text(MINAPP)
    (site / "z" / "zlib").mkdir(parents=True)
    zlib = (UPSTREAM / "z" / "zlib" / "zlib-1.3.1-GCCcore-13.3.0.eb").read_text()
    (site / "z" / "zlib" / "zlib-1.3.1-GCC-13.3.0.eb").write_text(zlib.replace("'GCCcore'", "'GCC'"))
    entries = [{name: {"options": {"robot": False}}} for name in REPLAY]
    entries.append({"minapp-1.0-GCC-13.3.0.eb": {"options": {"minimal-toolchains": True}}})
    stack = tmp_path / "replay.yaml"
    stack.write_text(yaml.safe_dump({"easyconfigs": entries}))
    config = write_config(tmp_path, {"cpu": {"kind": "cpu", "tree": "cpu", "easystacks": [str(stack)]}},
                          easyconfig_paths=[str(site)])
    settings = load_settings(config, env={"MODLIB_ROOT": str(tmp_path / "lib"), "MODLIB_CACHE": str(tmp_path / "c")})
    plan = make_plan(settings, [settings.target("cpu")])
    scratch = tmp_path / "eb"
    scratch.mkdir()
    blocks = eb_dry_run_by_entry(stack, scratch, [site, UPSTREAM], REPO / "hooks" / "modlib_hooks.py")
    assert [len(block) for block in blocks[:-1]] == [1] * len(REPLAY)  # robot: false: the entry alone
    assert {n.module for n in plan.nodes} == {m for block in blocks for m in block}
    assert "zlib/1.3.1-GCCcore-13.3.0" in blocks[-1] and "zlib/1.3.1-GCC-13.3.0" not in blocks[-1]
    assert _closure(plan, "minapp/1.0-GCC-13.3.0") == set(blocks[-1])
    node = plan.index[("cpu", "minapp/1.0-GCC-13.3.0")]
    assert ("cpu", "zlib/1.3.1-GCCcore-13.3.0") in node.deps and dict(node.options) == {"minimal-toolchains": True}
    assert "--minimal-toolchains" in invocation(settings, node).argv  # its build resolves zlib as planned
    replayed = {block[0] for block in blocks[:-1]}
    assert all(n.options == () for n in plan.nodes if n.module in replayed)  # robot: false is no build option
