#!/bin/sh
# Builds modlib's JupyterLab extension (this folder) as a prebuilt extension into OUT, for the
# JupyterLab of PYTHON: `sh build.sh SRC OUT PYTHON`, SRC a copy of this folder (jlpm writes
# node_modules/ and labextension/ into it). Needs node alone: jlpm is the yarn JupyterLab bundles,
# which installs the builder pinned with all it pulls in (yarn.lock, --immutable); the build is
# against that JupyterLab's own core packages (its staging folder), which the extension shares at
# run time. install.sh (the image) and bench/panel_extension.py (the browser tests, make notebook) run it.
set -eu
src=$1 out=$2 python=$3
cd "$src"
cp package.json package.json.kept
"$(dirname "$python")/jlpm" install --immutable
mv package.json.kept package.json  # yarn drops the empty "dependencies", which the builder reads
staging=$("$python" -c 'import jupyterlab, os; print(os.path.join(os.path.dirname(jupyterlab.__file__), "staging"))')
node node_modules/@jupyterlab/builder/lib/build-labextension.js --core-path "$staging" .
rm -rf "$out"
mkdir -p "$(dirname "$out")"
cp -R labextension "$out"
