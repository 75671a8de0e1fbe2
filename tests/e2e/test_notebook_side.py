"""The demo library on the notebook side: its kernels start as Jupyter starts them, each imports its packages
from the library, on the library's Python, whatever the server's Python environment, and the scripts of its
Python packages run where no `python` command is on PATH (a Debian image has only `python3`)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

from builder.read.config import load_settings
from tests.helpers import LMOD_INIT, REPO, bundle_easyconfig, link_sources, modlib, write_config, write_easystack

pytestmark = pytest.mark.e2e
CONFIG = REPO / "easyconfigs" / "library.yaml"
KERNEL = "modlib-jinja2--3.1.4-gcccore-system"
#: What a Jupyter server's environment may be: no Lmod, no module, no `python` on PATH.
BARE_PATH = "/usr/bin:/bin"


def bare_env(home: Path) -> dict[str, str]:
    return {"PATH": BARE_PATH, "HOME": str(home), "LANG": "C.UTF-8"}


def settings_of(demo_library):
    root, env, _ = demo_library
    return load_settings(CONFIG, env={**os.environ, **env})


def venv_server_env(home: Path) -> dict[str, str]:
    """What a Jupyter server running in a venv passes on: the venv's bin first on PATH, VIRTUAL_ENV, and (as
    some images set it) PYTHONPATH naming the venv's packages; this venv has Jinja2 3.1.6 among them."""
    return {**bare_env(home), "PATH": f"{Path(sys.executable).parent}:{BARE_PATH}", "VIRTUAL_ENV": sys.prefix,
            "PYTHONPATH": sysconfig.get_paths()["purelib"]}


@contextmanager
def kernel_session(kernel: str, env: dict[str, str]) -> Iterator[tuple[KernelManager, Callable[[str], str]]]:
    """Started as a Jupyter server starts it (jupyter_client, the kernelspec found on JUPYTER_PATH; a restart
    reuses the first start's environment, as a server's does): the manager, and a function that runs a cell
    and returns what it printed, on stdout and stderr."""
    manager = KernelManager(kernel_name=kernel)
    manager.start_kernel(env=env)
    client = manager.client()

    def run(code: str) -> str:
        client.wait_for_ready(timeout=120)
        out: list[str] = []
        reply = client.execute_interactive(code, timeout=60,
                                           output_hook=lambda msg: out.append(msg["content"].get("text", "")))
        assert reply["content"]["status"] == "ok", (kernel, reply["content"], out)
        return "".join(out)

    try:
        client.start_channels()
        yield manager, run
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def run_in_kernel(kernel: str, code: str, env: dict[str, str]) -> str:
    with kernel_session(kernel, env) as (_, run):
        return run(code)


def test_each_kernel_is_listed_with_the_module_and_the_python(demo_library, monkeypatch):
    jupyter = demo_library[0] / "live" / "targets" / "cpu" / "jupyter"
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter))
    specs = KernelSpecManager().get_all_specs()
    names = {name: spec["spec"]["display_name"] for name, spec in specs.items() if name.startswith("modlib-")}
    assert names == {KERNEL: "Python 3.11 · Jinja2 3.1.4",
                     "modlib-jinja2--3.1.6-gcccore-system": "Python 3.11 · Jinja2 3.1.6",
                     "modlib-tensorboard--2.21.0-gcccore-system": "Python 3.11 · TensorBoard 2.21.0",
                     "modlib-python--3.11": "Python 3.11 (library)"}


def test_a_kernel_started_from_its_kernelspec_imports_its_modules_version(demo_library, monkeypatch, tmp_path):
    """From an environment without Lmod or any module, the kernel has Jinja2 3.1.4 and not the default 3.1.6."""
    monkeypatch.setenv("JUPYTER_PATH", str(demo_library[0] / "live" / "targets" / "cpu" / "jupyter"))
    out = run_in_kernel(KERNEL, "import jinja2, os; print(jinja2.__version__, os.environ['LOADEDMODULES'])",
                        bare_env(tmp_path))
    version, loaded = out.split()
    assert version == "3.1.4"
    assert "Jinja2/3.1.4-GCCcore-system" in loaded.split(":")


