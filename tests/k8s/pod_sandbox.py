"""Enter one emulated pod's file system view, then run its container command as its user.

Run as root inside a fresh private mount namespace (``unshare --mount --propagation private``),
with the path of a JSON spec the emulated kubelet wrote:

- ``binds``: {host folder: mount path}, the PersistentVolumeClaims; ``read_only_binds`` likewise,
  for claims a pod mounts ``readOnly`` (notebooks);
- ``empty_dirs``: mount paths that get a fresh tmpfs (emptyDir volumes);
- ``read_only_root``: the container's readOnlyRootFilesystem;
- ``reveal``: host folders the container user must reach even below a private folder (the checkout
  and its venv stand in for the image's /opt/modlib, and CI may clone below a mode-700 folder);
- ``uid``, ``gid``, ``workdir``, ``env``, ``command``: who runs what, where.

A mount path that does not exist is made on a tmpfs laid over its parent, which must be empty, so
nothing of the host is hidden and the host's own tree is never changed. Standard library only.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
from pathlib import Path


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True)


def _mount_point(path: Path, overlaid: set[Path]) -> None:
    if path.exists():
        return
    parent = path.parent
    if parent not in overlaid:
        if not parent.is_dir() or any(parent.iterdir()) or parent == Path("/"):
            raise SystemExit(f"pod sandbox: cannot make mount point {path}: {parent} is not an empty folder")
        _mount("-t", "tmpfs", "-o", "mode=0755", "pod-mountpoints", str(parent))
        overlaid.add(parent)
    path.mkdir()


def _reveal(path: Path) -> None:
    """A tmpfs over the topmost private folder above ``path`` holds just the way down to it, and
    ``path`` itself is bind-mounted there from its real place (held open across the overlay)."""
    private = [a for a in reversed(path.parents) if not a.stat().st_mode & 0o001]
    if not private:
        return
    held = os.open(path, os.O_PATH | os.O_DIRECTORY)
    _mount("-t", "tmpfs", "-o", "mode=0755", "reveal", str(private[0]))
    path.mkdir(parents=True)
    libc = ctypes.CDLL(None, use_errno=True)
    ms_bind = 4096
    if libc.mount(f"/proc/self/fd/{held}".encode(), str(path).encode(), None, ms_bind, None) != 0:
        raise OSError(ctypes.get_errno(), f"pod sandbox: cannot bind {path} back")
    os.close(held)


def enter(spec: dict) -> None:
    for path in spec.get("reveal", []):
        _reveal(Path(path))
    overlaid: set[Path] = set()
    read_only = spec.get("read_only_binds", {})
    for target in [*spec["binds"].values(), *read_only.values(), *spec["empty_dirs"]]:
        _mount_point(Path(target), overlaid)
    for source, target in spec["binds"].items():
        _mount("--bind", source, target)
    for source, target in read_only.items():
        _mount("--bind", source, target)
        _mount("-o", "remount,bind,ro", target)
    for target in spec["empty_dirs"]:
        _mount("-t", "tmpfs", "-o", "mode=0777", "empty-dir", target)
    if spec["read_only_root"]:
        _mount("-o", "remount,bind,ro", "/")
    env = [f"{k}={v}" for k, v in spec["env"].items()]
    os.execvp("setpriv", ["setpriv", f"--reuid={spec['uid']}", f"--regid={spec['gid']}", "--clear-groups",
                          "--no-new-privs", "--",
                          "env", "-i", f"--chdir={spec['workdir']}", *env, *spec["command"]])


if __name__ == "__main__":
    enter(json.loads(Path(sys.argv[1]).read_text()))
