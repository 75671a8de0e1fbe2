"""A JupyterLab server of the notebook image on a library: `make notebook`, the browser tests and the
browser benchmark start theirs here, so that all three run what a notebook pod runs.

What the image has (k8s-jobs/notebook-image): its Python environment (Debian's python3 with the pinned
requirements.txt, made like install.sh makes it, in .venv/notebook-venv), its Jupyter startup hook and
settings, and its /etc/profile.d (Debian lmod's init, modlib.sh, the venv.sh install.sh writes), here
in a folder of the server's own that is shown at /etc/profile.d. The tests run the server as the image's
user in a pod's mount namespace (tests/e2e/notebook.py, as root); `make notebook` runs it as whoever
starts it, under bubblewrap, which shows the library read-only and that profile.d, without root.

Run as ``python -m bench.notebook_server --root library [--target cuda] [--port 8888]``: the server
answers on 127.0.0.1 only; the URL with its token is printed; Ctrl-C stops it.
"""

from __future__ import annotations

import argparse
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

from bench.panel_extension import install_panel

REPO = Path(__file__).resolve().parent.parent
IMAGE = REPO / "k8s-jobs" / "notebook-image"
VENV = REPO / ".venv" / "notebook-venv"
DEBIAN_PYTHON = "/usr/bin/python3"
LMOD_CMD = "/usr/share/lmod/lmod/libexec/lmod"


def notebook_venv(hook: str | None = None) -> Path:
    """The image's venv, made like install.sh makes it; remade only when requirements.txt changes
    (`make test-tools` makes it ahead, so a test run does not wait for the download). ``hook``: the text
    of the Jupyter startup hook to install instead of the image's (the benchmark's old default)."""
    requirements = IMAGE / "requirements.txt"
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()
    stamp = VENV / ".requirements-sha256"
    if not stamp.is_file() or stamp.read_text() != digest:
        shutil.rmtree(VENV, ignore_errors=True)
        subprocess.run([DEBIAN_PYTHON, "-m", "venv", str(VENV)], check=True)
        pip = subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", "-r", str(requirements)],
                             capture_output=True, text=True)
        if pip.returncode != 0:
            raise RuntimeError(f"pip install -r {requirements} failed:\n{pip.stdout[-3000:]}{pip.stderr[-3000:]}")
        stamp.write_text(digest)
    files = {"etc/jupyter/jupyter_server_config.py": hook or (IMAGE / "jupyter_server_config.py").read_text(),
             "etc/jupyter/modlib_launch.py": (IMAGE / "modlib_launch.py").read_text(),
             "share/jupyter/lab/settings/overrides.json": (IMAGE / "overrides.json").read_text()}
    for name, text in files.items():  # where install.sh installs them; rewritten only when they differ
        path = VENV / name
        if not path.is_file() or path.read_text() != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    install_panel(VENV)
    return VENV


def image_profile_d(folder: Path, venv: Path) -> Path:
    """What the image's /etc/profile.d holds (install.sh): Debian lmod's init, modlib.sh, and venv.sh for
    the venv at ``venv`` (install.sh fills in /opt/modlib/venv)."""
    folder.mkdir(mode=0o755)
    shutil.copy2("/etc/profile.d/lmod.sh", folder / "lmod.sh")
    shutil.copy2(IMAGE / "modlib.sh", folder / "modlib.sh")
    (folder / "venv.sh").write_text((IMAGE / "venv.sh").read_text().replace("@VENV@", str(venv)))
    return folder


def environment(venv: Path, root: Path, target: str, home: Path) -> dict[str, str]:
    """The server's environment as the image's Containerfile and the pod set it."""
    return {"PATH": f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "SHELL": "/bin/bash",
            "LMOD_CMD": LMOD_CMD, "MODLIB_ROOT": str(root), "MODLIB_TARGET": target, "LANG": "C.UTF-8"}


def jupyter_lab_command(jupyter: str, port: int, token: str, home: str) -> list[str]:
    """JupyterLab on localhost only, with the given token, no news or update checks (nothing to reach)."""
    return [jupyter, "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}", f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={home}", "--LabApp.news_url=",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate", "--ServerApp.port_retries=0"]


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


@contextmanager
def running(argv: list[str], server: Server, timeout: float = 90) -> Iterator[subprocess.Popen]:
    """``argv`` (a server in whatever sandbox starts it) running in a session of its own, logging to
    ``server.log``, once ``server`` answers; stopped with everything it started on exit."""
    with server.log.open("w") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_ready(server, proc, timeout)
        yield proc
    finally:
        stop_group(proc)


