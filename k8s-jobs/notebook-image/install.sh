#!/bin/sh
# Install steps of the notebook image (k8s-jobs/notebook-image/Containerfile), run as root in a
# Debian bookworm root file system: `sh install.sh SRC` with SRC a copy of this folder. Kept out of
# the Containerfile so that tests/k8s/test_notebook_image.py can run exactly these steps in a chroot.
# The library's kernels run the library's own Python and ipykernel; this venv is the Jupyter server's.
# It sits where the builder image's does (/opt/modlib/venv), so that a library built for the builder's
# Python (library.yaml's `python`, the migration path) finds that Python and an ipykernel at its path.
set -eu

SRC=${1:-/src}
PREFIX=/opt/modlib
VENV=$PREFIX/venv
USER_ID=1000

export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# lmod: the modules tool (its /etc/profile.d/lmod.sh initialises it for login shells).
# python3, python3-venv: the notebook's Python. bash: Lmod's `module` and the launchers use it.
apt-get install -y -q --no-install-recommends lmod python3 python3-venv bash ca-certificates tini
apt-get clean
rm -rf /var/lib/apt/lists/*

# jovyan (1000:100), the user Zero to JupyterHub runs notebooks as; its home is the user's volume.
useradd --uid "$USER_ID" --gid 100 --create-home --home-dir /home/jovyan --shell /bin/bash jovyan

# JupyterLab, jupyter-lmod, jupyter-server-proxy, ipykernel, jupyterhub-singleuser (requirements.txt pins all).
python3 -m venv "$VENV"
"$VENV/bin/pip" install --no-cache-dir -q -r "$SRC/requirements.txt"
"$VENV/bin/python" -m compileall -q "$VENV" >/dev/null || true

# The hooks: login shells source modlib.sh after Lmod's init; the Jupyter server runs the same two.
# Debian's /etc/profile resets PATH, and JupyterLab's terminals are login shells: venv.sh puts the venv back.
install -m 0644 "$SRC/modlib.sh" /etc/profile.d/modlib.sh
sed "s|@VENV@|$VENV|g" "$SRC/venv.sh" > /etc/profile.d/venv.sh
install -D -m 0644 "$SRC/jupyter_server_config.py" "$VENV/etc/jupyter/jupyter_server_config.py"
install -D -m 0644 "$SRC/modlib_launch.py" "$VENV/etc/jupyter/modlib_launch.py"  # how the hook starts launchers
# JupyterLab's defaults for every user: no news or update checks (pods reach no such server).
install -D -m 0644 "$SRC/overrides.json" "$VENV/share/jupyter/lab/settings/overrides.json"
# modlib's extension of jupyter-lmod's panel (GPU marks, descriptions, featured group, keyboard): built with
# Debian's node and JupyterLab's jlpm from its pinned yarn.lock; node is removed again (the image runs none).
apt-get update -q
apt-get install -y -q --no-install-recommends nodejs
sh "$SRC/panel/build.sh" "$SRC/panel" "$VENV/share/jupyter/labextensions/@modlib/jupyterlab-panel" "$VENV/bin/python"
apt-get purge -y -q nodejs
apt-get autoremove -y -q --purge
apt-get clean
rm -rf /var/lib/apt/lists/* /root/.yarn /root/.cache/yarn

chown -R root:root "$PREFIX"
chmod -R go-w "$PREFIX"

# The library volume's mount point: Kubernetes mounts the claim read-only over it.
install -d -m 0755 /srv/modlib

"$VENV/bin/jupyter" server extension list 2>&1 | grep -E 'jupyterlmod|jupyter_server_proxy'
"$VENV/bin/jupyter" labextension list 2>&1 | grep -E 'jupyterlab-lmod|jupyter-server-proxy'
