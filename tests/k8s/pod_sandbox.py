"""Enter one emulated pod's file system view, then run its container command as its user.

Run as root inside a fresh private mount namespace (``unshare --mount --propagation private``),
with the path of a JSON spec the emulated kubelet wrote:

- ``mounts``: [{source, target, read_only}], the PersistentVolumeClaims (a host folder, or one below
  it for a ``subPath``), bound parents first as a container runtime does, so a writable subPath
  mount sits inside a read-only mount of its claim's root;
- ``empty_dirs``: mount paths that get a fresh tmpfs (emptyDir volumes);
- ``read_only_root``: the container's readOnlyRootFilesystem;
- ``reveal``: host folders the container user must reach even below a private folder (the checkout
  and its venv stand in for the image's /opt/modlib, and CI may clone below a mode-700 folder);
- ``uid``, ``gid``, ``workdir``, ``env``, ``command``: who runs what, where;
- ``termination_log`` (optional): the kubelet's file for the container's termination message, bound at
  /dev/termination-log of a /dev of the container's own;
- ``cgroups`` (optional): {controller: host folder}, the pod's cgroups, bound at /sys/fs/cgroup/<controller>;
- ``root`` (optional): the image's own root file system (a scratch copy), for a pod whose image is not
  the host's: mount targets are inside it (missing mount points are made in it), with /proc and /dev
  as a container runtime gives them, and the command runs chrooted into it (run under ``unshare --pid
  --fork`` for a /proc of its own).

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


def _bind_held(held: int, target: Path, below: str = "") -> None:
    """Bind the folder open as ``held`` (or ``below`` it) at ``target``, by this process's own fd: under
    ``unshare --pid`` the host's /proc does not know this process by os.getpid() (1 here), and mount(8)
    would not inherit the fd."""
    libc = ctypes.CDLL(None, use_errno=True)
    ms_bind = 4096
    source = f"/proc/self/fd/{held}" + (f"/{below}" if below else "")
    if libc.mount(source.encode(), str(target).encode(), None, ms_bind, None) != 0:
        raise OSError(ctypes.get_errno(), f"pod sandbox: cannot bind {target}")


#: the devices a container runtime gives every container, from the host's
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")


def _container_dev(termination_log: str) -> None:
    """A /dev of the container's own, as runtimes make it: a tmpfs with the usual devices, pts, shm and
    the kubelet's termination-log file bound at /dev/termination-log."""
    host_dev = os.open("/dev", os.O_PATH | os.O_DIRECTORY)
    log = os.open(termination_log, os.O_PATH)
    _mount("-t", "tmpfs", "-o", "mode=0755,nosuid", "dev", "/dev")
    dev = Path("/dev")
    for name in DEVICES:
        (dev / name).touch()
        _bind_held(host_dev, dev / name, name)
    (dev / "pts").mkdir()
    _bind_held(host_dev, dev / "pts", "pts")
    (dev / "shm").mkdir()
    _mount("-t", "tmpfs", "-o", "mode=1777,nosuid,nodev", "shm", "/dev/shm")
    for name, to in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                     ("stderr", "/proc/self/fd/2"), ("ptmx", "pts/ptmx")):
        (dev / name).symlink_to(to)
    (dev / "termination-log").touch()
    _bind_held(log, dev / "termination-log")
    os.close(host_dev)
    os.close(log)


def _cgroups(paths: dict[str, str]) -> None:
    """The pod's own cgroup folders (emulator.py makes them) where a container on a cgroup v1 node sees its own:
    /sys/fs/cgroup/<controller>, read-only."""
    for controller, source in paths.items():
        target = f"/sys/fs/cgroup/{controller}"
        _mount("--bind", source, target)
        _mount("-o", "remount,bind,ro", target)


def _mount_point(path: Path, overlaid: set[Path], in_root: bool) -> None:
    if path.exists():
        return
    if in_root:  # the image's scratch copy, not the host's tree: made where it is
        path.mkdir(parents=True)
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
    _bind_held(held, path)
    os.close(held)


def _in_root(spec: dict) -> dict:
    """The spec with its mount targets inside its image's root, after /proc and /dev are mounted there."""
    root = Path(spec["root"])
    _mount("-t", "proc", "proc", str(root / "proc"))
    _mount("--rbind", "/dev", str(root / "dev"))  # with /dev/pts: JupyterLab's terminals need ptys

    def inside(path: str) -> str:
        return str(root / Path(path).relative_to("/"))

    return {**spec, "mounts": [{**m, "target": inside(m["target"])} for m in spec["mounts"]],
            "empty_dirs": [inside(t) for t in spec["empty_dirs"]]}


def enter(spec: dict) -> None:
    if spec.get("termination_log"):
        _container_dev(spec["termination_log"])
    _cgroups(spec.get("cgroups", {}))
    for path in spec.get("reveal", []):
        _reveal(Path(path))
    in_root = bool(spec.get("root"))
    if in_root:
        spec = _in_root(spec)
    overlaid: set[Path] = set()
    mounts = sorted(spec["mounts"], key=lambda m: len(Path(m["target"]).parts))
    done: list[Path] = []
    for target in [Path(m["target"]) for m in mounts] + [Path(t) for t in spec["empty_dirs"]]:
        if any(target.is_relative_to(d) for d in done):
            continue  # inside a claim: made below, once the claim is mounted
        _mount_point(target, overlaid, in_root)
        done.append(target)
    # claims and emptyDirs in the order of their paths' depth, as container runtimes mount them: a claim
    # whose path lies in an emptyDir (a library under /tmp, beside an emptyDir at /tmp) stays visible
    volumes = sorted([(Path(m["target"]), m) for m in mounts] + [(Path(t), None) for t in spec["empty_dirs"]],
                     key=lambda volume: len(volume[0].parts))
    empty: list[Path] = []
    # each claim's folder held open first: an emptyDir mounted above it would hide the path (bound by fd)
    held = {id(m): os.open(m["source"], os.O_PATH | os.O_DIRECTORY) for _, m in volumes if m is not None}
    for target, mount in volumes:
        if mount is None:
            _mount("-t", "tmpfs", "-o", "mode=0777", "empty-dir", str(target))
            empty.append(target)
            continue
        if not target.is_dir() and any(target.is_relative_to(e) for e in empty):
            target.mkdir(parents=True)  # the runtime makes a mount point inside an emptyDir
        if not target.is_dir():  # a subPath's mount point must be on the claim already
            raise SystemExit(f"pod sandbox: mount point {target} does not exist")
        _bind_held(held[id(mount)], target)
        if mount["read_only"]:
            _mount("-o", "remount,bind,ro", str(target))
    if spec["read_only_root"]:
        _mount("-o", "remount,bind,ro", "/")
    env = [f"{k}={v}" for k, v in spec["env"].items()]
    run = ["env", "-i", f"--chdir={spec['workdir']}", *env, *spec["command"]]
    if in_root:  # the host's chroot enters the root and drops to the user; env and the rest are the image's
        os.execvp("setpriv", ["setpriv", "--no-new-privs", "--", "chroot", f"--userspec={spec['uid']}:{spec['gid']}",
                              f"--groups={spec['gid']}", spec["root"], *run])
    os.execvp("setpriv", ["setpriv", f"--reuid={spec['uid']}", f"--regid={spec['gid']}", "--clear-groups",
                          "--no-new-privs", "--", *run])


if __name__ == "__main__":
    enter(json.loads(Path(sys.argv[1]).read_text()))