#: Run in each kernel: its Python, its sys.path, and where each featured package it loaded imports from.
PROBE = """import importlib, json, os, sys
featured = set(json.loads({featured!r}))
loaded = [m.split("/")[0] for m in os.environ.get("LOADEDMODULES", "").split(":") if m]
files = {{}}
for name in (n for n in loaded if n in featured):
    package = importlib.import_module(name.lower())
    files[name] = [package.__file__, getattr(package, "__version__", "")]
print(json.dumps({{"executable": sys.executable, "path": [p for p in sys.path if p], "files": files}}))
"""


def test_every_kernel_imports_its_featured_packages_from_the_library(demo_library, monkeypatch, tmp_path):
    """Every generated kernel, started by a server that runs in a venv whose packages shadowed the kernels'
    before (Jinja2 3.1.6): each featured package a kernel loads imports from the library, on the library's
    Python; nothing of the venv is on any kernel's sys.path, and the library Python kernel's is the
    library's alone."""
    root = demo_library[0]
    assert settings_of(demo_library).python is None  # the demo library has its own Python, which kernels run
    monkeypatch.setenv("JUPYTER_PATH", str(root / "live" / "targets" / "cpu" / "jupyter"))
    featured = [m["name"] for m in json.loads((root / "live" / "targets" / "cpu" / "featured.json").read_text())
                ["modules"]]
    kernels = sorted(name for name in KernelSpecManager().find_kernel_specs() if name.startswith("modlib-"))
    seen = {name: json.loads(run_in_kernel(name, PROBE.format(featured=json.dumps(featured)),
                                           venv_server_env(tmp_path))) for name in kernels}
    library, venv = root.resolve(), Path(sys.prefix).resolve()
    for name, found in seen.items():
        assert Path(found["executable"]).resolve().is_relative_to(library / "cpu" / "software"), (name, found)
        assert not [p for p in found["path"] if Path(p).resolve().is_relative_to(venv)], (name, found)
        for package, (file, _) in found["files"].items():
            assert Path(file).resolve().is_relative_to(library), (name, package, file)
    assert {n: sorted(found["files"]) for n, found in seen.items()} == {
        KERNEL: ["Jinja2"], "modlib-jinja2--3.1.6-gcccore-system": ["Jinja2"],
        "modlib-tensorboard--2.21.0-gcccore-system": ["TensorBoard"], "modlib-python--3.11": []}
    assert seen[KERNEL]["files"]["Jinja2"][1] == "3.1.4"  # not the venv's 3.1.6
    assert all(Path(p).resolve().is_relative_to(library) for p in seen["modlib-python--3.11"]["path"]), seen


#: Where a fresh ``import jinja2`` would come from now (sys.path alone, not what is imported already).
WHERE = "from importlib.machinery import PathFinder as F; s = F.find_spec('jinja2'); print(s and s.origin)"


