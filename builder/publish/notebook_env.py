"""What a notebook image needs to see a target, as files on the volume and as `modlib env` lines.

An image needs Lmod but not modlib: it sources ``<root>/live/targets/<target>/env.sh``. The lines
put the target's trees on MODULEPATH (a cuda tree before the cpu tree beneath it), point Lmod at the
spider cache (LMOD_RC), which serves ``spider`` and ``avail``, and stop Lmod from writing per-user
caches that would go stale when the library changes (LMOD_SHORT_TIME). LMOD_CACHED_LOADS (library.yaml's
notebook.cached_loads) is off by default: cached loads were measured slower, 20.9 s against 2.8 s for a
module with 155 dependencies (docs/performance.md). Lmod then walks the trees for a terse ``avail`` too
(jupyter-lmod's listing); turning it on is safe because every publish rewrites the cache in the same
atomic step as the module files. JUPYTER_PATH gets the target's Jupyter folder first, so Jupyter lists
the library's kernels (builder/publish/kernels.py).

An image needs no Lmod of its own when the library holds one (EasyBuild's module ``Lmod``, built with its
own Lua and luaposix, whose paths its configure bakes in): env.sh then ends by sourcing that Lmod's
init for the shell at hand (bash, zsh, else sh) when the shell has no ``module`` command yet, so an
image with only bash and coreutils gets ``module``, and one whose own Lmod is initialised keeps it.
Lmod's ``init/profile`` is not used: it would add its own folders, or /etc/lmod/.modulespath, to
MODULEPATH and set BASH_ENV. Which Lmod: the one in the view that ``env.sh`` belongs to (the admin's
default from ``modules.defaults``, else the newest version, a retired one never), named by the
prefix its manifest records; a rebuild's new prefix reaches env.sh at the publish that makes it live.
Both Lmods read the same spider caches through LMOD_RC.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from builder import jsonfile
from builder.publish.live import read_manifest
from builder.read.config import Settings

#: Seconds a spider walk may take before Lmod writes a per-user cache: never, in practice.
USER_CACHE_THRESHOLD = "86400"


def modulepath(settings: Settings, target_name: str, base: Path | None = None) -> list[Path]:
    """A target's trees in a view (``base``: one generation; default the live link), highest priority first."""
    layout = settings.layout
    base = layout.live() if base is None else base
    return [layout.view_tree(base, t) for t in settings.layered_trees(settings.target(target_name))]


#: The Lmod module a library may hold, and its package folder in the install (Lmod installs into
#: <prefix>/lmod/<version> and links <prefix>/lmod/lmod to it; init/<shell> is below).
LMOD_MODULE = "Lmod"
LMOD_PACKAGE = Path("lmod", "lmod")


def _version_key(version: str) -> list[tuple[int, str]]:
    """Versions compared part by part, numbers as numbers (8.7.60 after 8.7.9)."""
    return [(int(part), "") if part.isdigit() else (-1, part) for part in re.findall(r"\d+|[^\d.\-]+", version)]


def library_lmod(settings: Settings, target_name: str, base: Path | None = None) -> Path | None:
    """The package folder of the library's own Lmod that a target's view holds (``base``: one generation;
    default the live link), or None. A candidate counts only with a readable manifest and an init that
    stays inside its install (what a build left is not followed out of it)."""
    layout = settings.layout
    base = layout.live() if base is None else base
    defaults = dict(settings.defaults)
    found: list[tuple[str, Path]] = []
    for tree in settings.layered_trees(settings.target(target_name)):
        folder = layout.view_tree(base, tree) / LMOD_MODULE
        names = sorted(p.name for p in folder.glob("*.lua") if not p.name.startswith(".")) if folder.is_dir() else []
        for module in (f"{LMOD_MODULE}/{name.removesuffix('.lua')}" for name in names):
            try:
                prefix = (read_manifest(layout, tree, module) or {}).get("prefix")
            except jsonfile.Garbled:
                continue  # damage: verify and status name it
            if module in settings.hidden or not isinstance(prefix, str) or Path(prefix).parent != layout.software(tree):
                continue
            install = layout.install_dir(Path(prefix), module)
            if not _lmod_init(install):
                continue
            found.append((module.split("/", 1)[1], install / LMOD_PACKAGE))
    default = [pkg for version, pkg in found if version == defaults.get(LMOD_MODULE)]
    if default:
        return default[0]
    return max(found, key=lambda item: _version_key(item[0]))[1] if found else None


