"""A local build runs in bubblewrap's sandbox: an unprivileged user without capabilities, in its own
namespaces, seeing none of the runner's processes, environment or host folders, and nothing it started
outlives it. Each probe below is a step of a real EasyBuild build that tries to get out."""

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import bundle_easyconfig, modlib, write_config, write_easystack

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(os.geteuid() != 0, reason="the runner must be root here")]

SECRET = "RUNNER_SECRET_TOKEN"

#: Each line says HELD or ESCAPED; run by the build, as the build user, in its post-install step.
PROBE = r"""
p() {{ if eval "$2" >/dev/null 2>&1; then echo "PROBE ESCAPED $1"; else echo "PROBE HELD $1"; fi; }}
p uid-root '[ "$(id -u)" = 0 ]'
p capabilities '! grep -Eq "^CapEff:[[:space:]]*0+$" /proc/self/status'
p no-new-privs '! grep -Eq "^NoNewPrivs:[[:space:]]*1$" /proc/self/status'
p umount 'umount -l {root}'
p nsenter-init 'nsenter -t 1 -m -n true'
p runner-processes 'for f in /proc/[0-9]*/cmdline; do tr "\0" " " < $f; echo; done | grep -q "modlib[ ]build"'
p runner-env 'env | grep -q {secret} || cat /proc/[0-9]*/environ 2>/dev/null | tr "\0" "\n" | grep -q {secret}'
p write-etc 'touch /etc/modlib-sandbox-probe'
p write-library 'touch {root}/escaped'
p host-tmp 'ls {tmp}'
p read-root-home 'ls /root'
setsid sh -c 'exec sleep {daemon}' </dev/null >/dev/null 2>&1 &
make -s -f /dev/null --eval='all: ; @true' all || exit 1  # builds still work: make resets ids to spawn
mkdir -p "$1/bin" && touch "$1/bin/probe" "$1/bin/open" && chmod 6777 "$1/bin/open"
"""


def daemons(seconds: int) -> list[int]:
    """Host processes running ``sleep <seconds>``."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if cmdline.read_bytes().split(b"\0")[:2] == [b"sleep", str(seconds).encode()]:
                found.append(int(cmdline.parent.name))
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def _probe_site(tmp_path: Path, root: Path, daemon: int, host_tmp: Path) -> Path:
    """A site repository whose one easyconfig runs PROBE at build time; its library.yaml."""
    site = tmp_path / "site"
    (site / "p" / "probe").mkdir(parents=True)
    probe = site / "probe.sh"
    probe.write_text(PROBE.format(root=root, secret=SECRET, tmp=host_tmp, daemon=daemon))
    (site / "p" / "probe" / "probe-1.0-GCCcore-system.eb").write_text(bundle_easyconfig(
        "probe", f"postinstallcmds = ['sh {probe} %(installdir)s']\n"
                 "sanity_check_paths = {'files': ['bin/probe'], 'dirs': []}"))
    (tmp_path / "easyconfigs").mkdir()
    stack = write_easystack(tmp_path / "easyconfigs" / "cpu.yaml", ["probe-1.0-GCCcore-system.eb"])
    return write_config(tmp_path, {"cpu": {"kind": "cpu", "tree": "cpu", "easystacks": [str(stack)]}},
                        easyconfig_paths=[str(site)])


def probes(root: Path, name: str = "probe") -> dict[str, str]:
    """HELD or ESCAPED per probe, from the build's log."""
    log = next((root / ".modlib" / "records" / "cpu").glob(f"{name}--1.0-GCCcore-system/*.log")).read_text()
    return dict(line.split()[2:0:-1] for line in log.splitlines() if line.startswith("PROBE "))


