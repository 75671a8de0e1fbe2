"""Kernels follow the library: each publish writes one kernelspec per module with a kernel, and the kernel of
a module that was retired or taken out is gone after the next publish. In a library with its own Python a
kernel loads the ipykernel module of its package's Python first, and kernel.sh keeps the Jupyter server's
Python and loaded modules out. Real Lmod and real publishes, module files as EasyBuild writes them
(tests/e2e/test_notebook_side.py starts the demo library's kernels)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from builder.layout import Layout
from builder.publish import view
from builder.read.config import load_settings
from tests.helpers import LMOD_INIT, PYVER, write_config, write_easystack
from tests.integration.test_incremental_publish import put

SITE_PACKAGES = 'prepend_path("PYTHONPATH", pathJoin(root, "lib", "python{}", "site-packages"))'
JINJA_OLD, JINJA_NEW = "Jinja2/3.1.4-GCCcore-system", "Jinja2/3.1.6-GCCcore-system"


IPYKERNEL, IPYKERNEL_39 = "ipykernel/7.4.0-GCCcore-system", "ipykernel/6.29.5-GCCcore-system-Python-3.9"


def configure(repo: Path, own_python: bool = False, **notebook_and_modules):
    """``own_python``: a library without library.yaml's ``python`` (its Python packages depend on its own)."""
    stack = str(write_easystack(repo / "cpu.yaml", []))
    notebook = {k: v for k, v in notebook_and_modules.items() if k == "kernels"}
    modules = {k: v for k, v in notebook_and_modules.items() if k == "hidden"}
    config = write_config(repo, {"cpu": {"kind": "cpu", "tree": "cpu", "easystacks": [stack]}},
                          extra={"featured": [{"name": "Jinja2"}, {"name": "Tool"}, {"name": "OldPy"}],
                                 "notebook": notebook, "modules": modules})
    if own_python:
        data = yaml.safe_load(config.read_text())
        del data["python"]
        config.write_text(yaml.safe_dump(data, sort_keys=False))
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
    startup = str(settings.root / "live" / "targets" / "cpu" / "jupyter" / "kernel_startup.py")
    assert spec["argv"] == ["bash", launcher, JINJA_NEW, "--", settings.python, "-m", "ipykernel_launcher",
                            "-f", "{connection_file}", "--IPKernelApp.exec_lines=__import__('runpy').run_path("
                            f"'{startup}', run_name='modlib_kernel_startup')"]
    assert spec["language"] == "python" and spec["metadata"]["modlib"] == {"module": JINJA_NEW, "target": "cpu"}
    assert not [w for w in warnings if w.startswith("kernel")]  # the featured index names OldPy/1.0 already
    assert any(w.startswith("featured OldPy/1.0 was built for Python 3.9") for w in warnings), warnings


def test_a_retired_module_and_a_module_taken_out_lose_their_kernels(repo):
    settings = configure(repo, kernels=[JINJA_OLD, JINJA_NEW, "Tool", "OldPy"])
    _, warnings = view.publish_view(settings)
    assert list(kernels(settings)) == ["modlib-jinja2--3.1.4-gcccore-system", "modlib-jinja2--3.1.6-gcccore-system"]
    assert "kernel Tool/1.0 is not a Python package: no kernel" in warnings
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


def put_library_python(settings) -> None:
    """The library's Python and an ipykernel module built for it, and one for a Python 3.9 beside them."""
    put(settings.root, "cpu", "Python/3.11.2-GCCcore-system")
    put(settings.root, "cpu", IPYKERNEL, extra=SITE_PACKAGES.format(PYVER))
    put(settings.root, "cpu", IPYKERNEL_39, extra=SITE_PACKAGES.format("3.9"))


def test_with_its_own_python_a_kernel_loads_ipykernel_then_its_module_and_runs_python(repo):
    settings = configure(repo, own_python=True, kernels=[JINJA_NEW, "OldPy", "Tool"])
    put_library_python(settings)
    _, warnings = view.publish_view(settings)
    found = kernels(settings)
    launcher = str(settings.root / "live" / "targets" / "cpu" / "jupyter" / "kernel.sh")
    command = ["--", "python", "-m", "ipykernel_launcher", "-f", "{connection_file}",
               found[f"modlib-python--{PYVER}"]["argv"][-1]]
    assert {name: (spec["display_name"], spec["argv"]) for name, spec in found.items()} == {
        "modlib-python--3.9": ("Python 3.9 (library)", ["bash", launcher, IPYKERNEL_39, *command]),
        f"modlib-python--{PYVER}": (f"Python {PYVER} (library)", ["bash", launcher, IPYKERNEL, *command]),
        "modlib-jinja2--3.1.6-gcccore-system": (f"Python {PYVER} · Jinja2 3.1.6-GCCcore-system",
                                                ["bash", launcher, IPYKERNEL, JINJA_NEW, *command]),
        "modlib-oldpy--1.0": ("Python 3.9 · OldPy 1.0", ["bash", launcher, IPYKERNEL_39, "OldPy/1.0", *command])}
    assert [w for w in warnings if w.startswith("kernel")] == ["kernel Tool/1.0 is not a Python package: no kernel"]

    (Layout(settings.root).module_file("cpu", IPYKERNEL_39)).unlink()  # no ipykernel for 3.9 any more
    _, warnings = view.publish_view(settings)
    assert sorted(kernels(settings)) == ["modlib-jinja2--3.1.6-gcccore-system", f"modlib-python--{PYVER}"]
    assert "kernel OldPy/1.0 was built for Python 3.9, which has no ipykernel module: no kernel" in warnings


