"""The builder image's install script, run for real in a Debian bookworm root file system.

No container engine runs here, but mmdebstrap makes the same bookworm userland the Containerfile
starts from. install.sh runs in it as root (as `RUN` does); the checks then run as uid 1000 with the
Containerfile's own ENV, USER and WORKDIR, as a pod would. Everything happens under a temporary
folder; proc is mounted only inside a private mount namespace, so the host is left as it was.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.k8s.validate import K8S_JOBS, REPO

CONTAINERFILE = K8S_JOBS / "image" / "Containerfile"
INSTALL = K8S_JOBS / "image" / "install.sh"
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="mmdebstrap and chroot need root (the test machines run as root)"),
    pytest.mark.skipif(shutil.which("mmdebstrap") is None, reason="mmdebstrap missing: `make setup` installs it"),
]


def containerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) pairs, continuation lines joined and comments dropped."""
    joined, pending = [], ""
    for line in CONTAINERFILE.read_text().splitlines():
        if line.strip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip("\\").strip() + " "
        if not line.endswith("\\"):
            joined.append(pending.strip())
            pending = ""
    return [(words[0], words[1] if len(words) > 1 else "") for words in (line.split(None, 1) for line in joined)]


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, args in containerfile():
        if instruction == "ENV":
            env.update(pair.split("=", 1) for pair in shlex.split(args))  # type: ignore[misc]
    return env


def instruction(name: str) -> str:
    return next(args for inst, args in containerfile() if inst == name)


def _copy_sources(dest: Path) -> None:
    """What the Containerfile's COPY lines bring in, no more: the test fails if install.sh needs more."""
    (dest / "k8s-jobs" / "image").mkdir(parents=True)
    for name in ("pyproject.toml", "constraints.txt"):
        shutil.copy2(REPO / name, dest / name)
    shutil.copytree(REPO / "builder", dest / "builder", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(INSTALL, dest / "k8s-jobs" / "image" / "install.sh")


def _mmdebstrap(rootfs: Path, src: Path, log: Path) -> None:
    # The host's CA bundle lets pip through a TLS-inspecting proxy; it is removed again afterwards.
    ca = "/tmp/host-ca.pem" if HOST_CA.exists() else ""
    steps = [
        f'cp -a {shlex.quote(str(src))} "$1/src"' + (f' && cp {HOST_CA} "$1{ca}"' if ca else ""),
        'chroot "$1" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin'
        + (f" PIP_CERT={ca}" if ca else "") + " sh /src/k8s-jobs/image/install.sh /src",
        f'rm -rf "$1/src" "$1{ca or "/tmp/none"}"',
    ]
    cmd = ["mmdebstrap", "--variant=apt", "--include=ca-certificates",
           *[f"--customize-hook={step}" for step in steps], "bookworm", str(rootfs)]
    with log.open("w") as out:
        result = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, timeout=480)
    assert result.returncode == 0, log.read_text()[-4000:]


def _unmounted(path: Path) -> bool:
    return not any(str(path) in line for line in Path("/proc/mounts").read_text().splitlines())


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory):
    """The image's file system after install.sh: made once (about a minute), removed afterwards."""
    base = tmp_path_factory.mktemp("image")
    _copy_sources(base / "src")
    start = time.monotonic()
    _mmdebstrap(base / "rootfs", base / "src", base / "mmdebstrap.log")
    print(f"\nbuilder image root file system: mmdebstrap + install.sh in {time.monotonic() - start:.0f} s")
    yield base / "rootfs"
    if _unmounted(base / "rootfs"):  # never rm -rf through a mount
        shutil.rmtree(base, ignore_errors=True)