def test_a_root_build_cannot_leave_its_sandbox_and_its_daemon_ends_with_it(tmp_path):
    root, daemon = tmp_path / "library", random.randint(100000, 999999)
    host_tmp = Path(f"/tmp/modlib-probe-{daemon}")
    host_tmp.touch()
    config = _probe_site(tmp_path, root, daemon, host_tmp)
    try:
        result = modlib("build", "--config", str(config), env={SECRET: "s3cr3t"})
        assert result.returncode == 0, result.stdout + result.stderr
        found = probes(root)
        assert len(found) == 11 and set(found.values()) == {"HELD"}, found
        assert not Path("/etc/modlib-sandbox-probe").exists() and not (root / "escaped").exists()
        deadline = time.time() + 5
        while daemons(daemon) and time.time() < deadline:
            time.sleep(0.1)
        assert daemons(daemon) == []  # started with setsid by the build, gone with it
        # what the build wrote is the runner's again: the shared build user cannot change a published install
        prefix = next((root / "cpu" / "software").glob("probe-*"))
        assert {p.stat().st_uid for p in [prefix, *prefix.rglob("*")]} == {0}
        assert oct(next(prefix.rglob("bin/open")).stat().st_mode & 0o7777) == "0o755"  # not 6777
    finally:
        Path("/etc/modlib-sandbox-probe").unlink(missing_ok=True)
        host_tmp.unlink()
        for pid in daemons(daemon):
            os.kill(pid, 9)


def test_a_runner_that_is_not_root_builds_isolated_and_without_bwrap_only_where_allowed(tmp_path):
    """The runner runs as nobody: its builds get the same sandbox through unprivileged user namespaces;
    without bubblewrap it refuses to build, unless library.yaml's sandbox.unisolated says so, and then
    ``status`` and ``show`` say the module was built unisolated."""
    root, daemon, home = tmp_path / "library", random.randint(100000, 999999), tmp_path / "home"
    host_tmp = Path(f"/tmp/modlib-probe-{daemon}")
    host_tmp.touch()
    config = _probe_site(tmp_path, root, daemon, host_tmp)
    home.mkdir()
    for path in [tmp_path, *tmp_path.rglob("*")]:
        os.chown(path, 65534, 65534)
    for parent in tmp_path.parents[:-2]:  # pytest's folders, 0700: nobody may pass (not list) them
        parent.chmod(parent.stat().st_mode | 0o001)
    no_bwrap = tmp_path / "bin"  # the system's tools but bwrap
    no_bwrap.mkdir()
    for tool in Path("/usr/bin").iterdir():
        if tool.name != "bwrap":
            (no_bwrap / tool.name).symlink_to(tool)
    venv_bin = str(Path(sys.executable).parent)

    def as_nobody(*args: str, path: str = f"{venv_bin}:/usr/bin:/bin") -> subprocess.CompletedProcess:
        env = {"PATH": path, "HOME": str(home), "MODLIB_CACHE": str(tmp_path / "cache"), SECRET: "s3cr3t"}
        return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                               f"{venv_bin}/modlib", *args, "--config", str(config)],
                              capture_output=True, text=True, env=env, cwd=tmp_path)

    try:
        result = as_nobody("build")
        assert result.returncode == 0, result.stdout + result.stderr
        found = probes(root)
        assert len(found) == 11 and set(found.values()) == {"HELD"}, found
        assert daemons(daemon) == []

        assert as_nobody("remove", "probe/1.0-GCCcore-system").returncode == 0
        refused = as_nobody("build", path=f"{venv_bin}:{no_bwrap}")
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert "bubblewrap (bwrap) is not installed" in refused.stderr and "sandbox.unisolated" in refused.stderr

        config.write_text(config.read_text() + "sandbox: {unisolated: true}\n")
        unisolated = as_nobody("build", path=f"{venv_bin}:{no_bwrap}")
        assert unisolated.returncode == 0, unisolated.stdout + unisolated.stderr
        assert "builds run UNISOLATED" in unisolated.stdout + unisolated.stderr
        assert "unisolated: cpu/probe/1.0-GCCcore-system" in as_nobody("status").stdout
        assert "built UNISOLATED" in as_nobody("show", "probe/1.0-GCCcore-system").stdout
    finally:
        host_tmp.unlink()
        for pid in daemons(daemon):
            os.kill(pid, 9)
