"""Lmod's own tools, found beside the `lmod` command: its prefix, its default rc, its spider."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from builder import proc
from builder.errors import ModlibError

DEBIAN_LMOD = Path("/usr/share/lmod/lmod")


def lmod_prefix() -> Path:
    """Lmod's install prefix (the folder holding libexec/ and init/), from LMOD_CMD, PATH, or Debian's place."""
    cmd = os.environ.get("LMOD_CMD") or shutil.which("lmod")
    prefix = Path(cmd).resolve().parent.parent if cmd else DEBIAN_LMOD
    if not (prefix / "libexec" / "spider").is_file():
        raise ModlibError(f"{prefix}: Lmod's libexec/spider not found; install Lmod (Debian: apt-get install lmod)")
    return prefix


def default_lmodrc() -> str:
    """Lmod's own lmodrc (property definitions such as the gpu marker); the library's adds the cache to it."""
    return (lmod_prefix() / "init" / "lmodrc.lua").read_text()


def spider_output(style: str, modulepath: list[Path]) -> str:
    """What Lmod's spider writes for ``modulepath`` in one of its output styles (``spiderT``: the cache)."""
    spider = lmod_prefix() / "libexec" / "spider"
    result = proc.run([str(spider), "-o", style, ":".join(str(p) for p in modulepath)])
    if result.returncode != 0:
        raise ModlibError(f"{spider} failed on {modulepath}: {result.stderr.strip()[-500:]}", 1)
    return result.stdout


def spider_json(modulepath: list[Path]) -> list[dict]:
    """Lmod's catalogue of a module tree (`spider -o jsonSoftwarePage`)."""
    return json.loads(spider_output("jsonSoftwarePage", modulepath) or "[]")
