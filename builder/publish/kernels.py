"""Jupyter kernels that start with a module loaded: "Python 3.11 · Jinja2 3.1.4".

A module loaded after a kernel started does not reach it (jupyter-lmod's issue #82: users restart the
kernel); a kernel that loads the module before Python starts does. So every publish writes, per target,
a kernelspec for each module that gets one into the generation's ``targets/<t>/jupyter/kernels/``,
which env.sh puts first on JUPYTER_PATH. Its argv runs ``kernel.sh`` with bash: Lmod's init (a Jupyter
server's own environment need not have Lmod), a purge of the modules the server's environment had
loaded and of its Python's variables (PYTHONPATH, PYTHONHOME, VIRTUAL_ENV ...), env.sh, ``module load``
of the server's modules again (jupyter-lmod's panel loads into the server) and then of the kernel's,
then ``exec`` of Python with ipykernel. Paths go through ``live``, so a kernel started later gets the
library as it is then, and the kernel of a module that was retired (``modules.hidden``) or is no longer
published has no kernelspec in the new generation: it disappears with the swap.

Which Python: a library with its own Python (no ``python`` in library.yaml) has an ``ipykernel`` module
per Python version it holds, built for that Python (easyconfigs/i/ipykernel). A kernel loads the
ipykernel module of its package's Python, then the package's module (so the package comes first on
sys.path), and runs ``python``, which the loaded Python module puts first on PATH: nothing of the
notebook server's environment is on its sys.path. Each Python version with an ipykernel module also
gets a "Python 3.11 (library)" kernel that loads that module alone (Lmod's default among those built for
it, else the newest). A library built for the image's Python (library.yaml's
``python``, the migration path) runs that Python, with the ipykernel the image installs into it.

Which modules: ``notebook.kernels`` in library.yaml, or by default every featured module that is a
Python package. A Python package is a module whose file adds ``lib/pythonX.Y/site-packages``, which is
what EasyBuild's PythonPackage and PythonBundle easyblocks (and the Python extensions of any easyblock)
write into it; it gets a kernel only if X.Y is a Python the kernels run: the image's, or one the
library has an ipykernel module for.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

from builder import ebadapter
from builder.publish import kernel_startup
from builder.publish.featured import pick, python_minor
from builder.publish.notebook_env import lmod_start
from builder.read.config import Featured, Settings

#: The module that gives kernels their ipykernel in a library with its own Python.
IPYKERNEL = "ipykernel"
#: What kernel.sh unsets before loading: the notebook server's Python must not reach the kernel's.
SERVER_PYTHON_VARIABLES = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "PYTHONEXECUTABLE",
                           "PYTHONPLATLIBDIR", "VIRTUAL_ENV", "CONDA_PREFIX")


@dataclass(frozen=True)
class Kernel:
    key: str  # names the kernelspec's folder: the package's module, or Python/X.Y for a library Python kernel
    display_name: str
    loads: tuple[str, ...]  # Lmod's full names, what kernel.sh loads in turn (the last comes first on sys.path)


def _wanted(settings: Settings, target: str) -> list[Featured]:
    if settings.kernels is None:
        return [f for f in settings.featured if not f.targets or target in f.targets]
    return [Featured(name=name.split("/")[0], version=name.split("/", 1)[1] if "/" in name else None)
            for name in settings.kernels]


def names(settings: Settings, target: str) -> set[str]:
    """The module names whose change can change the target's kernels."""
    return {wanted.name for wanted in _wanted(settings, target)} | ({IPYKERNEL} if settings.python is None else set())


def _version(module_text: str, name: str, fallback: str) -> str:
    variable = "EBVERSION" + ebadapter.software_variable(name)
    found = re.search(r'setenv\("' + re.escape(variable) + r'",\s*"([^"]+)"\)', module_text)
    return found.group(1) if found else fallback


def _ipykernels(settings: Settings, packages: dict[str, dict]) -> dict[str, str]:
    """The ipykernel module kernels load per Python X.Y: Lmod's default among those built for it, else the newest."""
    if settings.python is not None:
        return {}
    by_python: dict[str, list[dict]] = {}
    for version in packages.get(IPYKERNEL, {}).get("versions", []):
        built_for = python_minor(Path(version["path"]).read_text())
        if built_for and version["full"] not in settings.hidden:
            by_python.setdefault(built_for, []).append(version)
    chosen = {python: pick({"versions": versions}, Featured(name=IPYKERNEL)) for python, versions in by_python.items()}
    return {python: version["full"] for python, version in sorted(chosen.items()) if version}


def _refusal(settings: Settings, full: str, built_for: str | None, ipykernels: dict[str, str]) -> str | None:
    """Why a module gets no kernel, or None when it gets one."""
    if built_for is None:
        return f"kernel {full} is not a Python package: no kernel"
    if settings.python is not None and built_for != settings.python_version:
        return f"kernel {full} was built for Python {built_for}, the notebooks run {settings.python_version}: no kernel"
    if settings.python is None and built_for not in ipykernels:
        return f"kernel {full} was built for Python {built_for}, which has no {IPYKERNEL} module: no kernel"
    return None


