"""A local build's (and a parse's) sandbox: bubblewrap, as Flatpak uses it.

A build is untrusted code (an easyconfig is Python, its steps run shell commands), and so is parsing
one. On a cluster a build pod is the sandbox; here ``bwrap`` makes one per process: its own user,
mount, PID, network, IPC and UTS namespaces, no capabilities, ``no_new_privs``, a cleared environment
but for what the build needs, and a root of its own that holds only ``/usr``, ``/etc``, a fresh
``/proc``, ``/dev`` and ``/tmp``, and the paths it is given (read-only, or writable). The runner's
processes, environment, ``/root``, ``/home``, service-account secrets and the host ``/tmp`` are not in
it. The PID namespace ends with its first process, and ``--die-with-parent`` ends it with the process
that started it: nothing a build started (a ``setsid`` daemon included) outlives it.

A root runner gives the build an unprivileged user: ``bwrap`` runs as root to make the mounts (so
the paths it binds need not be reachable by that user on the host), drops every capability but the
two that ``setpriv`` needs to switch to the build user, and ``unshare --user`` puts the build in a user
namespace of its own, where its own ids are mapped (an unmapped id fails ``make``, whose spawns reset
them). A runner that is not root gets the same from ``bwrap`` through unprivileged user
namespaces, where the host allows them.
"""

from __future__ import annotations

import functools
import os
import shutil
import stat
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from builder import proc
from builder.errors import BadInput
from builder.read.config import Settings

#: The host's system folders a build or a parse sees, read-only (merged-/usr links are made as links).
_SYSTEM = ("/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/sys")
#: The runner's environment a sandboxed process keeps; whatever else it holds (tokens, secrets) stays out.
_KEPT_ENV = ("PATH", "HOME", "LANG", "LANGUAGE", "TZ", "MODULEPATH")
_KEPT_PREFIXES = ("LC_", "EASYBUILD_", "MODLIB_", "LMOD_")


@dataclass(frozen=True)
class View:
    """What a sandboxed process sees of the host besides the system folders."""

    readonly: tuple[Path, ...]
    writable: tuple[Path, ...] = ()


@functools.cache
def unavailable() -> str | None:
    """Why processes cannot be sandboxed here, or None; asks ``bwrap`` once per process."""
    if shutil.which("bwrap") is None:
        return "bubblewrap (bwrap) is not installed"
    if os.geteuid() == 0 and (shutil.which("setpriv") is None or shutil.which("unshare") is None):
        return "setpriv or unshare (util-linux) is not installed"
    result = proc.run(wrap(["true"], View(readonly=()), env={}, user=(65534, 65534)))
    if result.returncode != 0:
        return f"bwrap cannot make a sandbox here ({result.stderr.strip() or f'exit {result.returncode}'})"
    return None


def wanted(settings: Settings, what: str, report: Callable[[str], None]) -> bool:
    """Whether ``what`` (builds, parses) run sandboxed: where a sandbox can be made, always; where none can,
    only if library.yaml's sandbox.unisolated allows it (``what`` then runs as the runner, with a
    warning); else refused as bad input."""
    why_not = unavailable()
    if why_not is None:
        return True
    if not settings.unisolated_ok:
        raise BadInput(settings.config_file, f"{why_not}, so {what} cannot be isolated; install bubblewrap (and "
                                             "allow user namespaces), or set sandbox.unisolated: true to run "
                                             f"{what} unisolated")
    report(f"warning: {why_not}: {what} run UNISOLATED, as sandbox.unisolated allows (they can write "
           "whatever the runner can)")
    return False