def _wait_ready(server: Server, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"jupyter lab exited {proc.returncode}:\n{server.log.read_text()[-4000:]}")
        try:
            server.get("/api/status")
            return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"jupyter lab did not answer in {timeout} s:\n{server.log.read_text()[-4000:]}")


def stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM to the process group lets Jupyter (or Dask) shut its kernels, tools or workers down; what is
    left of the group goes then."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def bwrap_command(root: Path, profile_d: Path, env: dict[str, str], command: list[str]) -> list[str]:
    """``command`` under bubblewrap (no root needed): the host's file system, but the library read-only
    and ``profile_d`` as /etc/profile.d; only ``env`` in the environment."""
    setenv = [arg for key, value in env.items() for arg in ("--setenv", key, value)]
    return ["bwrap", "--dev-bind", "/", "/", "--ro-bind", str(root), str(root),
            "--ro-bind", str(profile_d), "/etc/profile.d", "--die-with-parent", "--chdir", env["HOME"],
            "--clearenv", *setenv, "--", *command]


@contextmanager
def local_lab(root: Path, target: str, port: int, scratch: Path,
              hook: str | None = None) -> Iterator[tuple[Server, subprocess.Popen]]:
    """The image's server on ``root``'s ``target`` as the current user, under bubblewrap, with its home
    and profile.d in ``scratch`` (``hook``: as for notebook_venv)."""
    venv = notebook_venv(hook)
    home = scratch / "home"
    home.mkdir(exist_ok=True)
    profile_d = image_profile_d(scratch / "profile.d", venv)
    token = secrets.token_hex(16)
    env = environment(venv, root, target, home)
    server = Server(f"http://127.0.0.1:{port}", token, home, scratch / "jupyter.log")
    command = jupyter_lab_command(str(venv / "bin" / "jupyter"), port, token, str(home))
    # Jupyter refuses root unless told: a pod never runs it as root, but an admin's machine may
    argv = bwrap_command(root, profile_d, env, command + (["--allow-root"] if os.geteuid() == 0 else []))
    with running(argv, server) as proc:
        yield server, proc


def _library(root: Path, target: str) -> Path:
    """``root`` made absolute, once it holds a published ``target``; else why not, and exit 2."""
    root = root.resolve()
    targets = root / "live" / "targets"
    if not targets.is_dir():
        raise SystemExit(f"make notebook: no published library at {root} ({targets} is missing): run `make demo`")
    if not (targets / target / "env.sh").is_file():
        have = " ".join(sorted(p.name for p in targets.iterdir()))
        raise SystemExit(f"make notebook: the library at {root} has no target {target!r} (its targets: {have})")
    return root


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path("library"), help="the library's root (default ./library)")
    parser.add_argument("--target", default="cpu", help="the target whose tree the notebook sees (cpu, cuda)")
    parser.add_argument("--port", type=int, default=8888, help="port on 127.0.0.1 (default 8888)")
    args = parser.parse_args(argv)
    try:
        root = _library(args.root, args.target)
    except SystemExit as error:
        print(error, file=sys.stderr)
        raise SystemExit(2) from None
    if shutil.which("bwrap") is None:
        raise SystemExit("make notebook: bubblewrap (bwrap) is missing: `make setup` installs it")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with tempfile.TemporaryDirectory(prefix="modlib-notebook-") as scratch:
        try:
            _serve_until_stopped(root, args.target, args.port, Path(scratch))
        except RuntimeError as error:  # the server did not start: its log says why
            raise SystemExit(f"make notebook: {error}") from None


def _serve_until_stopped(root: Path, target: str, port: int, scratch: Path) -> None:
    with local_lab(root, target, port, scratch) as (server, proc):
        print(f"JupyterLab of the notebook image on {root} (target {target}, the library read-only):\n"
              f"  {server.url}/lab?token={server.token}\n"
              f"Its home (deleted when it stops): {server.home}; its log: {server.log}. Ctrl-C stops it.", flush=True)
        try:
            while proc.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            print("stopping", flush=True)
            return
        raise RuntimeError(f"jupyter lab exited {proc.returncode}:\n{server.log.read_text()[-4000:]}")


if __name__ == "__main__":
    main()
