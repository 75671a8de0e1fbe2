"""Lmod's own tools under its prefix (Settings.lmod_prefix): its default rc and its spider."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from builder import proc
from builder.errors import RunFailed
from builder.publish import spider_cache


def _tool(prefix: Path, *parts: str) -> Path:
    """One of Lmod's files under ``prefix`` (Settings.lmod_prefix); a missing Lmod fails the run, it is
    this host's setup, not the admin's input."""
    path = prefix.joinpath(*parts)
    if not path.is_file():
        raise RunFailed(f"{path}: not found; install Lmod (Debian: apt-get install lmod) or set LMOD_CMD")
    return path


def default_lmodrc(prefix: Path) -> str:
    """Lmod's own lmodrc (property definitions such as the gpu marker); the library's adds the cache to it."""
    return _tool(prefix, "init", "lmodrc.lua").read_text()


def spider_output(prefix: Path, style: str, modulepath: list[Path]) -> str:
    """What Lmod's spider writes for ``modulepath`` in one of its output styles (``spiderT``: the cache)."""
    spider = _tool(prefix, "libexec", "spider")
    result = proc.run([str(spider), "-o", style, ":".join(str(p) for p in modulepath)])
    if result.returncode != 0:
        raise RunFailed(f"{spider} failed on {modulepath}: {result.stderr.strip()[-500:]}")
    return result.stdout


def spider_json(prefix: Path, modulepath: list[Path]) -> list[dict]:
    """Lmod's catalogue of a module tree (`spider -o jsonSoftwarePage`)."""
    return json.loads(spider_output(prefix, "jsonSoftwarePage", modulepath) or "[]")


def spider_names(prefix: Path, names: list[str], modulepath: list[Path]) -> list[dict]:
    """Lmod's catalogue of just ``names`` in ``modulepath`` (the featured index, the catalogue page's changed
    names): spider walks links to their folders only (what it says of a name depends on that name's folder
    alone), and the paths it gives are put back."""
    with tempfile.TemporaryDirectory(prefix="modlib-spider-") as tmp:
        farms = [spider_cache.link_farm(Path(tmp) / str(i), tree, names) for i, tree in enumerate(modulepath)]
        packages = spider_json(prefix, farms)
    for package in packages:
        for version in package.get("versions", []):
            path = Path(version["path"])
            farm = next(f for f in farms if path.is_relative_to(f))
            version["path"] = str(modulepath[farms.index(farm)] / path.relative_to(farm))
    return packages
