"""Hostile inputs that hold no code (issue 21): source names that leave the source cache, a source cache
whose links lead out of it, module names that are paths, foreign folders as the library root, robot
paths that never end, prefixes still named. Each is refused (bad input; a failed run for a link planted
in the cache), and nothing outside the library changes."""

from __future__ import annotations

import hashlib
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.helpers import modlib, write_config

PAYLOAD = b"export PATH=/attacker\n"


def _library(tmp: Path, easyconfig: str) -> tuple[Path, dict, Path]:
    """A library whose one entry is ``easyconfig`` (the site folder ``tmp/site``), its root ``tmp/library``."""
    site = tmp / "site" / "e" / "evil"
    site.mkdir(parents=True)
    (site / "evil-1.0.eb").write_text(easyconfig)
    stack = tmp / "cpu.yaml"
    stack.write_text(yaml.safe_dump({"easyconfigs": ["evil-1.0.eb"]}))
    config = write_config(tmp, {"cpu": {"kind": "cpu", "tree": "cpu", "easystacks": [str(stack)]}},
                          easyconfig_paths=[str(tmp / "site")])
    return config, {"MODLIB_CACHE": str(tmp / "cache"), "MODLIB_ROOT": str(tmp / "library")}, site / "evil-1.0.eb"


def _evil(sources: str, checksums: str, extra: str = "") -> str:
    return f"""easyblock = 'Tarball'
name = 'evil'
version = '1.0'
homepage = 'https://example.org'
description = "names files outside the source cache"
toolchain = SYSTEM
source_urls = ['file://%(payload)s']
sources = {sources}
checksums = {checksums}
{extra}
moduleclass = 'tools'
"""


def _files(root: Path) -> set[Path]:
    return set(root.rglob("*")) if root.exists() else set()


@pytest.mark.parametrize(("sources", "checksums", "field"), [
    ("[{'filename': '../../../live/targets/cpu/env.sh'}]", "['%(sum)s']", "sources[0] filename"),
    ("[{'filename': '%(victim)s'}]", "['%(sum)s']", "sources[0] filename"),
    ("[{'filename': 'env.sh', 'download_filename': '../payload/env.sh'}]", "['%(sum)s']",
     "sources[0] download_filename"),
    ("['env.sh']", "[{'../../../live/targets/cpu/env.sh': '%(sum)s'}]", "checksums key"),
    ("[{'filename': 'env.sh', 'alt_location': '../../live/targets/cpu'}]", "['%(sum)s']",
     "sources[0] alt_location"),
])
def test_a_source_name_that_leaves_the_source_cache_is_refused(tmp_path, sources, checksums, field):
    payload = tmp_path / "payload" / "env.sh"
    payload.parent.mkdir()
    payload.write_bytes(PAYLOAD)
    victim = tmp_path / "library" / "live" / "targets" / "cpu" / "env.sh"
    victim.parent.mkdir(parents=True)
    victim.write_text("the live env.sh\n")
    (tmp_path / "library" / ".modlib").mkdir()  # a library, as a built one is
    values = {"payload": payload.parent, "sum": hashlib.sha256(PAYLOAD).hexdigest(), "victim": victim}
    config, env, easyconfig = _library(tmp_path, _evil(sources % values, checksums % values) % values)
    before = _files(tmp_path / "library")
    result = modlib("plan", "--config", str(config), "--check-sources", env=env)
    assert result.returncode == 2, result.stderr
    assert str(easyconfig) in result.stderr and field in result.stderr
    assert victim.read_text() == "the live env.sh\n"
    assert _files(tmp_path / "library") == before  # nothing fetched, no folder made
    built = modlib("build", "--config", str(config), env=env)
    assert built.returncode == 2 and field in built.stderr and victim.read_text() == "the live env.sh\n"
    assert not (tmp_path / "library" / "sources").exists()


def test_a_patch_that_leaves_the_source_cache_is_refused(tmp_path):
    config, env, easyconfig = _library(tmp_path, _evil("[]", "[]", "patches = ['../../../../etc/x.patch']"))
    result = modlib("plan", "--config", str(config), "--check-sources", env=env)
    assert result.returncode == 2 and str(easyconfig) in result.stderr and "patches" in result.stderr


