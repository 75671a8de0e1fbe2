"""The options that only change how ``eb`` builds, checked as ``eb`` parses them.

Planning configures EasyBuild without these (``hidden`` would rename every module it parses, the others
change nothing it resolves), so nothing but the builds would read them: ``parallel: 1`` becomes a bare
``--parallel`` (``opts_dict_to_eb_opts`` takes 1 for True), which every build of the entry then fails on.
Each is parsed here alone by EasyBuild's own option parser, so that the plan refuses what ``eb`` refuses
and names the option.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

#: Options that only change how ``eb`` builds, never what planning resolves; kept out of the parse config.
BUILD_ONLY = frozenset({"parallel", "set-default-module", "hidden", "rebuild", "force"})


def refusal(options: Mapping[str, object]) -> str | None:
    """Why ``eb`` would refuse the first build-only option it refuses, naming the option, or None."""
    from builder.ebadapter import eb_cli_options

    for option in sorted(k for k in options if k in BUILD_ONLY):
        args = tuple(eb_cli_options({option: options[option]}))
        why = _parse_error(args)
        if why:
            return f"option '{option}': {options[option]!r} reaches eb as {' '.join(args)}, which EasyBuild " \
                   f"refuses: {why}"
    return None


@functools.cache
def _parse_error(args: tuple[str, ...]) -> str | None:
    """EasyBuild's own parser's complaint about ``args`` (its usage line left out), or None. The
    configuration files and ``EASYBUILD_*`` variables are read as ``eb`` reads them; ``--include-*``
    files are not imported."""
    from easybuild.tools.build_log import EasyBuildError
    from easybuild.tools.options import parse_options

    from builder.ebadapter import _quiet_and_restored

    told = io.StringIO()
    with tempfile.TemporaryDirectory(prefix="modlib-eb-") as tmp, _quiet_and_restored(), \
            contextlib.redirect_stderr(told):
        os.environ.setdefault("EB_SCRIPT_PATH", str(Path(sys.prefix) / "bin" / "eb"))
        try:
            parse_options(args=[f"--tmpdir={tmp}", *args], with_include=False)
        except EasyBuildError as err:
            return str(err.msg)
        except SystemExit:  # optparse's exit
            return optparse_reason(told.getvalue()) or "EasyBuild's option parser exits"
    return None


def optparse_reason(stderr: str) -> str | None:
    """Why EasyBuild's option parser exited: optparse prints it last, as ``eb: error: WHY``."""
    lines = [line for line in stderr.splitlines() if line.startswith("eb: error: ")]
    return lines[-1].removeprefix("eb: error: ") if lines else None
