"""The demo library's modlib-exec and modlib_session.py (issue 27, points 1 and 2): a container with bash and
the mount alone runs a command with the notebook's modules from the library, and a kernel's session, as data,
gives the command that does it. The container is ``bare_image`` (tests/helpers.py: no Lmod, Lua or Python of
the host's); the kernel is started as Jupyter starts it (tests/e2e/test_notebook_side.py)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from tests.e2e.test_notebook_side import KERNEL, bare_env, run_in_kernel
from tests.helpers import bare_image

pytestmark = pytest.mark.e2e
#: What a pod's command runs: the version and origin of jinja2 and the Python that imports it.
JINJA = "import jinja2, json, sys; print(json.dumps([jinja2.__version__, jinja2.__file__, sys.executable]))"
SESSION = "import os, runpy, json; print(json.dumps(runpy.run_path(os.environ['MODLIB_SESSION_PY'])['session']()))"


def in_bare_image(command: list[str], scratch: Path):
    return bare_image(" ".join(shlex.quote(arg) for arg in command), scratch)


def imports_from_the_library(result, root: Path, version: str) -> None:
    assert result.returncode == 0, result.stderr[-2000:]
    found, where, executable = json.loads(result.stdout.strip().splitlines()[-1])
    assert found == version
    assert where.startswith(f"{root}/cpu/software/Jinja2-") and executable.startswith(f"{root}/cpu/software/Python-")


def test_modlib_exec_runs_a_command_with_the_modules_in_a_bare_image(demo_library, tmp_path):
    root = demo_library[0]
    modlib_exec = str(root / "live" / "bin" / "modlib-exec")
    result = in_bare_image([modlib_exec, "--target", "cpu", "--modules", "Jinja2/3.1.4", "--", "python", "-c", JINJA],
                           tmp_path)
    imports_from_the_library(result, root, "3.1.4")
    refused = in_bare_image([modlib_exec, "--target", "cpu", "--modules", "Jinja2/3.1.4,Jinja2/9.9", "--", "true"],
                            tmp_path)
    assert refused.returncode == 2
    assert refused.stderr == f"modlib-exec: module 'Jinja2/9.9' is not published for target 'cpu' in {root}\n"


def test_a_kernels_session_gives_a_pod_the_kernels_modules(demo_library, monkeypatch, tmp_path):
    """The Jinja2 3.1.4 kernel's session: its target and Lmod's loaded modules, in load order; the pod patch's
    command run in a bare image (a pod with the mount and nothing of the kernel's environment) imports 3.1.4."""
    root = demo_library[0]
    monkeypatch.setenv("JUPYTER_PATH", str(root / "live" / "targets" / "cpu" / "jupyter"))
    session, loaded = run_in_kernel(KERNEL, f"{SESSION}\nprint(os.environ['LOADEDMODULES'])",
                                    bare_env(tmp_path)).strip().splitlines()
    session = json.loads(session)
    assert session["target"] == "cpu" and session["root"] == str(root) and session["mount"]["read_only"] is True
    assert session["modules"] == loaded.split(":") and "Jinja2/3.1.4-GCCcore-system" in session["modules"]
    assert session["not_from_library"] == []
    patch = session["pod_patch"]
    assert patch["volumeMounts"] == [{"name": "modlib-library", "mountPath": str(root), "readOnly": True}]
    assert patch["command"][:3] == [str(root / "live" / "bin" / "modlib-exec"), "--target", "cpu"]
    imports_from_the_library(in_bare_image([*patch["command"], "python", "-c", JINJA], tmp_path), root, "3.1.4")