def select(settings: Settings, target: str, catalogue: list[dict]) -> tuple[list[Kernel], list[str]]:
    """The target's kernels from Lmod's catalogue of the new generation, and warnings for the admin about
    modules named in ``notebook.kernels`` that get none. By default, featured modules that are no Python
    packages are simply left out (and one built for another Python is already named by the featured index)."""
    packages = {p["package"]: p for p in catalogue}
    explicit = settings.kernels is not None
    ipykernels = _ipykernels(settings, packages)
    kernels = {f"Python/{python}": Kernel(f"Python/{python}", f"Python {python} (library)", (module,))
               for python, module in ipykernels.items()}
    warnings = []
    for wanted in _wanted(settings, target):
        label = wanted.name + (f"/{wanted.version}" if wanted.version else "")
        version = pick(packages[wanted.name], wanted) if wanted.name in packages else None
        if version is None or version["full"] in settings.hidden:
            why = "is not published" if version is None else "is retired (modules.hidden)"
            warnings += [f"kernel {label} {why} in target '{target}': no kernel"] if explicit else []
            continue
        text = Path(version["path"]).read_text()
        built_for = python_minor(text)
        refusal = _refusal(settings, version["full"], built_for, ipykernels)
        if refusal or built_for is None:
            warnings += [refusal] if explicit and refusal else []
            continue
        display = f"Python {built_for} · {wanted.name} {_version(text, wanted.name, version['versionName'])}"
        loads = (version["full"],) if settings.python is not None else (ipykernels[built_for], version["full"])
        kernels[version["full"]] = Kernel(version["full"], display, loads)
    return list(kernels.values()), warnings


def kernel_sh(settings: Settings, target: str) -> str:
    """The launcher every kernel of the target runs: ``bash kernel.sh MODULE... -- COMMAND...``."""
    env_sh = settings.layout.view_target(settings.layout.live(), target) / "env.sh"
    return f"""# Generated by modlib for target '{target}': starts a Jupyter kernel with modules loaded.
# Usage (each kernel.json's argv): bash kernel.sh MODULE... -- PYTHON -m ipykernel_launcher -f CONNECTION_FILE ...
# The Jupyter server that starts it need not have Lmod initialised nor any module loaded. Its Python's
# variables do not reach the kernel. The modules it had loaded when the notebook's session began (the
# environment Jupyter keeps for the kernel's restarts) are loaded again from the library, those it cannot
# find left out; then the kernel's own. A server with a modules panel names, in MODLIB_PANEL_MODULES, a
# file that holds what it has loaded now: what the panel loaded since the session began is loaded last
# (over the kernel's own module of the same name), what it unloaded is left out, so a restart follows it.
modules=()
while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do modules+=("$1"); shift; done
shift
{lmod_start(shlex.quote(str(env_sh)), settings.lmod_prefix, "kernel.sh")}
at_session=${{LOADEDMODULES:-}}
panel=$at_session
if [ -n "${{MODLIB_PANEL_MODULES:-}}" ] && [ -r "$MODLIB_PANEL_MODULES" ]; then
    IFS= read -r panel < "$MODLIB_PANEL_MODULES" || true
fi
kept=() added=()
IFS=: read -r -a listed <<< "$panel"
for m in "${{listed[@]}}"; do
    case ":$at_session:" in *":$m:"*) kept+=("$m") ;; *) added+=("$m") ;; esac
done
module --force purge || exit 1
unset {" ".join(SERVER_PYTHON_VARIABLES)}
module load "${{modules[@]}}" || exit 1
own=$LOADEDMODULES  # the kernel's modules and what they need: kernel_startup.py's notices leave them out
if [ "${{#kept[@]}}" -gt 0 ]; then
    module --force purge && module try-load "${{kept[@]}}" && module load "${{modules[@]}}" || exit 1
fi
[ "${{#added[@]}}" -eq 0 ] || module try-load "${{added[@]}}"
export MODLIB_PANEL_AT_START=$panel MODLIB_KERNEL_OWN=$own
exec "$@"
"""


def kernelspec(settings: Settings, target: str, kernel: Kernel) -> dict:
    """The library's Python is ``python`` on the PATH its modules made; the image's is the configured one.
    kernel_startup.py runs by runpy, so that none of its names reach the notebook's namespace."""
    layout = settings.layout
    startup = layout.view_kernel_startup(layout.live(), target)
    run = f"__import__('runpy').run_path({str(startup)!r}, run_name={kernel_startup.RUN_NAME!r})"
    return {"argv": ["bash", str(layout.view_kernel_sh(layout.live(), target)), *kernel.loads, "--",
                     settings.python or "python", "-m", "ipykernel_launcher", "-f", "{connection_file}",
                     f"--IPKernelApp.exec_lines={run}"],
            "display_name": kernel.display_name,
            "language": "python",
            "metadata": {"modlib": {"module": kernel.loads[-1], "target": target}}}


def write(settings: Settings, gen: Path, target: str, kernels: list[Kernel]) -> None:
    """The target's Jupyter folder in generation ``gen``: kernel.sh and one kernelspec per kernel."""
    layout = settings.layout
    layout.view_kernel(gen, target, "x").parent.mkdir(parents=True)  # kernels/, even with none in it
    layout.view_kernel_sh(gen, target).write_text(kernel_sh(settings, target))
    shutil.copyfile(kernel_startup.__file__, layout.view_kernel_startup(gen, target))
    for kernel in kernels:
        folder = layout.view_kernel(gen, target, kernel.key)
        folder.mkdir(parents=True)
        (folder / "kernel.json").write_text(json.dumps(kernelspec(settings, target, kernel), indent=2,
                                                       ensure_ascii=False) + "\n")


def reuse(previous: Path, folder: Path) -> None:
    """No module with a kernel changed: the previous generation's Jupyter folder, unchanged."""
    shutil.copytree(previous, folder)

