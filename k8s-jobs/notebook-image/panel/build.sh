#!/bin/sh
# Builds modlib's JupyterLab extension (this folder) as a prebuilt extension into OUT, for the
# JupyterLab of PYTHON: `sh build.sh SRC OUT PYTHON`, SRC a copy of this folder (npm writes
# node_modules/ and labextension/ into it). The builder is pinned with all it pulls in
# (package-lock.json, `npm ci`); it builds against that JupyterLab's own core packages (its staging
# folder), which the extension shares at run time. install.sh (the image) and tests/e2e/notebook.py
# (the browser tests' venv) run it.
set -eu
src=$1 out=$2 python=$3
cd "$src"
npm ci --no-audit --no-fund --ignore-scripts --cache "$src/.npm-cache"
staging=$("$python" -c 'import jupyterlab, os; print(os.path.join(os.path.dirname(jupyterlab.__file__), "staging"))')
node node_modules/@jupyterlab/builder/lib/build-labextension.js --core-path "$staging" .
rm -rf "$out"
mkdir -p "$(dirname "$out")"
cp -R labextension "$out"
