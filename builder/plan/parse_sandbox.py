"""What a sandboxed parse sees: the easyconfigs and what EasyBuild reads to parse them, read-only.

The parse workers (builder/ebadapter/worker.py) run in the sandbox a local build runs in
(builder/execute/sandbox.py): no network, no writable folder but a private ``/tmp``, not the runner's
environment (its tokens), processes, library or parse cache. They see the robot path (the site's
easyconfigs, EasyBuild's own in the venv), the folders of the listed easyconfigs, the hooks file's
folder, the easyblocks an entry includes, EasyBuild's configuration files, and the Python that runs them. Listing
an easyconfig's sources runs it too, so ``source_lists`` asks the workers as well, and so does an entry's
``--try-*`` tweak (``Workers.tweak``): the runner writes the files it answers into the session's
``tweak_dirs``, which the workers then read.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import builder
from builder import ebadapter
from builder.ebadapter.sources import SourceFile
from builder.ebadapter.worker import Workers
from builder.execute import sandbox
from builder.plan.eb_inputs import config_files
from builder.plan.entry_options import included_files
from builder.read.config import Settings


def _view(settings: Settings, eb: ebadapter.Session, listed: list[Path], options: Mapping[str, object],
          configs: list[Path]) -> sandbox.View:
    folders = [*eb.robot_paths(), *(p.parent for p in listed), settings.hooks.parent, Path(sys.prefix),
               Path(sys.base_prefix), Path(builder.__file__).parent, *configs]
    folders += [f.parent for f in included_files(options)]
    for tweaked in eb.tweak_dirs or ():  # where the runner writes what a sandboxed tweak answered: the sandbox reads it
        os.makedirs(tweaked, mode=0o755, exist_ok=True)
        os.chmod(tweaked, 0o755)
        folders.append(Path(tweaked))
    return sandbox.checked(sandbox.View(readonly=tuple(p for p in folders if p.exists())), settings)


@contextlib.contextmanager
def workers(settings: Settings, eb: ebadapter.Session, listed: list[Path], options: Mapping[str, object],
            origin: object) -> Iterator[Workers]:
    """Sandboxed parse workers configured as ``eb`` is, for the easyconfigs ``listed`` and what they need."""
    from builder.plan.planner import robot_paths

    configs = [Path(f) for f in config_files() if os.path.isfile(f)]
    view = _view(settings, eb, listed, options, configs)
    # EasyBuild finds its configuration files by $HOME and $XDG_*; inside they are named, as the runner found them
    env = {**sandbox.kept_env(os.environ), "HOME": "/tmp", "XDG_CONFIG_DIRS": "/nonexistent",
           "XDG_CONFIG_HOME": "/nonexistent", "EASYBUILD_CONFIGFILES": ",".join(str(f) for f in configs)}
    if not configs:
        env.pop("EASYBUILD_CONFIGFILES")
    pool = Workers(lambda argv: sandbox.wrap(argv, view, env, settings.sandbox_user, cwd=Path("/")),
                   sandbox.kept_env(env), robot_paths(settings), settings.hooks, options, origin,
                   limit=min(os.cpu_count() or 1, 8))
    try:
        yield pool
    finally:
        pool.close()


def source_lists(settings: Settings, options: Mapping[str, object], easyconfigs: list[Path],
                 report: Callable[[str], None]) -> list[list[SourceFile]]:
    """The files a build of each easyconfig fetches, as EasyBuild lists them: which runs the easyconfig
    (and the site hooks), so in the sandbox, as a parse."""
    from builder.plan.planner import robot_paths

    isolated = sandbox.wanted(settings, "parses", report)
    with ebadapter.configured(robot_paths(settings), None if isolated else settings.hooks, options) as eb:
        if not isolated:
            return [eb.source_files(p) for p in easyconfigs]
        with workers(settings, eb, easyconfigs, options, "easybuild_options") as pool:
            return pool.sources(easyconfigs)
