"""What every kernel of the library runs before its first cell: kernel.sh starts ipykernel with
``--IPKernelApp.exec_lines`` running this file by ``runpy`` (under the run name below), so nothing of it
lands in the notebook's namespace. Every publish copies it beside kernel.sh (builder/publish/kernels.py).

jupyter-lmod's panel loads and unloads modules in the notebook server. A running kernel cannot take
them: its LD_LIBRARY_PATH and PATH were fixed when it started (the dynamic loader reads them once), and
what it imported stays imported. Its restart takes them (kernel.sh reads the panel's modules anew from
the file the server names in MODLIB_PANEL_MODULES). So before each cell the kernel compares the panel's
modules with those kernel.sh found when it started, and says once per change what a restart will do.

jupyter-lmod's in-kernel client (``import module; await module.load(...)``, the code its panel generates)
changes the kernel's environment and appends the loaded modules' Python paths to ``sys.path``, after
everything the kernel had; for EBPYTHONPREFIXES it names ``lib/python3.1`` on Python 3.11 (it takes
``sys.version[:3]``). Here its calls put the loaded modules' paths first, where a fresh start has them,
and name the packages imported before that keep their old version until a restart. The folder the
running ipykernel comes from stays on sys.path whatever is unloaded: the panel's generated code starts
with ``module.purge(force=True)``, which unloads the kernel's own ipykernel module too.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from typing import Any

RUN_NAME = "modlib_kernel_startup"
#: jupyter-lmod's calls that change what is loaded.
CHANGES = ("load", "unload", "purge", "reset", "restore", "use", "unuse")


def _names(loaded: str) -> list[str]:
    return [name for name in loaded.strip().split(":") if name]


def change_notice(started: str, now: str, own: str) -> str | None:
    """What a user reads at the next cell after the panel changed: what it loaded and unloaded since the
    kernel started, but for the kernel's own modules (a restart keeps them); None when that is nothing."""
    before, after, kept = _names(started), _names(now), set(_names(own))
    loaded = [m for m in after if m not in before and m not in kept]
    unloaded = [m for m in before if m not in after and m not in kept]
    if not loaded and not unloaded:
        return None
    said = "; ".join(f"{verb} {', '.join(names)}" for verb, names in (("loaded", loaded), ("unloaded", unloaded))
                     if names)
    return (f"modlib: modules changed in the panel since this kernel started ({said}). This kernel still runs "
            "with the modules it started with; restart it (Kernel › Restart Kernel…) to import what the panel "
            "has loaded now.")


def watch_panel(panel_file: str, started: str, own: str, say: Callable[[str], None]) -> Callable[..., None]:
    """IPython's ``pre_run_cell`` callback: reads the panel's one-line file, speaks once per change."""
    told = [started]

    def before_cell(*_: Any) -> None:
        try:
            with open(panel_file) as panel:
                now = panel.readline().strip()
        except OSError:
            return  # the server is gone or never wrote it: nothing to compare
        if now == told[-1]:
            return
        told.append(now)
        notice = ("modlib: the panel's modules are again those this kernel started with." if now == started
                  else change_notice(started, now, own))
        if notice:
            say(notice)

    return before_cell


def python_paths(environ: dict[str, str] | os._Environ[str]) -> list[str]:
    """Where the loaded modules' Python packages are, in the order a fresh start puts them on sys.path."""
    site = os.path.join("lib", f"python{sys.version_info[0]}.{sys.version_info[1]}", "site-packages")
    prefixes = [p for p in environ.get("EBPYTHONPREFIXES", "").split(os.pathsep) if p]
    return [p for p in environ.get("PYTHONPATH", "").split(os.pathsep) if p] + [os.path.join(p, site)
                                                                                for p in prefixes]


def paths_first(path: list[str], before: list[str], after: list[str], wrong_site: str) -> list[str]:
    """``path`` (sys.path) with ``after`` first (behind the notebook's folder, as at start), and nothing left
    elsewhere of ``before`` or of what jupyter-lmod appended for them: each path with a slash added, and
    ``lib/python3.1/site-packages`` for a prefix's site-packages."""
    prefixes = {os.path.dirname(os.path.dirname(os.path.dirname(p))) for p in before + after}
    junk = {*before, *after, *(os.path.join(p, "") for p in before + after),
            *(os.path.join(p, wrong_site) for p in prefixes)}
    rest = [p for p in path if p not in junk]
    head = rest[:1] if rest and rest[0] in ("", os.getcwd()) else []
    return head + after + rest[len(head):]


def stale_imports(new_paths: list[str]) -> list[str]:
    """Packages imported before a load that the load's paths also hold: they keep the imported version.
    Private ones (setuptools' ``_distutils_hack``) are no user's concern."""
    stale = []
    for folder in new_paths:
        try:
            entries = os.listdir(folder)
        except OSError:
            continue
        for entry in entries:
            name = entry.removesuffix(".py")
            where = getattr(sys.modules.get(name), "__file__", None) or ""
            if name in sys.modules and not name.startswith("_") and not where.startswith(folder + os.sep):
                stale.append(name)
    return sorted(set(stale))


def _kernel_site() -> str:
    """The folder the running ipykernel was imported from (its module's site-packages)."""
    return os.path.dirname(os.path.dirname(getattr(sys.modules.get("ipykernel"), "__file__", None) or "/"))


def _first(call: Callable[..., Any], wrong_site: str) -> Callable[..., Any]:
    async def changed(*args: Any, **kwargs: Any) -> Any:
        before = [p for p in python_paths(os.environ) if p != _kernel_site()]
        result = await call(*args, **kwargs)
        after = python_paths(os.environ)
        sys.path[:] = paths_first(sys.path, before, after, wrong_site)
        importlib.invalidate_caches()
        stale = stale_imports([p for p in after if p not in before])
        if stale:
            _say(f"modlib: imported before this load, so still the version this kernel imported: {', '.join(stale)}; "
                 "restart the kernel to import the loaded one.")
        return result

    return changed


def _say(text: str) -> None:
    print(text, file=sys.stderr)


def install() -> None:
    from IPython import get_ipython

    shell = get_ipython()
    panel_file = os.environ.get("MODLIB_PANEL_MODULES")
    if shell is not None and panel_file:
        started, own = os.environ.get("MODLIB_PANEL_AT_START", ""), os.environ.get("MODLIB_KERNEL_OWN", "")
        shell.events.register("pre_run_cell", watch_panel(panel_file, started, own, _say))
    try:
        import module  # jupyter-lmod's in-kernel client, in the library's ipykernel module
    except ImportError:
        return  # a kernel on an image's Python without jupyter-lmod: no in-kernel API to mend
    for name in CHANGES:
        setattr(module, name, _first(getattr(module, name), module.SITE_POSTFIX))


if __name__ == RUN_NAME:
    install()
