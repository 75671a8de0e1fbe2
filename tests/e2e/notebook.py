"""A real JupyterLab server of the notebook image, on a library, as the image's user would get it.

The server is bench/notebook_server.py's (the image's Python environment, Jupyter startup hook and
/etc/profile.d, as `make notebook` runs it), here as uid 1000 in a private mount namespace whose
/etc/profile.d is the image's and where the library is mounted read-only at its own path
(tests/k8s/pod_sandbox.py sets that up, then drops to the user).

Kernels run the library's own Python with its ipykernel module, which the library holds: nothing of
the image's Python is needed. A library built for the image's Python (library.yaml's python.executable,
the migration path) runs that one by its path, which the image provides with its packages: for such a
library the namespace shows the image venv's site-packages at that Python's (the checkout's .venv), so
the kernel is that Python with the image's ipykernel.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.notebook_server import (
    Server,
    environment,
    free_port,
    image_profile_d,
    jupyter_lab_command,
    notebook_venv,
    running,
)
from tests.helpers import REPO

POD_SANDBOX = REPO / "tests" / "k8s" / "pod_sandbox.py"
USER = (1000, 100)  # jovyan, as the image and Zero to JupyterHub run notebooks
__all__ = ["USER", "Server", "free_port", "jupyter_lab", "jupyter_lab_command", "scratch_folder", "serve"]


def _site_packages(prefix: Path) -> Path:
    return prefix / "lib" / "python{}.{}".format(*sys.version_info[:2]) / "site-packages"


def _spec(venv: Path, root: Path, target: str, home: Path, profile_d: Path, port: int, token: str,
          image_python: Path | None, library: Path | None = None) -> dict:
    """The pod: the library (``library``, e.g. a slow mount of it, else ``root`` itself) read-only at
    ``root``, the image's profile.d, the image's venv as ``image_python``'s packages where one is named."""
    command = jupyter_lab_command(str(venv / "bin" / "jupyter"), port, token, str(home))
    packages = [] if image_python is None else [{"source": str(_site_packages(venv)), "read_only": True,
                                                 "target": str(_site_packages(image_python.parent.parent))}]
    return {"mounts": [{"source": str(library or root), "target": str(root), "read_only": True},
                       {"source": str(profile_d), "target": "/etc/profile.d", "read_only": True}, *packages],
            "empty_dirs": [], "read_only_root": False, "reveal": [str(root), str(REPO)],
            "uid": USER[0], "gid": USER[1], "workdir": str(home), "env": environment(venv, root, target, home),
            "command": command}


@contextmanager
def jupyter_lab(root: Path, target: str, image_python: Path | None, library: Path | None = None) -> Iterator[Server]:
    """A running server on ``root``'s ``target``; stopped (kernels and launched tools with it) on exit.
    ``image_python``: the Python a library built for the image's Python names (None: the library's own);
    ``library``: what the pod mounts at ``root`` (default: ``root`` itself)."""
    venv = notebook_venv()
    scratch = scratch_folder()
    home = scratch / "home"
    home.mkdir()
    os.chown(home, *USER)
    port, token = free_port(), secrets.token_hex(16)
    spec = _spec(venv, root, target, home, image_profile_d(scratch / "profile.d", venv), port, token, image_python,
                 library)
    with serve(spec, scratch, port, token) as server:
        yield server


def scratch_folder() -> Path:
    """A server's folder for its pod spec, log and what it mounts; ``serve`` removes it."""
    scratch = Path(tempfile.mkdtemp(prefix="modlib-notebook-"))
    scratch.chmod(0o755)
    return scratch


@contextmanager
def serve(spec: dict, scratch: Path, port: int, token: str) -> Iterator[Server]:
    """The Jupyter server of pod spec ``spec`` (tests/k8s/pod_sandbox.py), answering on ``port``, in a private
    mount namespace (and pid namespace, for a spec with its image's own root); stopped and ``scratch`` removed
    on exit."""
    (scratch / "pod.json").write_text(json.dumps(spec))
    server = Server(f"http://127.0.0.1:{port}", token, Path(spec["workdir"]), scratch / "jupyter.log")
    namespaces = ["--mount", "--propagation", "private"] + (["--pid", "--fork"] if spec.get("root") else [])
    try:
        with running(["unshare", *namespaces, sys.executable, str(POD_SANDBOX), str(scratch / "pod.json")], server):
            yield server
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
