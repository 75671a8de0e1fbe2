"""The notebook image's install script, run for real in a Debian bookworm root file system.

As for the builder image (tests/k8s/image_root.py): install.sh runs as root in a root file system
made by mmdebstrap, and the checks run as the Containerfile's USER with its ENV. The library is a
small live view written here (one target, one module, the files modlib publishes beside env.sh);
tests/e2e/test_notebook_browser.py runs the image's Python environment and hooks on the real demo
library.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest

from tests.k8s import image_root
from tests.k8s.validate import K8S_JOBS

IMAGE = image_root.Containerfile(K8S_JOBS / "notebook-image" / "Containerfile")
BUILDER = image_root.Containerfile(K8S_JOBS / "image" / "Containerfile")
REQUIREMENTS = K8S_JOBS / "notebook-image" / "requirements.txt"
NOT_MOUNTED = "modlib: no module library is mounted at /srv/modlib"

pytestmark = [
    pytest.mark.slow,  # builds a Debian root file system with mmdebstrap (minutes)
    pytest.mark.skipif(os.geteuid() != 0, reason="mmdebstrap and chroot need root (the test machines run as root)"),
    pytest.mark.skipif(shutil.which("mmdebstrap") is None, reason="mmdebstrap missing: `make test-tools` installs it"),
]


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory):
    """The image's file system after install.sh (about two minutes), removed afterwards."""
    base = tmp_path_factory.mktemp("notebook-image")
    shutil.copytree(K8S_JOBS / "notebook-image", base / "src")  # what the Containerfile's COPY brings in
    start = time.monotonic()
    image_root.mmdebstrap(base / "rootfs", base / "src", "install.sh", base / "mmdebstrap.log")
    print(f"\nnotebook image root file system: mmdebstrap + install.sh in {time.monotonic() - start:.0f} s")
    yield base / "rootfs"
    if image_root.unmounted(base / "rootfs"):
        shutil.rmtree(base, ignore_errors=True)


def _library(srv: Path) -> None:
    """A live view with target cpu: env.sh, one module, and the featured and jupyter-lmod files."""
    target = srv / "live" / "targets" / "cpu"
    (srv / "live" / "trees" / "cpu" / "modules" / "all" / "hello").mkdir(parents=True)
    (srv / "live" / "trees" / "cpu" / "modules" / "all" / "hello" / "1.0.lua").write_text('setenv("HELLO", "1")\n')
    target.mkdir(parents=True)
    (target / "env.sh").write_text("export MODULEPATH=/srv/modlib/live/trees/cpu/modules/all\n"
                                   "export MODLIB_TARGET=cpu\n")
    (target / "featured.json").write_text(json.dumps({"target": "cpu", "modules": [{"module": "hello/1.0"}]}))
    (target / "jupyter_server_config.json").write_text(json.dumps(
        {"Lmod": {"launcher_pins": ["tensorboard"], "launcher_module_map": {"tensorboard": ["hello/1.0"]}}}))


def _canonical(requirement: str) -> str:
    """``Name==version`` with the name as PyPI compares names (PEP 503)."""
    name, _, version = requirement.strip().partition("==")
    return re.sub(r"[-_.]+", "-", name).lower() + "==" + version


def run(rootfs: Path, script: str):
    return image_root.run_as_image_user(rootfs, IMAGE, script)


def test_containerfile_matches_the_builder_image():
    """Same Debian, the install script, jovyan (1000:100, z2jh's user), the venv where kernels expect it."""
    assert IMAGE.instruction("FROM") == BUILDER.instruction("FROM")
    assert IMAGE.instruction("COPY") == "k8s-jobs/notebook-image /src"  # what the rootfs fixture copies
    assert IMAGE.instruction("RUN").startswith("sh /src/install.sh /src")
    assert IMAGE.instruction("USER") == "1000:100"
    env = IMAGE.env()
    assert env["PATH"].startswith("/opt/modlib/venv/bin:") and BUILDER.env()["PATH"].startswith("/opt/modlib/venv/bin:")
    assert env["MODLIB_ROOT"] == BUILDER.env()["MODLIB_ROOT"] == "/srv/modlib"
    assert not [inst for inst, _ in IMAGE.instructions() if inst in ("ARG", "ADD")]


def test_python_and_jupyter_packages_are_the_pinned_ones(rootfs):
    result = run(rootfs, "python -c 'import sys; print(sys.version[:4])'; python -m pip freeze; "
                         "jupyter server extension list 2>&1; jupyter labextension list 2>&1")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "3.11"  # Debian bookworm's: the image's own packages' (the library has its own Python)
    pins = {_canonical(line) for line in REQUIREMENTS.read_text().splitlines() if "==" in line}
    assert pins <= {_canonical(line) for line in lines}, pins - {_canonical(line) for line in lines}
    for extension in ("jupyterlmod", "jupyter_server_proxy", "@cmd-ntrf/jupyterlab-lmod",
                      "@jupyterhub/jupyter-server-proxy", "@modlib/jupyterlab-panel"):
        assert any(extension in line and "enabled" in line.lower() for line in lines), extension


def test_without_library_shells_and_jupyter_say_so(rootfs):
    result = run(rootfs, "bash -l -c 'type -t module; command -v python'; jupyter server --show-config 2>&1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[:2] == ["function", "/opt/modlib/venv/bin/python"]  # Lmod; the venv first
    assert NOT_MOUNTED in result.stderr  # the login shell's message
    assert NOT_MOUNTED in result.stdout and "Lmod" not in result.stdout.split("Loaded config files:")[-1]


def test_with_library_shells_and_jupyter_take_its_environment(rootfs):
    _library(rootfs / "srv" / "modlib")
    try:
        result = run(rootfs, "bash -l -c 'echo MODULEPATH=$MODULEPATH; module -t avail 2>&1'; "
                             "jupyter server --show-config 2>&1")
    finally:
        for entry in (rootfs / "srv" / "modlib").iterdir():
            shutil.rmtree(entry)
    assert result.returncode == 0, result.stderr
    # Lmod's init ran first: MODULEPATH is the library's alone, not Lmod's defaults plus it
    assert "MODULEPATH=/srv/modlib/live/trees/cpu/modules/all\n" in result.stdout
    assert "hello/1.0" in result.stdout and "modlib:" not in result.stderr + result.stdout
    assert ".launcher_pins = ['tensorboard']" in result.stdout
    assert ".launcher_module_map = {'tensorboard': ['hello/1.0']}" in result.stdout


def test_nothing_in_opt_is_writable_and_no_build_inputs_are_left(rootfs):
    result = run(rootfs, "find /opt ! -type l -writable")
    assert result.returncode == 0 and result.stdout == "", result.stdout + result.stderr
    assert not (rootfs / "src").exists() and not (rootfs / "tmp" / "host-ca.pem").exists()
    assert not (rootfs / "usr" / "bin" / "node").exists()   # built, node gone
    assert not list((rootfs / "var" / "lib" / "apt" / "lists").glob("*Packages*"))
