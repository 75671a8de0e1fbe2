"""The per-node ``eb`` invocation, shared by every executor.

``argv`` and ``portable_env`` depend on the plan node, the target settings and the build's Request
(what its records ask for: ``--parallel`` follows its cores) alone (paths on the library volume are the
same in every pod), so a Kubernetes Job runs exactly what the local pool runs. Whatever differs per
host (where the site's easyconfigs and hooks are, scratch space, EasyBuild's locks, the root-only
override) comes from ``site_env`` and ``host_env``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from builder import ebadapter
from builder.digests import read_sha256
from builder.errors import RunFailed
from builder.execute.expected import expected
from builder.execute.resources import Request, requested
from builder.hostile_files import remove
from builder.layout import Layout
from builder.plan import entry_options
from builder.plan.graph import Node
from builder.publish import prefixes
from builder.publish.live import read_manifest
from builder.publish.view import generations
from builder.read.config import Settings


@dataclass(frozen=True)
class Invocation:
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    prefix: str  # the build's own install prefix (in argv too): what it may write, what publishing records
    # what the build is given (execute/resources.py): a Job's request and limit, a local build's cgroup limit
    memory_bytes: int | None = None
    cpus: int | None = None  # eb --parallel in argv too


def build_prefix(settings: Settings, node: Node, rebuild: bool) -> Path:
    """A fresh prefix for this build of the node, named by a digest of the node and of the prefix it
    replaces: a rerun of the same build (a restarted runner adopting its Job) gets the same one, a
    rebuild never the published one. A prefix on the volume that anything still names (a kept
    generation, a manifest, its grace period: the install of a module removed and now built again)
    is never built into: the next digest is taken. Only a prefix that exists is checked, so a run
    reads the module files once per such prefix, not once per node."""
    layout = settings.layout
    replaces = (read_manifest(layout, node.tree, node.module) or {}).get("prefix", "") if rebuild else ""
    attempt = 0
    prefix = _candidate(layout, node, replaces, attempt)
    while prefix.exists() and prefixes.in_use(layout, settings.trees(), generations(layout), node.tree, prefix):
        attempt += 1
        prefix = _candidate(layout, node, replaces, attempt)
    return prefix


def _candidate(layout: Layout, node: Node, replaces: str, attempt: int) -> Path:
    """The first attempt's digest is the one earlier versions gave: their interrupted builds are adopted."""
    key = [node.tree, node.module, node.sha256, replaces] + ([attempt] if attempt else [])
    return layout.prefix(node.tree, f"{node.name}-{hashlib.sha256(json.dumps(key).encode()).hexdigest()[:10]}")


def outputs(layout: Layout, node: Node, inv: Invocation) -> tuple[Path, Path]:
    """The two folders a build writes on the volume (its prefix and its staging folder): all of the
    library an isolated build may change; its log is written by the runner."""
    return Path(inv.prefix), layout.staging(node.tree, node.module)


def clear_leftovers(layout: Layout, node: Node, inv: Invocation) -> None:
    """What a killed build of this node left behind: its staging dir, EasyBuild's install lock and the
    half-made prefix. Executors call it right before they start a fresh build of the node, when no
    other can run; a prefix that a published module names is never touched. Whatever the killed build
    made of them (a link in place of its folder, a FIFO) is removed itself, never followed."""
    prefix, staging = outputs(layout, node, inv)
    if (read_manifest(layout, node.tree, node.module) or {}).get("prefix") == inv.prefix:
        raise RunFailed(f"{prefix}: the build's prefix is the published one; refusing to build into it")
    for path in (staging, layout.eb_install_lock(layout.install_dir(prefix, node.module)), prefix):
        remove(path, ignore_errors=True)  # as before: what cannot go, EasyBuild's own cleanup meets


def store_modulepath(settings: Settings, target_name: str) -> list[Path]:
    """Published module files as builds see them: a dependency built a moment ago is already here."""
    target = settings.targets[target_name]
    return [settings.layout.store(tree) for tree in settings.layered_trees(target)]


def effective_options(settings: Settings, node: Node, cpus: int | None = None) -> dict[str, object]:
    """The EasyBuild options the node is built with (its target's, the arch's optarch, its easystack
    entry's last): what the build record keeps, so `modlib status --where` can ask which modules were
    built without a value. ``parallel`` is the cores the build is given (its Request's, which a target's
    pinned ``parallel`` decides), so eb never runs more compilers than its Job asked cores for."""
    target = settings.targets[node.target]
    opts = dict(target.options())
    cores = cpus or target.parallel
    if cores:
        opts.setdefault("parallel", str(cores))
    if target.arch != "generic":
        import archspec.cpu

        # archspec's flags for a current gcc; EasyBuild prefixes optarch with '-' itself
        flags = archspec.cpu.TARGETS[target.arch].optimization_flags("gcc", "99")
        opts.setdefault("optarch", "GCC:" + flags[1:])
    elif "optarch" not in opts:
        opts["optarch"] = "GENERIC"
    opts.update(entry_options.for_build(node.options))
    if "include-easyblocks" in opts:  # the staged copies: a pod sees the volume, not this host's files
        opts["include-easyblocks"] = ",".join(str(staged_file(settings.layout, f)) for f in included_easyblocks(node))
    return opts


