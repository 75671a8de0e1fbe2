"""The builder image's install script, run for real in a Debian bookworm root file system.

tests/k8s/image_root.py makes the root file system with mmdebstrap and runs install.sh in it as
root (as `RUN` does); the checks then run as uid 1000 with the Containerfile's own ENV, USER and
WORKDIR, as a pod would. Everything happens under a temporary folder.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from tests.k8s import image_root
from tests.k8s.validate import K8S_JOBS, REPO

IMAGE = image_root.Containerfile(K8S_JOBS / "image" / "Containerfile")
INSTALL = K8S_JOBS / "image" / "install.sh"

pytestmark = [
    pytest.mark.slow,  # builds a Debian root file system with mmdebstrap (minutes)
    pytest.mark.skipif(os.geteuid() != 0, reason="mmdebstrap and chroot need root (the test machines run as root)"),
    pytest.mark.skipif(shutil.which("mmdebstrap") is None, reason="mmdebstrap missing: `make setup` installs it"),
]


def _copy_sources(dest: Path) -> None:
    """What the Containerfile's COPY lines bring in, no more: the test fails if install.sh needs more."""
    (dest / "k8s-jobs" / "image").mkdir(parents=True)
    for name in ("pyproject.toml", "constraints.txt"):
        shutil.copy2(REPO / name, dest / name)
    shutil.copytree(REPO / "builder", dest / "builder", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(INSTALL, dest / "k8s-jobs" / "image" / "install.sh")


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory):
    """The image's file system after install.sh: made once (about a minute), removed afterwards."""
    base = tmp_path_factory.mktemp("image")
    _copy_sources(base / "src")
    start = time.monotonic()
    image_root.mmdebstrap(base / "rootfs", base / "src", "k8s-jobs/image/install.sh", base / "mmdebstrap.log")
    print(f"\nbuilder image root file system: mmdebstrap + install.sh in {time.monotonic() - start:.0f} s")
    yield base / "rootfs"
    if image_root.unmounted(base / "rootfs"):  # never rm -rf through a mount
        shutil.rmtree(base, ignore_errors=True)


def run_as_image_user(rootfs: Path, script: str):
    return image_root.run_as_image_user(rootfs, IMAGE, script)


def test_containerfile_runs_install_script_as_non_root():
    """The Containerfile and the test agree: the same script, a numeric non-root USER, no secrets."""
    runs = [args for inst, args in IMAGE.instructions() if inst == "RUN"]
    assert any("k8s-jobs/image/install.sh" in run for run in runs)
    assert IMAGE.instructions()[0][1].split()[0].endswith("debian:bookworm-slim")
    assert IMAGE.instruction("USER") == "1000:1000"
    env = IMAGE.env()
    assert env["PATH"].startswith("/opt/modlib/venv/bin:")
    assert env["HOME"].startswith("/tmp/") and env["MODLIB_ROOT"] == "/srv/modlib"
    assert env["MODLIB_PYTHON"] == "/opt/modlib/venv/bin/python"  # as the CronJob sets it too
    assert not [k for k in env if any(s in k for s in ("TOKEN", "PASSWORD", "SECRET", "KEY"))]
    assert not [inst for inst, _ in IMAGE.instructions() if inst in ("ARG", "ADD")]


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


def test_the_image_user_fetches_a_debian_orig_tarball(rootfs):
    """Sources from Debian (README): apt in the image, as uid 1000, with the image's own apt sources and
    keyring and a private apt state; the machine's apt state stays as the image left it."""
    script = """python - <<'END'
from pathlib import Path
from builder.ebadapter import SourceFile
from builder.execute import sources
from builder.execute.debian_sources import DebianSources
name = "lua-filesystem_1.8.0.orig.tar.gz"
src = SourceFile(name, "l/lua-filesystem", ("deb-src:bookworm/lua-filesystem/" + name,),
                 "a1b7cf748ef2cdb6d75ebaa82a9c91b383fabc541b96febb1f9de98f06b8c188", Path("/site/lua-filesystem.eb"))
with DebianSources(Path.home() / ".cache" / "modlib" / "apt") as debian:
    print(sources.prefetch([src], Path("/tmp/sources"), [], debian=debian))
END"""
    result = run_as_image_user(rootfs, script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1"]
    assert (rootfs / "tmp" / "sources" / "l" / "lua-filesystem" / "lua-filesystem_1.8.0.orig.tar.gz").stat().st_uid \
        == 1000
    assert not list((rootfs / "var" / "lib" / "apt" / "lists").glob("*Sources*"))