def _lmod_init(install: Path) -> bool:
    init = install / LMOD_PACKAGE / "init" / "bash"
    return init.is_file() and init.resolve().is_relative_to(install.resolve())


def lmod_init_lines(package: Path) -> list[str]:
    """POSIX sh that defines ``module`` with the library's Lmod in a shell that has none."""
    init = {shell: shlex.quote(str(package / "init" / shell)) for shell in ("bash", "zsh", "sh")}
    return ["if ! command -v module >/dev/null 2>&1; then  # no Lmod of the image's: the library's",
            f'  if [ -n "${{BASH_VERSION:-}}" ]; then . {init["bash"]}',
            f'  elif [ -n "${{ZSH_VERSION:-}}" ]; then . {init["zsh"]}',
            f"  else . {init['sh']}",
            "  fi",
            "fi"]


def lmod_start(env_sh: str, builders_lmod: Path, who: str) -> str:
    """bash that gives a generated script (kernel.sh, modlib-exec) a ``module`` command: the image's Lmod
    (a fresh bash has not its function), else the library's (``env_sh``, a shell word, starts it), else the
    builder's at its path; ``who`` names the script in the message when there is none."""
    fallback = shlex.quote(str(builders_lmod / "init" / "bash"))
    return "\n".join([
        "# Lmod: the image's, else the library's (env.sh starts it where no module command is), else the builder's",
        'if [ -n "${LMOD_PKG:-}" ] && [ -f "$LMOD_PKG/init/bash" ]; then source "$LMOD_PKG/init/bash"; fi',
        f"source {env_sh} || exit 1",
        f"command -v module >/dev/null 2>&1 || source {fallback} 2>/dev/null \\",
        f'    || {{ echo "{who}: no Lmod: neither the library nor this image holds one" >&2; exit 1; }}'])


def env_lines(settings: Settings, target_name: str, base: Path | None = None) -> list[str]:
    """The lines of a target's env.sh; ``base`` is the generation they are written into (default the live
    one), which says whether the library holds an Lmod. Every path they name goes through ``live``, but
    that Lmod's: its install's own path, which a publish changes by writing env.sh anew."""
    target = settings.target(target_name)
    live = settings.layout.live()
    values = [
        ("MODULEPATH", ":".join(str(p) for p in modulepath(settings, target.name))),
        ("LMOD_RC", str(settings.layout.view_target(live, target.name) / "lmodrc.lua")),
        ("LMOD_CACHED_LOADS", "yes" if settings.cached_loads else "no"),
        ("LMOD_SHORT_TIME", USER_CACHE_THRESHOLD),
        ("MODLIB_TARGET", target.name),
        ("MODLIB_SESSION_PY", str(settings.layout.view_session_py(live))),  # builder/publish/session.py
    ]
    jupyter = shlex.quote(str(settings.layout.view_jupyter(live, target.name)))
    package = library_lmod(settings, target.name, base)
    return [f"export {name}={shlex.quote(value)}" for name, value in values] + [
        f'export JUPYTER_PATH={jupyter}"${{JUPYTER_PATH:+:$JUPYTER_PATH}}"'  # before the image's own folders
    ] + (lmod_init_lines(package) if package else [])


def lmodrc(default_rc: str, *cache_dirs: Path | str) -> str:
    """Lmod's default rc plus the system spider caches (one per tree the target sees; Lmod merges them)."""
    entries = "".join(f'  {{ ["dir"] = "{d}", ["timestamp"] = "{d}/timestamp" }},\n' for d in cache_dirs)
    return (default_rc.rstrip("\n") + "\n\n-- modlib: the library's spider caches, one per tree, kept current by every "
            f"publish\nscDescriptT = {{\n{entries}}}\n")


def env_sh(settings: Settings, target_name: str, base: Path) -> str:
    """The env.sh of generation ``base``."""
    header = f"# Generated by modlib for target '{target_name}': source this in a notebook image.\n"
    return header + "\n".join(env_lines(settings, target_name, base)) + "\n"
