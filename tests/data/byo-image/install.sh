#!/bin/sh
# A notebook image that is not modlib's, for tests/e2e/test_byo_image_browser.py: Debian trixie with its
# own python3 (3.13) and JupyterLab from PyPI in a venv (requirements.txt pins it and what it pulls in).
# No Lmod, no jupyter-lmod, nothing of modlib: what such an image gets from the library comes through
# the mount, one profile line and JUPYTER_PATH (README.md "For notebooks"). Run as root in the root file
# system: `sh install.sh SRC` with SRC a copy of this folder (tests/k8s/image_root.py).
set -eu

SRC=${1:-/src}
VENV=/opt/jupyter

export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends python3 python3-venv
apt-get clean
rm -rf /var/lib/apt/lists/*

# jovyan (1000:100), as docker-stacks images and Zero to JupyterHub run notebooks (no useradd in a
# minimal trixie: passwd is not essential).
echo 'jovyan:x:1000:100:jovyan:/home/jovyan:/bin/bash' >> /etc/passwd
install -d -o 1000 -g 100 -m 0755 /home/jovyan

python3 -m venv "$VENV"
"$VENV/bin/pip" install --no-cache-dir -q -r "$SRC/requirements.txt"
