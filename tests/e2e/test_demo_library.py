"""The demo library built for real with EasyBuild (cpu and cuda targets) and loaded with Lmod."""

import json
import shlex
from pathlib import Path

import pytest

from builder.execute.lock import RunLock
from builder.layout import Layout
from tests.helpers import REPO, lmod, modlib

pytestmark = pytest.mark.e2e
CONFIG = str(REPO / "easyconfigs" / "library.yaml")
JINJA = ["3.1.4", "3.1.5", "3.1.6"]


@pytest.fixture(scope="module")
def library(demo_library):
    return demo_library


def in_library(library, script, target="cpu"):
    root, env, _ = library
    lines = modlib("env", "--config", CONFIG, "--target", target, env=env, check=True).stdout
    return lmod(f"eval {shlex.quote(lines)}\n{script}")


#: The demo's cpu modules (the plan adds the libraries of the Python module, which every Python package needs).
DEMO = {"GCCcore/system", "EasyBuild/5.4.0", "Python/3.11.2-GCCcore-system", "MarkupSafe/3.0.2-GCCcore-system",
        "TensorBoard/2.21.0-GCCcore-system", "ipykernel/7.4.0-GCCcore-system", "Lmod/8.7.60-GCCcore-system",
        "dask/2026.8.0-GCCcore-system",
        *(f"Jinja2/{v}-GCCcore-system" for v in JINJA)}


def planned(env) -> list[dict]:
    return json.loads(modlib("plan", "--config", CONFIG, "--json", env=env, check=True).stdout)["nodes"]


def test_every_planned_module_is_published(library):
    root, env, build = library
    nodes = planned(env)
    assert f"built {len(nodes)}, already published 0, failed 0" in build.stdout
    status = json.loads(modlib("status", "--config", CONFIG, "--json", env=env, check=True).stdout)
    for name, target in status["targets"].items():
        assert target["missing"] == [] and target["failed"] == [] and target["drifted"] == [], name
    cpu = {m["module"] for m in status["targets"]["cpu"]["published"]}
    assert cpu == {n["module"] for n in nodes if n["tree"] == "cpu"} and DEMO <= cpu
    # each module counted once, under its own tree's target: the cuda target's plan holds the cpu-tree
    # GCCcore it loads, which "cuda: 3 published" counted again for a tree of 2
    assert [m["tree"] for m in status["targets"]["cuda"]["published"]] == ["cuda"] * len(
        [n for n in nodes if n["tree"] == "cuda"])
    text = modlib("status", "--config", CONFIG, env=env, check=True).stdout
    assert f"cuda: {len([n for n in nodes if n['tree'] == 'cuda'])} published, 0 missing" in text
    assert status["last_run"]["failed"] == [] and len(status["last_run"]["built"]) == len(nodes)


@pytest.mark.parametrize("version", JINJA)
def test_each_side_by_side_version_imports_as_itself_on_the_librarys_python(library, version):
    """Loading a Python package loads the library's Python: its 'python' imports the module's version."""
    out = in_library(library, f"module load Jinja2/{version}-GCCcore-system && python -c 'import sys, jinja2, "
                              "markupsafe._speedups as s; print(jinja2.__version__, s.__file__, sys.executable)'")
    assert out.returncode == 0, out.stderr
    got, speedups, python = out.stdout.split()
    assert got == version
    assert speedups.startswith(str(library[0] / "cpu" / "software" / "MarkupSafe")) and speedups.endswith(".so")
    assert python.startswith(str(library[0] / "cpu" / "software" / "Python-")), python


def test_easybuild_module_runs(library):
    out = in_library(library, "module load EasyBuild/5.4.0 && eb --version")
    assert out.returncode == 0 and "EasyBuild 5.4.0" in out.stdout, out.stderr


def test_cuda_package_carries_sm80_and_sm90_and_the_gpu_property(library):
    out = in_library(library, "module load saxpy && cuobjdump --list-elf $(which saxpy) && module avail 2>&1",
                     target="cuda")
    assert out.returncode == 0, out.stderr
    assert "sm_80" in out.stdout and "sm_90" in out.stdout
    text = (library[0] / "cuda" / "modules" / "all" / "saxpy" / "1.0-GCCcore-system-CUDA-13.2.2.lua").read_text()
    assert 'add_property("arch", "gpu")' in text
    cpu_text = (library[0] / "cpu" / "modules" / "all" / "GCCcore" / "system.lua").read_text()
    assert "gpu" not in cpu_text


def test_env_layers_cuda_tree_over_cpu_tree(library):
    root, env, _ = library
    lines = modlib("env", "--config", CONFIG, "--target", "cuda", env=env, check=True).stdout
    assert f"export MODULEPATH={root}/live/trees/cuda/modules/all:{root}/live/trees/cpu/modules/all" in lines


def test_every_node_run_has_a_build_record(library):
    root = library[0]
    recs = [json.loads(p.read_text()) for p in (root / ".modlib" / "records").rglob("*.json")]
    assert len(recs) == len(planned(library[1]))
    for rec in recs:
        assert rec["exit_code"] == 0 and rec["command"][0] == "eb" and rec["end"] >= rec["start"]
        assert Path(rec["log"]).is_file() and Path(rec["log"]).is_relative_to(root)
    assert not any((root / t / ".staging").exists() and any((root / t / ".staging").iterdir()) for t in ("cpu", "cuda"))


def test_second_run_has_nothing_to_do(library):
    root, env, _ = library
    again = modlib("build", "--config", CONFIG, env=env)
    assert again.returncode == 0 and f"built 0, already published {len(planned(env))}" in again.stdout


def test_second_run_while_one_runs_is_refused(library):
    root, env, _ = library
    with RunLock(Layout(root), holder="modlib build (test)"):
        refused = modlib("build", "--config", CONFIG, env=env)
    assert refused.returncode == 3
    assert "another run holds the library lock (modlib build (test)" in refused.stderr
