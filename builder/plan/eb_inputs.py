"""What EasyBuild reads besides modlib's own inputs when it is configured: its configuration files and
``EASYBUILD_*`` variables. Both can change a parse (a module naming scheme, ``filter-deps``,
``hide-deps``), so both key the parse cache and the plan cache.

The files are found as EasyBuild 5.4.1 finds them (``easybuild/tools/options.py``), without importing
it: ``easybuild.d/*.cfg`` in every folder of ``$XDG_CONFIG_DIRS`` (default ``/etc/xdg``; the old
``/etc/easybuild.d`` is read only where ``/etc`` is one of them, otherwise EasyBuild just warns),
``$XDG_CONFIG_HOME/easybuild/config.cfg`` (default ``~/.config``), and the files named by
``EASYBUILD_CONFIGFILES``. Those that exist are keyed by their content, so a file that appears,
changes or goes makes a new key. Watching a file EasyBuild then ignores
(``EASYBUILD_IGNORECONFIGFILES``) costs a cache miss at most, never a wrong answer.
"""

from __future__ import annotations

import glob
import os

from builder.digests import file_sha256


def config_files() -> list[str]:
    """EasyBuild's configuration files for this process's environment, in the order it reads them."""
    env = os.environ
    home = os.path.expanduser("~")
    xdg_home = env.get("XDG_CONFIG_HOME", os.path.join(home, ".config"))
    xdg_dirs = env.get("XDG_CONFIG_DIRS", "/etc/xdg").split(os.pathsep)
    files = [f for d in reversed(xdg_dirs) for f in sorted(glob.glob(os.path.join(d, "easybuild.d", "*.cfg")))]
    files.append(os.path.join(xdg_home, "easybuild", "config.cfg"))
    files += [f for f in env.get("EASYBUILD_CONFIGFILES", "").split(",") if f]
    return files


def easybuild_inputs() -> dict:
    """The configuration files that exist, by content (one that appears or goes changes the list), the
    ``EASYBUILD_*`` variables, and, where a file exists, what it may interpolate (``%(HOME)s``,
    ``%(USER)s``: EasyBuild takes the user from the uid). Without configuration files nothing here
    depends on the user, so users sharing a cache volume share its entries."""
    files = [(f, content) for f in config_files() if (content := file_sha256(f)) is not None]
    return {"files": files, "env": sorted((k, v) for k, v in os.environ.items() if k.startswith("EASYBUILD_")),
            "user": [os.path.expanduser("~"), os.getuid()] if files else None}
