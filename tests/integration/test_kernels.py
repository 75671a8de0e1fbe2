"""Kernels follow the library: each publish writes one kernelspec per module with a kernel, and the kernel of
a module that was retired or taken out is gone after the next publish. Real Lmod and real publishes, module
files as EasyBuild writes them (tests/e2e/test_notebook_side.py starts the demo library's kernels)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from builder.layout import Layout
from builder.publish import view
from builder.read.config import load_settings
from tests.helpers import PYVER, write_config, write_easystack
from tests.integration.test_incremental_publish import put

SITE_PACKAGES = 'prepend_path("PYTHONPATH", pathJoin(root, "lib", "python{}", "site-packages"))'
JINJA_OLD, JINJA_NEW = "Jinja2/3.1.4-GCCcore-system", "Jinja2/3.1.6-GCCcore-system"


def configure(repo: Path, **notebook_and_modules):
    stack = str(write_easystack(repo / "cpu.yaml", []))
    notebook = {k: v for k, v in notebook_and_modules.items() if k == "kernels"}
    modules = {k: v for k, v in notebook_and_modules.items() if k == "hidden"}
    config = write_config(repo, {"cpu": {"kind": "cpu", "tree": "cpu", "easystacks": [stack]}},
                          extra={"featured": [{"name": "Jinja2"}, {"name": "Tool"}, {"name": "OldPy"}],
                                 "notebook": notebook, "modules": modules})
    return load_settings(config, env={"MODLIB_ROOT": str(repo / "library")})


@pytest.fixture()
def repo(tmp_path):
    settings = configure(tmp_path)
    for module in (JINJA_OLD, JINJA_NEW):
        put(settings.root, "cpu", module, extra=SITE_PACKAGES.format(PYVER))
    put(settings.root, "cpu", "Tool/1.0")  # no Python package
    put(settings.root, "cpu", "OldPy/1.0", extra=SITE_PACKAGES.format("3.9"))  # built for another Python
    return tmp_path


def kernels(settings) -> dict[str, dict]:
    folder = Layout(settings.root).view_jupyter(settings.root / "live", "cpu") / "kernels"
    return {p.name: json.loads((p / "kernel.json").read_text()) for p in sorted(folder.iterdir())}


def test_by_default_each_featured_python_package_gets_a_kernel(repo):
    settings = configure(repo)
    _, warnings = view.publish_view(settings)
    found = kernels(settings)
    assert list(found) == ["modlib-jinja2--3.1.6-gcccore-system"]  # Tool: no Python package; OldPy: 3.9
    spec = found["modlib-jinja2--3.1.6-gcccore-system"]
    # the version is EBVERSIONJINJA2 (put() writes the full version there; EasyBuild writes 3.1.6)
    assert spec["display_name"] == f"Python {PYVER} · Jinja2 3.1.6-GCCcore-system"
    launcher = str(settings.root / "live" / "targets" / "cpu" / "jupyter" / "kernel.sh")
    assert spec["argv"] == ["bash", launcher, JINJA_NEW, "--", settings.python, "-m", "ipykernel_launcher",
                            "-f", "{connection_file}"]
    assert spec["language"] == "python" and spec["metadata"]["modlib"] == {"module": JINJA_NEW, "target": "cpu"}
    assert not [w for w in warnings if w.startswith("kernel")]  # the featured index names OldPy/1.0 already
    assert any(w.startswith("featured OldPy/1.0 was built for Python 3.9") for w in warnings), warnings


def test_a_retired_module_and_a_module_taken_out_lose_their_kernels(repo):
    settings = configure(repo, kernels=[JINJA_OLD, JINJA_NEW, "Tool", "OldPy"])
    _, warnings = view.publish_view(settings)
    assert list(kernels(settings)) == ["modlib-jinja2--3.1.4-gcccore-system", "modlib-jinja2--3.1.6-gcccore-system"]
    assert f"kernel Tool/1.0 is not a Python package, the notebooks run {PYVER}: no kernel" in warnings
    assert f"kernel OldPy/1.0 was built for Python 3.9, the notebooks run {PYVER}: no kernel" in warnings

    settings = configure(repo, kernels=[JINJA_OLD, JINJA_NEW], hidden=[JINJA_NEW])
    _, warnings = view.publish_view(settings)
    assert list(kernels(settings)) == ["modlib-jinja2--3.1.4-gcccore-system"]
    assert any(w.startswith(f"kernel {JINJA_NEW} is") for w in warnings), warnings

    (Layout(settings.root).module_file("cpu", JINJA_OLD)).unlink()
    _, warnings = view.publish_view(settings)
    assert kernels(settings) == {}
    assert any(w.startswith(f"kernel {JINJA_OLD} is not published") for w in warnings), warnings


def test_an_unchanged_kernel_is_taken_from_the_live_generation(repo):
    settings = configure(repo)
    view.publish_view(settings)
    before = kernels(settings)
    put(settings.root, "cpu", "Other/1.0")  # not a name with a kernel: the Jupyter folder is reused
    view.publish_view(settings)
    assert kernels(settings) == before
