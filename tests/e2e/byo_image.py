"""A notebook image that is not modlib's, run as Zero to JupyterHub would run it with
k8s-jobs/overlays/notebook/z2jh-values-byo-image.yaml.

The image (tests/data/byo-image) is Debian trixie with its own python3 (3.13) and JupyterLab from PyPI:
no Lmod, no jupyter-lmod, nothing of modlib. Its root file system is made with mmdebstrap
(tests/k8s/image_root.py). Its JupyterLab runs chrooted into that root, as uid 1000, in private mount
and pid namespaces (tests/k8s/pod_sandbox.py), so nothing of the host's /usr (its Pythons, Lmod, Lua)
is visible. What the values file gives a stock image is all it gets: the library read-only at its own
path, the overlay's ConfigMap (byo-image-profile.yaml) as /etc/profile.d/modlib.sh, and the values'
environment (MODLIB_ROOT, MODLIB_TARGET, JUPYTER_PATH), with the library's real path for /srv/modlib.
"""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from tests.e2e.notebook import USER, Server, free_port, jupyter_lab_command, scratch_folder, serve
from tests.helpers import REPO
from tests.k8s import image_root

SRC = REPO / "tests" / "data" / "byo-image"
NOTEBOOK_OVERLAY = REPO / "k8s-jobs" / "overlays" / "notebook"
VALUES = NOTEBOOK_OVERLAY / "z2jh-values-byo-image.yaml"
PROFILE = NOTEBOOK_OVERLAY / "byo-image-profile.yaml"
VALUES_ROOT = "/srv/modlib"  # where the values file mounts the library
HOME = "/home/jovyan"
JUPYTER = "/opt/jupyter/bin/jupyter"  # the image's venv (install.sh)


def make_root(base: Path) -> Path:
    """The image's root file system under ``base``: mmdebstrap trixie, then install.sh in it."""
    shutil.copytree(SRC, base / "src")
    image_root.mmdebstrap(base / "rootfs", base / "src", "install.sh", base / "mmdebstrap.log", suite="trixie")
    return base / "rootfs"


def values_env(root: Path) -> dict[str, str]:
    """The values file's singleuser.extraEnv, for a library at ``root`` rather than /srv/modlib."""
    extra = yaml.safe_load(VALUES.read_text())["singleuser"]["extraEnv"]
    return {name: value.replace(VALUES_ROOT, str(root)) for name, value in extra.items()}


def _profile_d(folder: Path) -> Path:
    """/etc/profile.d as the values file makes it: the ConfigMap's modlib.sh (trixie's own is empty)."""
    folder.mkdir(mode=0o755)
    (folder / "modlib.sh").write_text(yaml.safe_load(PROFILE.read_text())["data"]["modlib.sh"])
    return folder


@contextmanager
def byo_jupyter_lab(rootfs: Path, root: Path) -> Iterator[Server]:
    """The image's JupyterLab on the library at ``root``, its home an empty folder (the user's volume)."""
    scratch = scratch_folder()
    port, token = free_port(), secrets.token_hex(16)
    env = {"PATH": "/opt/jupyter/bin:/usr/local/bin:/usr/bin:/bin", "HOME": HOME, "SHELL": "/bin/bash",
           "LANG": "C.UTF-8", **values_env(root)}
    spec = {"root": str(rootfs),
            "mounts": [{"source": str(root), "target": str(root), "read_only": True},
                       {"source": str(_profile_d(scratch / "profile.d")), "target": "/etc/profile.d",
                        "read_only": True}],
            "empty_dirs": [HOME], "read_only_root": False, "reveal": [],
            "uid": USER[0], "gid": USER[1], "workdir": HOME, "env": env,
            "command": jupyter_lab_command(JUPYTER, port, token, HOME)}
    with serve(spec, scratch, port, token) as server:
        yield server
