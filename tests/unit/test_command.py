"""The per-node command is a function of the node and the target alone: Kubernetes runs the same one."""

import json
import os
import sys
from pathlib import Path

import pytest

from builder.errors import RunFailed
from builder.execute.command import clear_leftovers, host_env, invocation
from builder.execute.inputs import stage_inputs
from builder.plan.graph import Node
from builder.read.config import load_settings
from tests.helpers import REPO, write_config, write_easystack

SETTINGS = load_settings(REPO / "easyconfigs" / "library.yaml", env={"MODLIB_ROOT": "/srv/library"})


def saxpy(hidden=False):
    return Node(tree="cuda", module="saxpy/1.0-GCCcore-system-CUDA-13.2.2", name="saxpy",
                easyconfig=REPO / "easyconfigs/s/saxpy/saxpy-1.0-GCCcore-system-CUDA-13.2.2.eb", target="cuda",
                deps=(("cuda", "CUDA/13.2.2"), ("cpu", "GCCcore/system")), installed=False, sha256="0",
                hidden=hidden)


def test_command_has_no_host_paths_and_no_root_only_flags():
    inv = invocation(SETTINGS, saxpy())
    text = " ".join(inv.argv) + " " + " ".join(v for _, v in inv.env)
    assert str(REPO) not in text and ".venv" not in text
    assert "allow-use-as-root" not in text
    assert inv.argv[:2] == ("eb", "saxpy-1.0-GCCcore-system-CUDA-13.2.2.eb")
    assert "--robot" not in " ".join(inv.argv)


def test_command_targets_the_nodes_tree_and_staging():
    argv = invocation(SETTINGS, saxpy()).argv
    (software,) = [a for a in argv if a.startswith("--installpath-software=")]
    assert software.startswith("--installpath-software=/srv/library/cuda/software/saxpy-")
    assert "--installpath-modules=/srv/library/cuda/.staging/saxpy--1.0-GCCcore-system-CUDA-13.2.2" in argv
    assert "--sourcepath=/srv/library/sources" in argv
    assert "--cuda-compute-capabilities=8.0,9.0" in argv and "--optarch=GENERIC" in argv


def test_cuda_node_sees_cuda_tree_before_cpu_tree():
    env = dict(invocation(SETTINGS, saxpy()).env)
    assert env["MODULEPATH"] == "/srv/library/cuda/modules/all:/srv/library/cpu/modules/all"
    assert env["MODLIB_TARGET_KIND"] == "cuda" and env["MODLIB_ROOT"] == "/srv/library"


def test_hidden_and_rebuild_flags():
    argv = invocation(SETTINGS, saxpy(hidden=True), rebuild=True).argv
    assert "--hidden" in argv and "--rebuild" in argv


def test_host_env_carries_root_override_and_robot_path(tmp_path):
    env = host_env(SETTINGS, tmp_path, base={"PATH": "/usr/bin", "PYTHONPATH": "/x"})
    assert env["EASYBUILD_ROBOT_PATHS"].startswith(str(REPO / "easyconfigs") + os.pathsep)
    assert env["EASYBUILD_HOOKS"] == str(SETTINGS.hooks)
    assert "PYTHONPATH" not in env
    if os.geteuid() == 0:
        assert env["EASYBUILD_ALLOW_USE_AS_ROOT_AND_ACCEPT_CONSEQUENCES"] == "1"


def test_builds_get_the_notebook_images_python_only_on_the_migration_path(tmp_path):
    """The demo has its own Python module: no MODLIB_PYTHON, only the runner's own tools (eb) on PATH. A
    library built for an image's Python (library.yaml's ``python:``) gets that Python first, and named."""
    base = {"PATH": "/usr/bin", "MODLIB_PYTHON": "/leaked/python"}
    own = host_env(SETTINGS, tmp_path, base=base)
    assert SETTINGS.python is None and "MODLIB_PYTHON" not in own
    assert own["PATH"] == os.pathsep.join([str(Path(sys.executable).parent), "/usr/bin"])
    stack = write_easystack(tmp_path / "cpu.yaml", [])
    config = write_config(tmp_path, {"cpu": {"kind": "cpu", "tree": "cpu", "easystacks": [str(stack)]}})
    migration = load_settings(config, env={"MODLIB_ROOT": str(tmp_path / "library")})
    env = host_env(migration, tmp_path, base=base)
    assert env["MODLIB_PYTHON"] == migration.python == sys.executable
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)


def test_each_build_gets_a_fresh_prefix_and_a_rebuild_never_the_published_one(tmp_path):
    settings = load_settings(REPO / "easyconfigs" / "library.yaml", env={"MODLIB_ROOT": str(tmp_path)})
    first = invocation(settings, saxpy())
    assert invocation(settings, saxpy()).prefix == first.prefix  # a restarted runner adopts the same Job
    assert f"--installpath-software={first.prefix}" in first.argv
    manifest = settings.layout.manifest("cuda", saxpy().module)
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"prefix": first.prefix}))
    rebuild = invocation(settings, saxpy(), rebuild=True)
    assert rebuild.prefix != first.prefix and Path(rebuild.prefix).parent == settings.layout.software("cuda")
    with pytest.raises(RunFailed, match="is the published one"):
        clear_leftovers(settings.layout, saxpy(), first)


def test_staged_inputs_that_no_longer_match_their_digest_are_staged_again(tmp_path):
    settings = load_settings(REPO / "easyconfigs" / "library.yaml", env={"MODLIB_ROOT": str(tmp_path)})
    staged = stage_inputs(settings)
    hooks = staged / "hooks" / settings.hooks.name
    original = hooks.read_text()
    hooks.write_text(original + "\nimport os; os.system('echo poisoned')\n")  # pods would run this
    assert stage_inputs(settings) == staged and hooks.read_text() == original