def test_a_link_in_the_source_cache_that_leads_out_is_not_written_through(tmp_path):
    payload = tmp_path / "payload" / "evil-1.0.tar.gz"
    payload.parent.mkdir()
    payload.write_bytes(PAYLOAD)
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "library" / "sources" / "e").mkdir(parents=True)
    (tmp_path / "library" / "sources" / "e" / "evil").symlink_to(outside)
    config, env, _ = _library(tmp_path, _evil("['evil-1.0.tar.gz']", f"['{hashlib.sha256(PAYLOAD).hexdigest()}']")
                              % {"payload": payload.parent})
    result = modlib("plan", "--config", str(config), "--check-sources", env=env)
    assert result.returncode == 1 and "leads out of it" in result.stderr, result.stderr
    assert list(outside.iterdir()) == []


def test_a_checksum_mismatch_leaves_nothing_in_the_source_cache(tmp_path):
    payload = tmp_path / "payload" / "evil-1.0.tar.gz"
    payload.parent.mkdir()
    payload.write_bytes(PAYLOAD)
    (tmp_path / "library" / "sources").mkdir(parents=True)
    config, env, easyconfig = _library(tmp_path, _evil("['evil-1.0.tar.gz']", f"['{'0' * 64}']")
                                       % {"payload": payload.parent})
    result = modlib("plan", "--config", str(config), "--check-sources", env=env)
    assert result.returncode == 2 and "checksum mismatch" in result.stderr, result.stderr
    assert list((tmp_path / "library" / "sources").iterdir()) == []


@pytest.mark.parametrize("command", [["remove", "x/1.0"], ["plan", "--check-sources"], ["status"], ["verify"],
                                     ["show", "x"], ["logs", "x"], ["env", "--target", "cpu"]])
def test_a_folder_that_is_not_a_library_is_left_as_it_is(tmp_path, command):
    payload = tmp_path / "payload" / "evil-1.0.tar.gz"
    payload.parent.mkdir()
    payload.write_bytes(PAYLOAD)
    config, env, _ = _library(tmp_path, _evil("['evil-1.0.tar.gz']", f"['{hashlib.sha256(PAYLOAD).hexdigest()}']")
                              % {"payload": payload.parent})
    foreign = tmp_path / "home"
    (foreign / "notes").mkdir(parents=True)
    env["MODLIB_ROOT"] = str(foreign)
    for _ in range(2):  # a first command must not turn it into a library for the next
        result = modlib(command[0], "--config", str(config), *command[1:], env=env)
        assert result.returncode in (0, 2), result.stderr
    assert sorted(p.name for p in foreign.rglob("*")) == ["notes"]


def test_remove_takes_only_a_module_of_the_store_never_a_path(tmp_path):
    from tests.integration.test_incremental_publish import put

    stack = str(tmp_path / "empty.yaml")
    Path(stack).write_text("easyconfigs: []\n")
    config = write_config(tmp_path, {"cpu": {"kind": "cpu", "tree": "cpu", "easystacks": [stack]},
                                     "cuda": {"kind": "cuda", "tree": "cuda", "layers_over": "cpu",
                                              "easystacks": [stack]}})
    root = tmp_path / "library"
    (root / ".modlib").mkdir(parents=True)
    put(root, "cuda", "saxpy/1.0")
    put(root, "cuda", "app/1.0", extra='depends_on("saxpy/1.0")')
    precious = tmp_path / "srv" / "x" / "precious.lua"
    precious.parent.mkdir(parents=True)
    precious.write_text("-- not the library's\n")
    env = {"MODLIB_ROOT": str(root), "MODLIB_CACHE": str(tmp_path / "cache")}
    # a path out of the library, and one from the cpu tree into the cuda tree past app's dependents check
    for name in ("../../../../srv/x/precious", "../../../cuda/modules/all/saxpy/1.0"):
        result = modlib("remove", "--config", str(config), name, env=env)
        assert result.returncode == 2 and "no such module in this library" in result.stderr, result.stderr
    assert precious.is_file() and (root / "cuda" / "modules" / "all" / "saxpy" / "1.0.lua").is_file()
    for command in ("show", "logs", "verify"):
        assert modlib(command, "--config", str(config), "../../../../srv/x/precious", env=env).returncode == 2
    refused = modlib("remove", "--config", str(config), "saxpy/1.0", env=env)
    assert refused.returncode == 2 and "cuda/app/1.0" in refused.stderr