def run_as_image_user(rootfs: Path, script: str) -> subprocess.CompletedProcess:
    """SCRIPT under bash in the chroot, as the Containerfile's USER with its ENV and WORKDIR."""
    user = instruction("USER")
    env = " ".join(shlex.quote(f"{k}={v}") for k, v in image_env().items())
    inner = (f"cd {shlex.quote(instruction('WORKDIR'))} && exec /usr/bin/env -i {env} "
             f"/bin/bash -c {shlex.quote(script)}")
    cmd = ["unshare", "--mount", "--pid", "--fork", f"--mount-proc={rootfs / 'proc'}",
           "chroot", f"--userspec={user}", str(rootfs), "/bin/sh", "-c", inner]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_containerfile_runs_install_script_as_non_root():
    """The Containerfile and the test agree: the same script, a numeric non-root USER, no secrets."""
    runs = [args for inst, args in containerfile() if inst == "RUN"]
    assert any("k8s-jobs/image/install.sh" in run for run in runs)
    assert containerfile()[0][1].split()[0].endswith("debian:bookworm-slim")
    assert instruction("USER") == "1000:1000"
    env = image_env()
    assert env["PATH"].startswith("/opt/modlib/venv/bin:")
    assert env["HOME"].startswith("/tmp/") and env["MODLIB_ROOT"] == "/srv/modlib"
    assert env["MODLIB_PYTHON"] == "/opt/modlib/venv/bin/python"  # as the CronJob sets it too
    assert not [k for k in env if any(s in k for s in ("TOKEN", "PASSWORD", "SECRET", "KEY"))]
    assert not [inst for inst, _ in containerfile() if inst in ("ARG", "ADD")]


def test_modlib_and_easybuild_run_as_uid_1000(rootfs):
    script = ("id -u; id -g; modlib --version; eb --version; "
              "\"$MODLIB_PYTHON\" -c 'import sys, wheel; print(sys.version[:4])'")
    result = run_as_image_user(rootfs, script)
    assert result.returncode == 0, result.stderr
    uid, gid, modlib_version, eb_version, python = result.stdout.splitlines()[:5]
    assert (uid, gid) == ("1000", "1000")
    assert modlib_version.startswith("modlib, version")
    assert "EasyBuild 5.4.1" in eb_version
    assert python == "3.11"  # Debian bookworm's, as library.yaml's python.version says


def test_easybuild_resolves_with_lmod(rootfs):
    """A dry run with the robot: EasyBuild's own easyconfigs, Lmod as its modules tool, HOME in /tmp."""
    result = run_as_image_user(rootfs, "eb --dry-run --robot M4-1.4.19.eb")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "M4/1.4.19" in result.stdout


def test_lmod_loads_a_module(rootfs):
    script = """source /usr/share/lmod/lmod/init/bash
mkdir -p /tmp/mf/hello && echo 'setenv("HELLO_MODLIB", "loaded")' > /tmp/mf/hello/1.0.lua
module use /tmp/mf && module load hello/1.0 && echo "HELLO_MODLIB=$HELLO_MODLIB"
"$LMOD_CMD" bash --version 2>&1 | grep -o 'Version [0-9.]*'"""
    result = run_as_image_user(rootfs, script)
    assert result.returncode == 0, result.stderr
    assert "HELLO_MODLIB=loaded" in result.stdout
    assert "Version 8." in result.stdout


def test_nothing_in_opt_is_writable_by_the_user(rootfs):
    result = run_as_image_user(rootfs, "find /opt ! -type l -writable; touch /opt/modlib/venv/x 2>&1 || true")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines and "Permission denied" in lines[-1], lines[:-1] or lines
    assert lines[:-1] == []


def test_library_mount_point_belongs_to_the_user(rootfs):
    result = run_as_image_user(rootfs, "stat -c '%u:%g' /srv/modlib && test -w /srv/modlib && echo writable")
    assert result.stdout.split() == ["1000:1000", "writable"], result.stderr


def test_image_leaves_no_build_inputs(rootfs):
    """/src, the host CA copy and apt's lists belong to the build, not to the image."""
    assert not (rootfs / "src").exists()
    assert not (rootfs / "tmp" / "host-ca.pem").exists()
    assert not list((rootfs / "var" / "lib" / "apt" / "lists").glob("*Packages*"))
