"""A local build's view of the library: read-only but for its own paths, and no network.

A build is untrusted code (an easyconfig is Python, its steps run shell commands). On a cluster its
pod mounts the volume read-only but for its prefix and staging folder; here the same view comes from
a private mount namespace: the library root, and what the runner itself reads later (the site
repository with its easyconfigs, hooks and venv, the parse cache), bound read-only over themselves,
the node's own paths bound writable over themselves first, so they stay writable inside. A network
namespace with nothing in it keeps the build offline: every source was fetched and verified before.
Both need root; where the runner is not root, the run says once that its builds are not isolated.

``python -m builder.execute.sandbox --readonly R ... --writable W ... -- eb ...`` runs inside
``unshare``: it makes the mounts, then becomes the build.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from builder import proc


def unavailable() -> str | None:
    """Why builds here cannot be isolated, or None."""
    if os.geteuid() != 0:
        return "the runner is not root, so local builds are not isolated: a build can write the whole library"
    missing = [tool for tool in ("unshare", "mount") if shutil.which(tool) is None]
    if missing:
        return f"{' and '.join(missing)} not found (util-linux), so local builds are not isolated"
    return None


def wrap(argv: Sequence[str], readonly: Sequence[Path], writable: Sequence[Path]) -> list[str]:
    """``argv`` run with ``readonly`` (existing folders) read-only but for ``writable``, and without network."""
    return ["unshare", "--mount", "--net", "--propagation", "private", sys.executable, "-m", "builder.execute.sandbox",
            *(f"--readonly={r}" for r in readonly), *(f"--writable={w}" for w in writable), "--", *argv]


def _mount(*args: str) -> None:
    result = proc.run(["mount", *args])
    if result.returncode != 0:
        sys.exit(f"modlib sandbox: mount {' '.join(args)} failed: {result.stderr.strip()}")


def main(args: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m builder.execute.sandbox")
    parser.add_argument("--readonly", type=Path, action="append", default=[])
    parser.add_argument("--writable", type=Path, action="append", default=[])
    parser.add_argument("argv", nargs=argparse.REMAINDER)
    opts = parser.parse_args(args)
    argv = opts.argv[1:] if opts.argv[:1] == ["--"] else opts.argv
    for path in opts.writable:
        path.mkdir(parents=True, exist_ok=True)
    readonly = sorted(opts.readonly, key=lambda p: len(p.parts))  # outer folders first
    for path in readonly:
        _mount("--bind", str(path), str(path))
    for path in opts.writable:  # mounts of their own: the read-only remounts below leave them writable
        _mount("--bind", str(path), str(path))
    for path in readonly:
        _mount("-o", "remount,bind,ro", str(path))
    try:
        os.execvp(argv[0], argv)
    except OSError as err:  # the build's log says it in one line, as a shell would
        sys.stderr.write(f"modlib sandbox: {argv[0]}: {err.strerror} (PATH={os.environ.get('PATH', '')})\n")
        sys.exit(127)


if __name__ == "__main__":
    main()
