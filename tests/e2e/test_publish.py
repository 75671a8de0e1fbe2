"""What notebooks see of the demo library: one live view, its cache, its featured index, read-only."""

import json
import os
import shutil
import subprocess

import jsonschema
import pytest

from tests.helpers import REPO, lmod, modlib

pytestmark = pytest.mark.e2e
CONFIG = str(REPO / "easyconfigs" / "library.yaml")
SCHEMA = json.loads((REPO / "builder" / "schemas" / "featured.schema.json").read_text())


def test_live_view_is_one_generation_behind_one_symlink(demo_library):
    root = demo_library[0]
    live = root / "live"
    assert live.is_symlink() and os.readlink(live).startswith("views/")
    store = root / "cpu" / "modules" / "all" / "Jinja2" / "3.1.4-GCCcore-system.lua"
    seen = live / "trees" / "cpu" / "modules" / "all" / "Jinja2" / "3.1.4-GCCcore-system.lua"
    assert os.stat(seen).st_ino == os.stat(store).st_ino  # a hard link: no copy, same bytes


@pytest.mark.parametrize("target", ["cpu", "cuda"])
def test_env_sh_is_what_modlib_env_prints(demo_library, target):
    root, env, _ = demo_library
    lines = modlib("env", "--config", CONFIG, "--target", target, env=env, check=True).stdout
    env_sh = (root / "live" / "targets" / target / "env.sh").read_text()
    assert [line for line in env_sh.splitlines() if not line.startswith("#")] == lines.splitlines()
    assert "export LMOD_CACHED_LOADS=no" in lines and "LMOD_SHORT_TIME=86400" in lines


@pytest.mark.parametrize("target, expected", [
    ("cpu", {"Jinja2/3.1.6-GCCcore-system", "EasyBuild/5.4.0", "TensorBoard/2.21.0-GCCcore-system"}),
    ("cuda", {"Jinja2/3.1.6-GCCcore-system", "EasyBuild/5.4.0", "TensorBoard/2.21.0-GCCcore-system",
              "saxpy/1.0-GCCcore-system-CUDA-13.2.2"}),
])
def test_featured_index_validates_and_lists_published_modules(demo_library, target, expected):
    folder = demo_library[0] / "live" / "targets" / target
    index = json.loads((folder / "featured.json").read_text())
    jsonschema.Draft202012Validator(SCHEMA).validate(index)
    assert index["target"] == target and {m["module"] for m in index["modules"]} == expected
    gpu = {m["module"]: m["gpu"] for m in index["modules"]}
    assert gpu.get("saxpy/1.0-GCCcore-system-CUDA-13.2.2", True) and not gpu["Jinja2/3.1.6-GCCcore-system"]
    only = lmod(f"module --ignore_cache use {folder / 'featured'}; module -t --ignore_cache avail 2>&1",
                env={"MODULEPATH": ""})
    listed = {line for line in only.stdout.splitlines() if "/" in line and not line.endswith((":", "/"))}
    assert listed == expected


def test_config_default_wins(demo_library):
    root, env, _ = demo_library
    lines = (root / "live" / "targets" / "cpu" / "env.sh").read_text()
    out = lmod(f"{lines}\nmodule load Jinja2 && module -t list 2>&1")
    assert "Jinja2/3.1.6-GCCcore-system" in out.stdout, out.stdout + out.stderr


READ_ONLY_NOTEBOOK = r"""
set -e
mount --bind "$ROOT" "$ROOT"
mount -o remount,bind,ro "$ROOT"
if touch "$ROOT/live/write-test" 2>/dev/null; then echo "volume is writable"; exit 9; fi
source /usr/share/lmod/lmod/init/bash
source "$ROOT/live/targets/cuda/env.sh"
module -D avail > /tmp/modlib-avail-debug.$$ 2>&1  # terse avail uses the cache only with cached loads
grep -q "cacheFile found: $ROOT/live/trees/cuda/cache/spiderT" /tmp/modlib-avail-debug.$$
grep -q "cacheFile found: $ROOT/live/trees/cpu/cache/spiderT" /tmp/modlib-avail-debug.$$
grep -q "buildSpiderT: false" /tmp/modlib-avail-debug.$$
rm -f /tmp/modlib-avail-debug.$$
for m in $MODULES; do module load "$m"; done
module -t list 2>&1
"$PY" -c 'import jinja2, markupsafe; print("imported", jinja2.__version__)'
eb --version
tensorboard --version
"""


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root for unshare -m")
def test_notebook_with_read_only_library(demo_library):
    """A notebook pod's view: the volume read-only at the same path, Lmod serving avail from the cache."""
    root = demo_library[0]
    index = json.loads((root / "live" / "targets" / "cuda" / "featured.json").read_text())
    modules = " ".join(m["module"] for m in index["modules"])
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LOADEDMODULES", "_LMFILES_")}
    env.update(ROOT=str(root), MODULES=modules, PY=str(REPO / ".venv" / "bin" / "python"),
               PATH=f"{REPO / '.venv' / 'bin'}:{env['PATH']}")  # the notebook's Python, as `python`
    out = subprocess.run(["unshare", "-m", "--propagation", "private", "bash", "-c", READ_ONLY_NOTEBOOK],
                         capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "imported 3.1.6" in out.stdout and "EasyBuild 5.4.0" in out.stdout and "2.21.0" in out.stdout
    assert all(m in out.stdout for m in modules.split())


def test_jupyter_lmod_configuration_and_the_launchers(demo_library):
    target = demo_library[0] / "live" / "targets" / "cpu"
    config = json.loads((target / "jupyter_server_config.json").read_text())
    assert config == {"Lmod": {"launcher_pins": ["tensorboard"],
                               "launcher_module_map": {"tensorboard": ["tensorboard/2.21.0-gcccore-system"]}}}
    # library.yaml's notebook.launchers, each with the featured module it loads, for the image's hook
    assert json.loads((target / "launchers.json").read_text()) == {"tensorboard": {
        "title": "TensorBoard", "module": "TensorBoard/2.21.0-GCCcore-system", "timeout": 60, "path_info": "",
        "new_browser_tab": True,
        "command": ["tensorboard", "--logdir", ".", "--host", "127.0.0.1", "--port", "{port}"]}}


def test_the_panels_data_names_every_module_of_the_target_and_marks_gpu_ones(demo_library):
    """modules.json, beside each target's catalogue page: what the notebook panel's extension shows."""
    live = demo_library[0] / "live"
    for target, trees in (("cpu", ["cpu"]), ("cuda", ["cuda", "cpu"])):
        modules = json.loads((live / "targets" / target / "modules.json").read_text())["modules"]
        files = {tree: {f"{f.parent.name}/{f.name.removesuffix('.lua')}"
                        for f in (live / "trees" / tree / "modules" / "all").glob("*/[!.]*.lua")} for tree in trees}
        assert set(modules) == set().union(*files.values())
        assert {m for m, about in modules.items() if about["gpu"]} == files.get("cuda", set())
        assert all(about["description"] and "\n" not in about["description"] for about in modules.values())
