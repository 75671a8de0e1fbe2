"""Lmod's own tools, found beside the `lmod` command: the spider and the system-cache updater."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from builder import proc
from builder.errors import RunFailed


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


def spider_json(prefix: Path, modulepath: list[Path]) -> list[dict]:
    """Lmod's catalogue of a module tree (`spider -o jsonSoftwarePage`)."""
    spider = _tool(prefix, "libexec", "spider")
    result = proc.run([str(spider), "-o", "jsonSoftwarePage", ":".join(str(p) for p in modulepath)])
    if result.returncode != 0:
        raise RunFailed(f"{spider} failed on {modulepath}: {result.stderr.strip()[-500:]}")
    return json.loads(result.stdout or "[]")


def build_spider_cache(prefix: Path, modulepath: list[Path], cache_dir: Path, seen_as: tuple[str, str]) -> None:
    """Lmod's update_lmod_system_cache_files over ``modulepath``, then module paths rewritten from how
    the builder sees them to how notebooks see them (``seen_as`` = (old prefix, new prefix)): Lmod matches
    a cache to MODULEPATH entries by their literal text."""
    tool = _tool(prefix, "libexec", "update_lmod_system_cache_files")
    cache_dir.mkdir(parents=True, exist_ok=True)
    result = proc.run([str(tool), "-d", str(cache_dir), "-t", str(cache_dir / "timestamp"),
                       ":".join(str(p) for p in modulepath)])
    if result.returncode != 0:
        raise RunFailed(f"{tool} failed: {(result.stdout + result.stderr).strip()[-500:]}")
    lua = cache_dir / "spiderT.lua"
    lua.write_text(lua.read_text().replace(seen_as[0], seen_as[1]))
    for compiled in cache_dir.glob("spiderT.luac_*"):  # keep the compiled twin in step with the text
        luac = shutil.which("luac" + compiled.name.rsplit("_", 1)[1])
        compiled.unlink()
        if luac:
            proc.run([luac, "-o", str(compiled), str(lua)], check=True)
