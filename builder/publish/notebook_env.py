"""The shell lines a notebook image sources to see a target: its trees on MODULEPATH, cuda before cpu."""

from __future__ import annotations

import shlex

from builder.build.command import live_modulepath
from builder.read.config import Settings


def env_lines(settings: Settings, target_name: str) -> list[str]:
    target = settings.target(target_name)
    paths = ":".join(str(p) for p in live_modulepath(settings, target.name))
    return [f"export MODULEPATH={shlex.quote(paths)}",
            f"export MODLIB_TARGET={shlex.quote(target.name)}"]
