"""Helpers for tests: small libraries described by a library.yaml written into a temporary repo."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from builder.execute import records
from builder.execute.command import Invocation
from builder.execute.executors import NodeRun
from builder.layout import Layout
from builder.plan.graph import Node

REPO = Path(__file__).resolve().parent.parent
LMOD_INIT = "/usr/share/lmod/lmod/init/bash"
PYVER = "{}.{}".format(*sys.version_info[:2])
#: The demo's Python packages built for the tests' venv (library.yaml's ``python:``, the migration path),
#: without the Python dependency of the library's own: a small test library builds no Python.
TEST_EASYCONFIGS = REPO / "tests" / "data" / "easyconfigs"


def write_config(repo: Path, targets: dict, *, easyconfig_paths: list[str] | None = None,
                 root: str = "library", extra: dict | None = None, own_python: bool = False) -> Path:
    """A library.yaml in ``repo/easyconfigs`` whose relative paths resolve against ``repo``: built for the
    tests' venv (the migration path), or with ``own_python`` for the library's own Python module."""
    (repo / "easyconfigs").mkdir(parents=True, exist_ok=True)
    python = {} if own_python else {"python": {"executable": sys.executable, "version": PYVER}}
    data = {"root": root, **python, "hooks": str(REPO / "hooks" / "modlib_hooks.py"),
            "easyconfig_paths": easyconfig_paths or [str(TEST_EASYCONFIGS), str(REPO / "easyconfigs")],
            "targets": targets, **(extra or {})}
    path = repo / "easyconfigs" / "library.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def write_easystack(path: Path, entries: list[str]) -> Path:
    path.write_text(yaml.safe_dump({"easyconfigs": entries}))
    return path


def modlib(*args: str, env: dict | None = None, check: bool = False, cwd: Path | None = None,
           timeout: float | None = None) -> subprocess.CompletedProcess:
    """Run the real console script, as admins and CronJobs do."""
    full_env = {**os.environ, **(env or {})}
    exe = Path(sys.executable).parent / "modlib"
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env=full_env, check=check, cwd=cwd,
                          timeout=timeout)


#: ``eb --dry-run``'s line for one module
EB_MODULE = re.compile(r"^\s*\* \[.\] (\S+) \(module: (\S+)\)$", re.M)


def eb_dry_run(args: list[str], robot: list[Path], scratch: Path) -> subprocess.CompletedProcess:
    """``eb --dry-run --robot`` with these robot paths, run in ``scratch``: what the planner is compared with
    (``EB_MODULE`` finds its easyconfigs and modules)."""
    env = {**os.environ, "LMOD_CMD": "/usr/share/lmod/lmod/libexec/lmod", "MODULEPATH": "",
           "EASYBUILD_ALLOW_USE_AS_ROOT_AND_ACCEPT_CONSEQUENCES": "1",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return subprocess.run(
        [str(Path(sys.executable).parent / "eb"), *args, "--robot", "--dry-run",
         "--robot-paths=" + os.pathsep.join(map(str, robot)), f"--installpath={scratch / 'eb-install'}",
         f"--tmpdir={scratch}", "--disable-show-progress-bar", "--output-style=basic"],
        capture_output=True, text=True, env=env, cwd=scratch)


def lmod(script: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run shell lines with Lmod's `module` function defined, as a notebook terminal would."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LOADEDMODULES", "_LMFILES_")}
    full_env.update(env or {})
    return subprocess.run(["bash", "-c", f"source {LMOD_INIT}\n{script}"], capture_output=True, text=True,
                          env=full_env)


def link_sources(root: Path, cache: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    if not (root / "sources").exists():
        (root / "sources").symlink_to(cache)


def copy_site_easyconfigs(dest: Path) -> Path:
    """The site repository's easyconfigs, its Python packages being the tests' (``TEST_EASYCONFIGS``)."""
    shutil.copytree(REPO / "easyconfigs", dest, ignore=shutil.ignore_patterns("library.yaml", "*.easystack.yaml"))
    shutil.copytree(TEST_EASYCONFIGS, dest, dirs_exist_ok=True)
    return dest


def bundle_easyconfig(name: str, extra: str, description: str = "test fixture") -> str:
    """A Bundle easyconfig on the GCCcore/system toolchain: builds in seconds, fails or waits on demand."""
    return f"""easyblock = 'Bundle'
