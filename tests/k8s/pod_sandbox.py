"""Enter one emulated pod's file system view, then run its container command as its user.

Run as root inside a fresh private mount namespace (``unshare --mount --propagation private``),
with the path of a JSON spec the emulated kubelet wrote:

- ``binds``: {host folder: mount path}, the PersistentVolumeClaims; ``read_only_binds`` likewise,
  for claims a pod mounts ``readOnly`` (notebooks);
- ``empty_dirs``: mount paths that get a fresh tmpfs (emptyDir volumes);
- ``read_only_root``: the container's readOnlyRootFilesystem;
- ``uid``, ``gid``, ``caps``, ``workdir``, ``env``, ``command``: who runs what, where.

A mount path that does not exist is made on a tmpfs laid over its parent, which must be empty, so
nothing of the host is hidden and the host's own tree is never changed. Standard library only.
"""

from __future__ import annotations

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


def enter(spec: dict) -> None:
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
    caps = [f"--inh-caps=+{','.join(spec['caps'])}", f"--ambient-caps=+{','.join(spec['caps'])}"] \
        if spec["caps"] else []
    env = [f"{k}={v}" for k, v in spec["env"].items()]
    os.execvp("setpriv", ["setpriv", f"--reuid={spec['uid']}", f"--regid={spec['gid']}", "--clear-groups",
                          "--no-new-privs", *caps, "--",
                          "env", "-i", f"--chdir={spec['workdir']}", *env, *spec["command"]])


if __name__ == "__main__":
    enter(json.loads(Path(sys.argv[1]).read_text()))
