"""A real JupyterLab server of the notebook image, on a library, as the image's user would get it.

The server comes from the image's Python environment (Debian's python3, the image's pinned
requirements.txt, its Jupyter startup hook), runs as uid 1000 in a private mount namespace whose
/etc/profile.d is the image's (Debian's lmod.sh and modlib.sh) and where the library is mounted
read-only at its own path (tests/k8s/pod_sandbox.py sets that up, then drops to the user).

Kernels run the library's own Python with its ipykernel module, which the library holds: nothing of
the image's Python is needed. A library built for the image's Python (library.yaml's python.executable,
the migration path) runs that one by its path, which the image provides with its packages: for such a
library the namespace shows the image venv's site-packages at that Python's (the checkout's .venv), so
the kernel is that Python with the image's ipykernel.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.panel_extension import install_panel
from tests.helpers import REPO

IMAGE = REPO / "k8s-jobs" / "notebook-image"
VENV = REPO / ".venv" / "notebook-venv"
POD_SANDBOX = REPO / "tests" / "k8s" / "pod_sandbox.py"
DEBIAN_PYTHON = "/usr/bin/python3"
USER = (1000, 100)  # jovyan, as the image and Zero to JupyterHub run notebooks


def notebook_venv() -> Path:
    """The image's venv, made like install.sh makes it; remade only when requirements.txt changes
    (`make test-tools` makes it ahead, so a test run does not wait for the download)."""
    requirements = IMAGE / "requirements.txt"
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()
    stamp = VENV / ".requirements-sha256"
    if not stamp.is_file() or stamp.read_text() != digest:
        shutil.rmtree(VENV, ignore_errors=True)
        subprocess.run([DEBIAN_PYTHON, "-m", "venv", str(VENV)], check=True)
        pip = subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", "-r", str(requirements)],
                             capture_output=True, text=True)
        assert pip.returncode == 0, pip.stdout[-3000:] + pip.stderr[-3000:]
        stamp.write_text(digest)
    for name, dest in (("jupyter_server_config.py", "etc/jupyter"), ("modlib_launch.py", "etc/jupyter"),
                       ("overrides.json", "share/jupyter/lab/settings")):
        (VENV / dest).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(IMAGE / name, VENV / dest / name)  # as install.sh installs them
    install_panel(VENV)
    return VENV


@dataclass
class Server:
    url: str
    token: str
    home: Path
    log: Path

    def get(self, path: str) -> dict:
        request = urllib.request.Request(f"{self.url}{path}", headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _image_profile_d(folder: Path) -> Path:
    """What the image's /etc/profile.d holds: Debian lmod's init, then modlib.sh."""
    folder.mkdir(mode=0o755)
    shutil.copy2("/etc/profile.d/lmod.sh", folder / "lmod.sh")
    shutil.copy2(IMAGE / "modlib.sh", folder / "modlib.sh")
    return folder


def _site_packages(prefix: Path) -> Path:
    return prefix / "lib" / "python{}.{}".format(*sys.version_info[:2]) / "site-packages"


def _spec(venv: Path, root: Path, target: str, home: Path, profile_d: Path, port: int, token: str,
          image_python: Path | None) -> dict:
    env = {"PATH": f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "SHELL": "/bin/bash",
           "LMOD_CMD": "/usr/share/lmod/lmod/libexec/lmod", "MODLIB_ROOT": str(root), "MODLIB_TARGET": target,
           "LANG": "C.UTF-8"}
    command = jupyter_lab_command(str(venv / "bin" / "jupyter"), port, token, str(home))
    packages = [] if image_python is None else [{"source": str(_site_packages(venv)), "read_only": True,
                                                 "target": str(_site_packages(image_python.parent.parent))}]
    return {"mounts": [{"source": str(root), "target": str(root), "read_only": True},
                       {"source": str(profile_d), "target": "/etc/profile.d", "read_only": True}, *packages],
            "empty_dirs": [], "read_only_root": False, "reveal": [str(root), str(REPO)],
            "uid": USER[0], "gid": USER[1], "workdir": str(home), "env": env, "command": command}


def _wait_ready(server: Server, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"jupyter lab exited {proc.returncode}:\n{server.log.read_text()[-4000:]}")
        try:
            server.get("/api/status")
            return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"jupyter lab did not answer in {timeout} s:\n{server.log.read_text()[-4000:]}")


@contextmanager
def jupyter_lab(root: Path, target: str, image_python: Path | None) -> Iterator[Server]:
    """A running server on ``root``'s ``target``; stopped (kernels and launched tools with it) on exit.
    ``image_python``: the Python a library built for the image's Python names (None: the library's own)."""
    venv = notebook_venv()
    scratch = scratch_folder()
    home = scratch / "home"
    home.mkdir()
    os.chown(home, *USER)
    port, token = free_port(), secrets.token_hex(16)
    spec = _spec(venv, root, target, home, _image_profile_d(scratch / "profile.d"), port, token, image_python)
    with serve(spec, scratch, port, token) as server:
        yield server


def scratch_folder() -> Path:
    """A server's folder for its pod spec, log and what it mounts; ``serve`` removes it."""
    scratch = Path(tempfile.mkdtemp(prefix="modlib-notebook-"))
    scratch.chmod(0o755)
    return scratch


def jupyter_lab_command(jupyter: str, port: int, token: str, home: str) -> list[str]:
    """JupyterLab on localhost only, with the test's token, no news or update checks (nothing to reach)."""
    return [jupyter, "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}", f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={home}", "--LabApp.news_url=",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]


@contextmanager
def serve(spec: dict, scratch: Path, port: int, token: str) -> Iterator[Server]:
    """The Jupyter server of pod spec ``spec`` (tests/k8s/pod_sandbox.py), answering on ``port``, in a private
    mount namespace (and pid namespace, for a spec with its image's own root); stopped and ``scratch`` removed
    on exit."""
    (scratch / "pod.json").write_text(json.dumps(spec))
    server = Server(f"http://127.0.0.1:{port}", token, Path(spec["workdir"]), scratch / "jupyter.log")
    namespaces = ["--mount", "--propagation", "private"] + (["--pid", "--fork"] if spec.get("root") else [])
    with server.log.open("w") as log:
        proc = subprocess.Popen(["unshare", *namespaces, sys.executable, str(POD_SANDBOX), str(scratch / "pod.json")],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_ready(server, proc)
        yield server
    finally:
        _stop(proc)
        shutil.rmtree(scratch, ignore_errors=True)


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM lets Jupyter shut its kernels and proxied tools down; what is left of the session goes then."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