name = '{name}'
version = '1.0'
homepage = 'https://example.org'
description = "{description}"
toolchain = {{'name': 'GCCcore', 'version': 'system'}}
{extra}
moduleclass = 'tools'
"""


@dataclass
class Handler:
    """The dispatch loop's questions (builder.commands.run.NodeHandler) answered by plain functions, for tests
    that drive the loop without a run around it."""

    invocation: Callable[[Node], Invocation]
    log_path: Callable[[Node], Path]
    on_finished: Callable[[Node, Invocation, NodeRun], bool | Invocation]
    lost: Callable[[], str | None] = lambda: None


#: What a bare notebook image lacks that this host has: Lmod, Lua and every Python. Folders matching
#: these patterns are hidden under empty ones, commands in /usr/bin matching ``BARE_HIDDEN_COMMANDS`` left out.
BARE_HIDDEN_DIRS = ("/usr/share/lmod", "/etc/lmod", "/usr/lib/x86_64-linux-gnu/lua", "/usr/share/lua",
                    "/usr/lib/python3*", "/usr/local/lib/python3*")
BARE_HIDDEN_COMMANDS = re.compile(r"lua|luac|python|pydoc|pip|lmod|tclsh|wish")


def bare_image(script: str, scratch: Path, *, shell: tuple[str, ...] = ("bash", "--noprofile", "--norc"),
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``script`` as a notebook image with only a shell, coreutils and glibc would: a private mount
    namespace (bwrap) of this host read-only, minus its Lmod, Lua and Pythons, with a clean environment
    (``env`` added), as uid 1000. /usr/bin is a folder of links to the host's commands but the hidden ones (the
    host's folder sits at /mnt/host-bin); ``scratch`` holds that folder. The library stays at its path,
    read-only, as a notebook mounts it."""
    commands = scratch / "usr-bin"
    if not commands.is_dir():
        commands.mkdir(parents=True)
        for entry in os.scandir("/usr/bin"):
            if not BARE_HIDDEN_COMMANDS.search(entry.name):
                (commands / entry.name).symlink_to(f"/mnt/host-bin/{entry.name}")
    hidden = sorted({str(p) for pattern in BARE_HIDDEN_DIRS for p in Path("/").glob(pattern.lstrip("/"))
                     if p.is_dir() and not p.is_symlink()})
    args = ["bwrap", "--die-with-parent", "--unshare-user", "--uid", "1000", "--gid", "100",  # jovyan, as in images
            "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
            "--tmpfs", "/mnt", "--ro-bind", "/usr/bin", "/mnt/host-bin", "--ro-bind", str(commands), "/usr/bin",
            "--dir", "/mnt/home", "--chdir", "/mnt/home", "--clearenv"]
    args += [a for folder in hidden for a in ("--tmpfs", folder)]
    variables = {"PATH": "/usr/bin:/bin", "HOME": "/mnt/home", "USER": "jovyan", "LANG": "C.UTF-8", **(env or {})}
    args += [a for key, value in variables.items() for a in ("--setenv", key, value)]
    return subprocess.run([*args, "--", *shell, "-c", script], capture_output=True, text=True, timeout=300)


def at_once(action: Callable[[], object], count: int) -> list[BaseException]:
    """Run ``action`` in ``count`` threads at the same time, as runs sharing a cache do: what they raised."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            action()
        except Exception as err:  # reported to the caller
            errors.append(err)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def record(layout: Layout, module: str, seconds: float, *, start: float = 1000.0, exit_code: int = 0,
           tree: str = "cpu", **measured):
    """A build record as a run writes it: the log's folder and name decide where the record goes."""
    log = records.new_log_path(layout, tree, module, start)
    log.parent.mkdir(parents=True, exist_ok=True)
    log = log.with_name(f"{start:.0f}-{log.name}")  # one record per start, even within a second
    run = records.Record(module=module, tree=tree, target=tree, easyconfig="x.eb", sha256="0", command=["eb"],
                         exit_code=exit_code, start=start, end=start + seconds, log=str(log), executor="local",
                         where="here")
    path = records.write(run)
    if measured:  # the measurement's fields, as the run adds them
        path.write_text(json.dumps({**json.loads(path.read_text()), **measured}))