def panel_loaded(root: Path, *modules: str) -> str:
    """What a server's panel file holds once it has loaded ``modules``: its LOADEDMODULES, from Lmod."""
    env_sh = root / "live" / "targets" / "cpu" / "env.sh"
    script = f'source {LMOD_INIT} && source {env_sh} && module load "$@" && echo "$LOADEDMODULES"'
    done = subprocess.run(["bash", "-c", script, "panel", *modules], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_a_restart_follows_the_panel_and_a_running_kernel_says_what_changed(demo_library, monkeypatch, tmp_path):
    """The library Python kernel, from a server whose panel loads Jinja2/3.1.4 while it runs: the next cell
    says so and what to do, the restart imports 3.1.4 from the library; the panel's unload and another
    restart take it away again."""
    root = demo_library[0]
    monkeypatch.setenv("JUPYTER_PATH", str(root / "live" / "targets" / "cpu" / "jupyter"))
    panel = tmp_path / "panel.modules"
    panel.write_text("\n")
    with kernel_session("modlib-python--3.11", {**venv_server_env(tmp_path), "MODLIB_PANEL_MODULES": str(panel)}
                        ) as (manager, run):
        assert run(WHERE).strip() == "None"  # the venv's Jinja2 3.1.6 is not the kernel's
        panel.write_text(panel_loaded(root, "Jinja2/3.1.4") + "\n")
        told = run(WHERE)
        assert "modlib: modules changed in the panel since this kernel started (loaded " in told
        assert "Jinja2/3.1.4-GCCcore-system" in told and "None" in told.split()
        assert "Python/" not in told  # the kernel has the library's Python already: not named
        manager.restart_kernel(now=True)
        where = Path(run(WHERE).strip())
        assert where.is_relative_to(root / "cpu" / "software") and "/Jinja2/3.1.4-GCCcore-system/" in str(where)
        assert "modlib:" not in run("print()")  # the restarted kernel started with the panel's modules
        panel.write_text("\n")
        told = run("print()")
        assert "(unloaded " in told and "Jinja2/3.1.4-GCCcore-system)" in told, told
        manager.restart_kernel(now=True)
        assert run(WHERE).strip() == "None"


def test_jupyter_lmods_in_kernel_load_comes_first_on_sys_path(demo_library, monkeypatch, tmp_path):
    """The code jupyter-lmod's panel generates, in the Jinja2 3.1.6 kernel: after ``module.load`` of 3.1.4 a
    fresh import gets 3.1.4 (jupyter-lmod alone appends it behind 3.1.6, which it fails to remove), and a
    package imported before is named, as it keeps its version."""
    root = demo_library[0]
    monkeypatch.setenv("JUPYTER_PATH", str(root / "live" / "targets" / "cpu" / "jupyter"))
    with kernel_session("modlib-jinja2--3.1.6-gcccore-system", venv_server_env(tmp_path)) as (_, run):
        assert "/Jinja2/3.1.6-GCCcore-system/" in run(WHERE)
        out = run("import module\nawait module.load('Jinja2/3.1.4')\nimport jinja2, sys\n"
                  "print(jinja2.__version__, jinja2.__file__)")
        version, where = out.split()[-2:]
        assert version == "3.1.4" and Path(where).is_relative_to(root / "cpu" / "software"), out
        out = run("await module.load('Jinja2/3.1.6')\n" + WHERE)
        assert "modlib: imported before this load, so still the version this kernel imported: jinja2;" in out
        assert "/Jinja2/3.1.6-GCCcore-system/" in out  # a fresh import would take 3.1.6 again
        assert run("await module.unload('Jinja2')\n" + WHERE).strip().endswith("None")


@pytest.mark.skipif(shutil.which("python", path=BARE_PATH) is not None, reason=f"this host has a python in {BARE_PATH}")
def test_tensorboard_runs_from_its_module_without_python_on_path(demo_library, tmp_path):
    env_sh = demo_library[0] / "live" / "targets" / "cpu" / "env.sh"
    script = f"source {LMOD_INIT}\nsource {env_sh}\nmodule load TensorBoard\ntensorboard --version"
    out = subprocess.run(["env", "-i", *(f"{k}={v}" for k, v in bare_env(tmp_path).items()), "bash", "-c", script],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "2.21.0"


def test_every_python_script_runs_the_librarys_python(demo_library):
    """For every install of the library: a script with a Python shebang runs the library's Python, a
    package's through EasyBuild's '#!/usr/bin/env python' (its module loads the Python module), the Python
    module's own by that install's path."""
    python = str(demo_library[0] / "cpu" / "software" / "Python-")
    scripts = {}
    for tree in ("cpu", "cuda"):
        for path in (demo_library[0] / tree / "software").glob("*/*/*/bin/*"):
            if path.is_file() and not path.is_symlink():
                with open(path, "rb") as handle:
                    first = handle.readline().decode("utf-8", "replace").rstrip("\n")
                if first.startswith("#!") and "python" in first:
                    scripts[str(path)] = first
    assert any(p.endswith("/bin/tensorboard") for p in scripts) and len(scripts) > 5, scripts
    wrong = {path: line for path, line in scripts.items() if line != "#!/usr/bin/env python"
             and not (path.startswith(python) and line.startswith("#!" + python))}
    assert wrong == {}, json.dumps(scripts, indent=1)


SCRIPT = ("mkdir -p %(installdir)s/{folder} && printf '#!/usr/bin/env python\\\\nprint(42)\\\\n' > {path} "
          "&& chmod +x {path}")


def scripted(name: str, folder: str) -> str:
    """A Bundle that installs a Python script with EasyBuild's '#!/usr/bin/env python' and runs it in its
    sanity check."""
    path = f"%(installdir)s/{folder}/{name}"
    return bundle_easyconfig(name, f'postinstallcmds = ["{SCRIPT.format(folder=folder, path=path)}"]\n'
                                   f'sanity_check_paths = {{"files": ["{folder}/{name}"], "dirs": []}}\n'
                                   f'sanity_check_commands = ["{path} | grep -x 42"]')


def test_a_script_that_needs_python_on_path_fails_the_sanity_check(tmp_path, source_cache):
    """bin/ (where packages put their scripts) is fixed by the site hooks; a script elsewhere keeps its
    shebang, and the sanity check, which runs without `python` on PATH, fails it."""
    site = tmp_path / "site"
    for name, folder in (("fixed", "bin"), ("unfixed", "libexec")):
        (site / name[0] / name).mkdir(parents=True)
        (site / name[0] / name / f"{name}-1.0-GCCcore-system.eb").write_text(scripted(name, folder))
    (tmp_path / "easyconfigs").mkdir()
    stack = write_easystack(tmp_path / "easyconfigs" / "cpu.yaml", ["fixed-1.0-GCCcore-system.eb",
                                                                    "unfixed-1.0-GCCcore-system.eb"])
    config = write_config(tmp_path, {"cpu": {"kind": "cpu", "tree": "cpu", "easystacks": [str(stack)]}},
                          easyconfig_paths=[str(site), str(REPO / "easyconfigs")])
    link_sources(tmp_path / "library", source_cache)
    result = modlib("build", "--config", str(config))
    assert result.returncode == 1 and "failed 1" in result.stdout, result.stdout + result.stderr
    root = tmp_path / "library"
    assert (root / "cpu" / "modules" / "all" / "fixed" / "1.0-GCCcore-system.lua").is_file()
    (fixed,) = (root / "cpu" / "software").glob("fixed-*/fixed/1.0-GCCcore-system/bin/fixed")
    assert fixed.read_text().startswith(f"#!{load_settings(config).python}\n")
    log = next((root / ".modlib" / "records" / "cpu").glob("unfixed--1.0-GCCcore-system/*.log")).read_text()
    assert re.search(r"/usr/bin/env: .python.: No such file or directory", log)  # quotes follow the locale


def test_a_script_that_needs_python_fails_a_module_without_the_librarys_python(tmp_path, source_cache):
    """A library with its own Python: scripts keep EasyBuild's '#!/usr/bin/env python', which the Python
    module serves where a module depends on it; a module without it has no 'python' in its sanity check."""
    site = tmp_path / "site"
    (site / "f" / "fixed").mkdir(parents=True)
    (site / "f" / "fixed" / "fixed-1.0-GCCcore-system.eb").write_text(scripted("fixed", "bin"))
    stack = write_easystack(tmp_path / "cpu.yaml", ["fixed-1.0-GCCcore-system.eb"])
    config = write_config(tmp_path, {"cpu": {"kind": "cpu", "tree": "cpu", "easystacks": [str(stack)]}},
                          easyconfig_paths=[str(site), str(REPO / "easyconfigs")], own_python=True)
    root = tmp_path / "library"
    link_sources(root, source_cache)
    result = modlib("build", "--config", str(config))
    assert result.returncode == 1 and "failed 1" in result.stdout, result.stdout + result.stderr
    log = next((root / ".modlib" / "records" / "cpu").glob("fixed--1.0-GCCcore-system/*.log")).read_text()
    assert re.search(r"/usr/bin/env: .python.: No such file or directory", log) and "MODLIB_PYTHON" not in log