def invocation(settings: Settings, node: Node, rebuild: bool = False, request: Request | None = None) -> Invocation:
    """The node's ``eb`` command and the environment it needs from modlib, the same for every executor
    and every host: only the node, its target and what it is given (``request``: by default what its
    records ask for) go in, so a Job's name (a hash of it) is stable while they are."""
    request = request or node_request(settings, node)
    target = settings.targets[node.target]
    layout = settings.layout
    prefix = build_prefix(settings, node, rebuild)
    argv = ["eb", easyconfig_argument(settings, node),
            f"--installpath-software={prefix}",
            f"--installpath-modules={layout.staging(node.tree, node.module)}",
            f"--sourcepath={layout.sources()}",
            "--logtostdout", "--disable-show-progress-bar", "--output-style=basic",
            *ebadapter.eb_cli_options(effective_options(settings, node, request.cpus))]
    argv += ["--hidden"] if node.hidden else []  # the node's own, never its dependencies' (as with eb --robot)
    argv += ["--rebuild"] if rebuild else []
    env = {"MODLIB_ROOT": str(layout.root), "MODLIB_TARGET": target.name, "MODLIB_TARGET_KIND": target.kind,
           "MODULEPATH": os.pathsep.join(str(p) for p in store_modulepath(settings, target.name))}
    return Invocation(argv=tuple(argv), env=tuple(sorted(env.items())), prefix=str(prefix),
                      memory_bytes=request.memory_bytes, cpus=request.cpus)


def node_request(settings: Settings, node: Node) -> Request:
    """What the node's build asks for now: its records' expected cost, within its target's bounds."""
    return requested(settings, node, expected(settings.layout, node))


def staged_file(layout: Layout, path: Path) -> Path:
    """Where a file a build needs from this host (a tweaked easyconfig, one of an entry's own robot path,
    an included easyblock) is staged on the volume, by content: a pod builds from the same file."""
    return layout.inputs(f"file-{read_sha256(path)[:16]}") / path.name


def included_easyblocks(node: Node) -> list[Path]:
    return entry_options.easyblock_files(dict(node.options).get("include-easyblocks", ""))


def _names_in(folder: Path) -> set[str]:
    return {p.name for p in folder.rglob("*.eb")}


def easyconfig_argument(settings: Settings, node: Node) -> str:
    """The easyconfig as ``eb`` is given it: by name where the site's robot path finds exactly this file
    first (so does a pod's, which holds the same files), else the staged copy of the file that was planned."""
    from builder.plan.planner import robot_paths

    paths = robot_paths(settings)
    for i, folder in enumerate(paths):
        if node.easyconfig.is_relative_to(folder):
            if not any(node.easyconfig.name in _names_in(p) for p in paths[:i]):
                return node.easyconfig.name
            break
    return str(staged_file(settings.layout, node.easyconfig))


def site_env(robot_path: str, hooks: str, scratch: str, locks: str) -> dict[str, str]:
    """Where a build finds the site's inputs, its scratch space and EasyBuild's locks: the part of the
    environment that differs between this host and a pod, while ``Invocation`` stays the same."""
    return {
        "EASYBUILD_LOCKS_DIR": locks,
        "EASYBUILD_ROBOT_PATHS": robot_path,
        "EASYBUILD_HOOKS": hooks,
        "EASYBUILD_BUILDPATH": f"{scratch}/build",
        "EASYBUILD_TMPDIR": f"{scratch}/tmp",
        "EASYBUILD_REPOSITORYPATH": f"{scratch}/ebfiles_repo",
        "EASYBUILD_MODULES_TOOL": "Lmod",
    }


def host_env(settings: Settings, scratch: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """This host's part of a build's environment: tools, robot path, scratch, the root-only override."""
    env = dict(os.environ if base is None else base)
    for var in ("LOADEDMODULES", "_LMFILES_", "PYTHONPATH", "VIRTUAL_ENV"):
        env.pop(var, None)
    tools = [str(Path(settings.python).parent)] if settings.python and "/" in settings.python else []
    tools.append(str(Path(sys.executable).parent))
    env["PATH"] = os.pathsep.join([*tools, env.get("PATH", "/usr/bin:/bin")])
    from builder.plan.planner import robot_paths

    # the library's locks folder, where clear_leftovers finds a killed build's lock
    env.update(site_env(os.pathsep.join(str(p) for p in robot_paths(settings)), str(settings.hooks), str(scratch),
                        str(settings.layout.eb_locks())))
    for sub in ("build", "tmp"):  # made once here: concurrent eb processes race creating them
        (scratch / sub).mkdir(parents=True, exist_ok=True)
    env["LMOD_CMD"] = str(settings.lmod_prefix / "libexec" / "lmod")
    if settings.python:  # the site hooks start installed scripts with it (pods: the image's)
        env["MODLIB_PYTHON"] = settings.python
    else:  # the library's Python: EasyBuild's own shebangs, which the module's Python dependency serves
        env.pop("MODLIB_PYTHON", None)
    if os.geteuid() == 0:
        env["EASYBUILD_ALLOW_USE_AS_ROOT_AND_ACCEPT_CONSEQUENCES"] = "1"
    return env