def test_a_prefix_that_anything_names_is_never_built_into_again(tmp_path):
    from builder.execute.command import invocation
    from builder.read.config import load_settings
    from tests.helpers import REPO
    from tests.unit.test_command import saxpy

    settings = load_settings(REPO / "easyconfigs" / "library.yaml", env={"MODLIB_ROOT": str(tmp_path)})
    layout = settings.layout
    old = Path(invocation(settings, saxpy()).prefix)
    (old / "saxpy").mkdir(parents=True)  # a killed build's prefix, which nothing names: its rerun adopts it
    assert invocation(settings, saxpy()).prefix == str(old)
    # removed (no manifest), inside its grace period: the unreferenced markers name it
    layout.unreferenced("cuda").write_text(f'{{"{old.name}": {time.time()}}}')
    fresh = invocation(settings, saxpy()).prefix
    assert fresh != str(old) and Path(fresh).parent == old.parent
    layout.unreferenced("cuda").unlink()
    # an older generation still on the volume loads it
    gen = layout.views() / "20260101T000000-0"
    module_file = layout.view_tree(gen, "cuda") / f"{saxpy().module}.lua"
    module_file.parent.mkdir(parents=True)
    module_file.write_text(f'local root = "{old}/saxpy/1.0"\n')
    layout.view_marker(gen).touch()
    assert invocation(settings, saxpy()).prefix == fresh


def _plan(config: Path, env: dict) -> subprocess.CompletedProcess:
    """``modlib plan``, which hung on these before: a test that fails rather than waits forever."""
    try:
        return modlib("plan", "--config", str(config), env=env, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("plan did not end within 60 s")


@pytest.mark.parametrize("link", ["/", "..", "../../.."])
def test_a_robot_path_with_a_link_above_it_is_refused_not_walked_forever(tmp_path, link):
    config, env, easyconfig = _library(tmp_path, _evil("[]", "[]"))
    (easyconfig.parent / "loop").symlink_to(link)
    result = _plan(config, env)
    assert result.returncode == 2 and f"{easyconfig.parent / 'loop'}: a link in the robot path" in result.stderr


def test_the_file_systems_root_as_robot_path_is_refused(tmp_path):
    config, env, _ = _library(tmp_path, _evil("[]", "[]"))
    config.write_text(config.read_text().replace(str(tmp_path / "site"), "/"))
    result = _plan(config, env)
    assert result.returncode == 2 and "/: a robot path cannot be the file system's root" in result.stderr


def test_a_module_name_that_leaves_the_store_is_refused(tmp_path):
    config, env, easyconfig = _library(tmp_path, _evil("[]", "[]").replace("name = 'evil'", "name = '../../../../x'"))
    result = modlib("plan", "--config", str(config), env=env)
    assert result.returncode == 2 and str(easyconfig) in result.stderr and "not a path inside" in result.stderr


def test_an_alt_location_inside_the_source_cache_is_where_the_file_goes(tmp_path):
    payload = tmp_path / "payload" / "evil-1.0.tar.gz"
    payload.parent.mkdir()
    payload.write_bytes(PAYLOAD)
    config, env, _ = _library(tmp_path, _evil("[{'filename': 'evil-1.0.tar.gz', 'alt_location': 'other'}]",
                                              f"['{hashlib.sha256(PAYLOAD).hexdigest()}']")
                              % {"payload": payload.parent})
    result = modlib("plan", "--config", str(config), "--check-sources", env=env)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "library" / "sources" / "o" / "other" / "evil-1.0.tar.gz").read_bytes() == PAYLOAD


def test_a_removed_install_is_named_until_its_grace_period_ends(tmp_path):
    from builder.publish import prefixes, view
    from builder.read.config import load_settings
    from tests.integration.test_incremental_publish import put

    stack = tmp_path / "empty.yaml"
    stack.write_text("easyconfigs: []\n")
    config = write_config(tmp_path, {"cpu": {"kind": "cpu", "tree": "cpu", "easystacks": [str(stack)]}})
    env = {"MODLIB_ROOT": str(tmp_path / "library"), "MODLIB_CACHE": str(tmp_path / "cache")}
    settings = load_settings(config, env=env)
    layout = settings.layout
    layout.meta().mkdir(parents=True)
    installs = {m: layout.prefix("cpu", f"{m}-0123456789") for m in "abcd"}
    for name, prefix in installs.items():
        (prefix / name).mkdir(parents=True)
        put(layout.root, "cpu", f"{name}/1.0", extra=f'local prefix = "{prefix}"')
    view.publish_view(settings)
    for name in "abc":  # each publishes a generation: the one that still named a's install goes
        assert modlib("remove", "--config", str(config), f"{name}/1.0", env=env).returncode == 0
    assert prefixes.in_use(layout, settings.trees(), view.generations(layout), "cpu", installs["a"])