def checked(view: View, settings: Settings) -> View:
    """``view``, once the sandbox's user can read every folder of it (a root runner's sandbox binds
    them, but their own mode still applies inside)."""
    if os.geteuid() != 0:
        return view
    uid, gid = settings.sandbox_user
    for path in view.readonly:
        st = path.stat()
        shift = 6 if st.st_uid == uid else 3 if st.st_gid == gid else 0
        need = 0o5 if path.is_dir() else 0o4
        if (st.st_mode >> shift) & need != need:
            raise BadInput(path, f"the sandbox's user (uid {uid}, sandbox.uid in {settings.config_file}) cannot "
                                 "read it, and builds or parses need it: make it readable (and a folder "
                                 "searchable) for it, e.g. chmod o+rX")
    return view


def _system() -> list[str]:
    args = []
    for path in _SYSTEM:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    return args + ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/dev/shm",
                   "--perms", "1777", "--tmpfs", "/tmp"]


def _parents(paths: Iterable[Path], system: Sequence[str]) -> list[str]:
    """Mount points' parent folders, made searchable inside (``bwrap`` copies a host folder's mode,
    and a 0700 parent would hide what is bound below it from the unprivileged user)."""
    args: list[str] = []
    made: set[Path] = set()
    bound = [Path(p) for p in system]
    for path in paths:
        for parent in reversed(path.parents):
            if parent == Path("/") or parent in made or any(parent.is_relative_to(b) for b in bound):
                continue
            made.add(parent)
            args += ["--perms", "0755", "--dir", str(parent)]
        bound.append(path)
    return args


def kept_env(env: Mapping[str, str]) -> dict[str, str]:
    """The part of ``env`` a sandboxed process gets."""
    return {k: v for k, v in env.items() if k in _KEPT_ENV or k.startswith(_KEPT_PREFIXES)}


def wrap(argv: Sequence[str], view: View, env: Mapping[str, str], user: tuple[int, int],
         cwd: Path | None = None) -> list[str]:
    """``argv`` in a sandbox that sees ``view``, with ``env`` (filtered by ``kept_env``); as ``user``
    (uid, gid) where the runner is root, else as the runner's own user."""
    readonly = sorted({p.resolve() for p in view.readonly}, key=lambda p: len(p.parts))  # outer folders first
    writable = sorted({p.resolve() for p in view.writable}, key=lambda p: len(p.parts))
    root = os.geteuid() == 0
    args = ["bwrap", "--die-with-parent", "--new-session", "--clearenv"]
    args += (["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try",
              "--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"] if root
             else ["--unshare-all"])
    for key, value in sorted(kept_env(env).items()):
        args += ["--setenv", key, value]
    args += _system() + _parents([*readonly, *writable], _SYSTEM)
    args += [a for p in readonly for a in ("--ro-bind", str(p), str(p))]
    args += [a for p in writable for a in ("--bind", str(p), str(p))]
    args += ["--chdir", str(cwd)] if cwd else []
    if root:
        args += ["--", "setpriv", f"--reuid={user[0]}", f"--regid={user[1]}", "--clear-groups", "--inh-caps=-all",
                 "--", "unshare", "--user", f"--map-user={user[0]}", f"--map-group={user[1]}"]
    return [*args, "--", *argv]


def hand_over(paths: Iterable[Path], user: tuple[int, int]) -> None:
    """Make the folders a sandboxed build writes, and its own (a root runner's builds run as ``user``)."""
    for path in paths:
        path.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            os.chown(path, *user, follow_symlinks=False)


def take_back(paths: Iterable[Path]) -> None:
    """Give what a build wrote back to the runner, once every process of the build is gone: the build
    user (shared by every build, and by whatever else runs as it) must not change a published install,
    nor anyone through a group- or world-writable file, nor gain an owner's rights by a set-id bit.
    Links are neither followed nor changed."""
    if os.geteuid() != 0:
        return
    for path in paths:
        if not path.is_dir() or path.is_symlink():
            continue
        _own(path)
        for folder, dirs, files in os.walk(path):
            for name in dirs + files:
                _own(os.path.join(folder, name))


def _own(path: str | Path) -> None:
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        return
    os.chown(path, 0, 0, follow_symlinks=False)
    os.chmod(path, stat.S_IMODE(st.st_mode) & ~0o6022)
