#!/bin/sh
# Install steps of the builder image (k8s-jobs/image/Containerfile), run as root in a Debian
# bookworm root file system: `sh install.sh SRC` with SRC a copy of the repository (at least
# pyproject.toml, constraints.txt and builder/). Kept out of the Containerfile so that
# tests/k8s/test_image.py can run exactly these steps in a chroot without a container engine.
set -eu

SRC=${1:-/src}
PREFIX=/opt/modlib
VENV=$PREFIX/venv
USER_ID=1000

export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# lmod: the modules tool, the same Debian package the notebook images use.
# python3, python3-dev, python3-venv: the Python modules are built for (C extensions need headers).
# build-essential ... bzip2: what EasyBuild's easyblocks call while unpacking, patching, building;
# tcl: SQLite's full source tree (the library's SQLite, for its Python) makes its amalgamation with tclsh.
# bubblewrap: the runner parses easyconfigs in its sandbox (builder/execute/sandbox.py), where the pod
# may make namespaces.
# apt itself (with gpgv, debian-archive-keyring and the image's own apt sources) stays: the source
# pre-fetch runs apt-get and apt-cache as the image user for deb-src: sources (README "Sources from
# Debian"), with a private apt state, so the lists removed below are not needed.
apt-get install -y -q --no-install-recommends \
    lmod bubblewrap \
    python3 python3-dev python3-venv \
    build-essential file patch unzip xz-utils bzip2 gzip tar zstd \
    git ca-certificates perl make tcl
apt-get clean
rm -rf /var/lib/apt/lists/*

# The user builds and the CronJob run as; it owns the library volume. HOME is created at run time
# under /tmp (an emptyDir in pods).
groupadd --gid "$USER_ID" modlib
useradd --uid "$USER_ID" --gid "$USER_ID" --no-create-home --home-dir /tmp/home --shell /bin/bash modlib

# modlib and EasyBuild (pinned by constraints.txt), with the kubernetes client for the executor.
python3 -m venv "$VENV"
"$VENV/bin/pip" install --no-cache-dir -q wheel  # EasyBuild's sdists build as wheels, not legacy setup.py installs
"$VENV/bin/pip" install --no-cache-dir -q -c "$SRC/constraints.txt" "$SRC[kubernetes]"
"$VENV/bin/python" -m compileall -q "$VENV" >/dev/null || true  # no .pyc writes at run time

# Nothing under /opt is the user's to change: root owns it, nobody else may write.
chown -R root:root "$PREFIX"
chmod -R go-w "$PREFIX"

# The mount point of the library volume; a named volume created from the image starts out the
# user's (Kubernetes mounts the PVC over it).
install -d -o "$USER_ID" -g "$USER_ID" -m 0755 /srv/modlib

PATH="$VENV/bin:$PATH" modlib --version
PATH="$VENV/bin:$PATH" eb --version