def server_env(settings, tmp_path, *load: str) -> dict[str, str]:
    """A Jupyter server's environment: a venv's Python variables, the library's env.sh, ``load`` loaded."""
    env_sh = settings.root / "live" / "targets" / "cpu" / "env.sh"
    server = {k: v for k, v in os.environ.items() if k not in ("LOADEDMODULES", "_LMFILES_", "PYTHONPATH")}
    server.update(VIRTUAL_ENV=str(tmp_path / "venv"), PYTHONPATH=str(tmp_path / "venv" / "extra"),
                  PYTHONHOME=str(tmp_path / "venv"))
    script = f"source {LMOD_INIT} && source {env_sh} && module load {' '.join(load)} && env -0"
    loaded = subprocess.run(["bash", "-c", script], env=server, capture_output=True, check=True)
    return dict(line.split("=", 1) for line in loaded.stdout.decode().split("\0") if "=" in line)


def start_kernel(settings, name: str, env: dict[str, str], show: str) -> str:
    """kernel.sh of kernel ``name`` as Jupyter runs it, with ``bash -c show`` in place of Python."""
    spec = kernels(settings)[name]
    argv = spec["argv"][:spec["argv"].index("--") + 1]
    out = subprocess.run([*argv, "bash", "-c", show], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_kernel_sh_keeps_the_servers_python_and_loaded_modules_out(repo, tmp_path):
    """A server that runs in a venv and whose panel loaded Jinja2/3.1.4 and Tool (jupyter-lmod loads into the
    server's environment) starts the 3.1.6 kernel: Tool is loaded again, the kernel's modules last (3.1.6 in
    place of 3.1.4), PYTHONPATH is the loaded modules' alone, and no variable of the venv is left."""
    settings = configure(repo, own_python=True)
    put_library_python(settings)
    view.publish_view(settings)
    server = server_env(settings, tmp_path, JINJA_OLD, "Tool/1.0")
    assert JINJA_OLD in server["LOADEDMODULES"] and str(tmp_path / "venv" / "extra") in server["PYTHONPATH"]
    show = 'echo "$LOADEDMODULES|${PYTHONPATH-}|${PYTHONHOME-unset}|${VIRTUAL_ENV-unset}"'
    modules, pythonpath, home, venv = start_kernel(settings, "modlib-jinja2--3.1.6-gcccore-system", server,
                                                   show).split("|")
    assert modules.split(":") == ["Tool/1.0", IPYKERNEL, JINJA_NEW]
    assert pythonpath.split(":") == [f"/opt/test/{m}/lib/python{PYVER}/site-packages" for m in (JINJA_NEW, IPYKERNEL)]
    assert (home, venv) == ("unset", "unset")


def test_a_restart_follows_the_panel_since_the_session_began(repo, tmp_path):
    """Jupyter restarts a kernel with its session's first environment (Tool/1.0 loaded in the server then);
    the server's panel file says what it has loaded now. What the panel loaded since is loaded last, over the
    kernel's own module of that name; what it unloaded is left out; with the file as at the session's start,
    or none, the kernel starts as it did. The kernel is told what it started with (its change notices)."""
    settings = configure(repo, own_python=True)
    put_library_python(settings)
    view.publish_view(settings)
    panel = tmp_path / "panel.modules"
    session = {**server_env(settings, tmp_path, "Tool/1.0"), "MODLIB_PANEL_MODULES": str(panel)}
    show = 'echo "$LOADEDMODULES|$MODLIB_PANEL_AT_START"'
    kernel = "modlib-jinja2--3.1.6-gcccore-system"
    for now, loaded in ((None, ["Tool/1.0", IPYKERNEL, JINJA_NEW]),
                        ("Tool/1.0", ["Tool/1.0", IPYKERNEL, JINJA_NEW]),
                        (f"Tool/1.0:{JINJA_OLD}", ["Tool/1.0", IPYKERNEL, JINJA_OLD]),
                        (JINJA_OLD, [IPYKERNEL, JINJA_OLD]),
                        ("", [IPYKERNEL, JINJA_NEW])):
        if now is not None:
            panel.write_text(now + "\n")
        modules, started = start_kernel(settings, kernel, session, show).split("|")
        assert modules.split(":") == loaded, now
        assert started == ("Tool/1.0" if now is None else now)


def test_a_modlib_that_publishes_otherwise_republishes_though_no_module_changed(repo, monkeypatch):
    """A library published by an older modlib (another kernel.sh): the next run of this one publishes,
    from scratch, though no module changed, so an upgrade reaches the kernels (and env.sh) at once."""
    settings = configure(repo)
    monkeypatch.setattr(view, "view_format", lambda: "an older modlib")
    monkeypatch.setattr(view.kernels, "kernel_sh", lambda settings, target: "# an older kernel.sh\n")
    view.publish_view(settings)
    monkeypatch.undo()
    assert view.current_inputs(settings.layout) != view.inputs_digest(settings)  # the run publishes (run.py)
    view.publish_view(settings)
    launcher = settings.root / "live" / "targets" / "cpu" / "jupyter" / "kernel.sh"
    assert launcher.read_text() == view.kernels.kernel_sh(settings, "cpu")
    assert view.current_inputs(settings.layout) == view.inputs_digest(settings)  # and the next one does not
