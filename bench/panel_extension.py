"""modlib's JupyterLab extension (k8s-jobs/notebook-image/panel), built into the notebook venv of the browser
tests and `make notebook` as the image's install.sh builds it (panel/build.sh: JupyterLab's jlpm installs
the builder pinned by yarn.lock, then the build against the venv's JupyterLab). Built again only when a file
of it changes: about 40 s on 2 cores (jlpm install 30 s, the build 5 s)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PANEL = REPO / "k8s-jobs" / "notebook-image" / "panel"
BUILD = REPO / ".venv" / "panel-build"
INSTALLED = Path("share", "jupyter", "labextensions", "@modlib", "jupyterlab-panel")


def _digest() -> str:
    files = sorted(p for p in PANEL.rglob("*") if p.is_file())
    return hashlib.sha256(b"".join(str(p.relative_to(PANEL)).encode() + b"\0" + p.read_bytes()
                                   for p in files)).hexdigest()


def install_panel(venv: Path) -> None:
    """The extension in ``venv``'s JupyterLab, built from the checkout's sources."""
    digest = _digest()
    stamp = venv / INSTALLED / ".sources-sha256"
    if stamp.is_file() and stamp.read_text() == digest:
        return
    shutil.rmtree(BUILD, ignore_errors=True)
    shutil.copytree(PANEL, BUILD)
    built = subprocess.run(["sh", str(PANEL / "build.sh"), str(BUILD), str(venv / INSTALLED),
                            str(venv / "bin" / "python")], capture_output=True, text=True)
    if built.returncode != 0:
        raise RuntimeError(f"{PANEL / 'build.sh'} failed:\n{built.stdout[-3000:]}{built.stderr[-3000:]}")
    stamp.write_text(digest)
