"""The publication protocol on small real libraries: kill -9 mid-install, defaults and retirement,
Python compatibility, and a fresh module visible to the next shell at once."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import (
    bundle_easyconfig,
    copy_site_easyconfigs,
    link_sources,
    lmod,
    modlib,
    write_config,
    write_easystack,
)

pytestmark = pytest.mark.e2e

SLOW_INSTALL = ("postinstallcmds = ['mkdir -p %(installdir)s/bin && touch %(installdir)s/bin/slow && '\n"
                "                   'while [ -e {marker} ]; do sleep 0.2; done']\n"
                "sanity_check_paths = {{'files': ['bin/slow'], 'dirs': []}}")


@pytest.fixture()
def small(tmp_path, source_cache):
    site = copy_site_easyconfigs(tmp_path / "site")
    (site / "s" / "slow").mkdir(parents=True)
    marker = tmp_path / "slow.marker"
    (site / "s" / "slow" / "slow-1.0-GCCcore-system.eb").write_text(
        bundle_easyconfig("slow", SLOW_INSTALL.format(marker=marker), "waits while a marker file exists"))
    (tmp_path / "easyconfigs").mkdir()
    stack = write_easystack(tmp_path / "easyconfigs" / "cpu.yaml", ["MarkupSafe-3.0.2-GCCcore-system.eb"])
    link_sources(tmp_path / "library", source_cache)

    def configure(**extra):
        return write_config(tmp_path, {"cpu": {"kind": "cpu", "tree": "cpu", "easystacks": [str(stack)]}},
                            easyconfig_paths=[str(site)], extra=extra)

    return tmp_path, stack, marker, configure


def live_snapshot(root: Path) -> dict:
    """Every byte a notebook can see: the live link and all files and links below it."""
    live = root / "live"
    out = {"live": os.readlink(live)}
    for path in sorted(live.resolve().rglob("*")):
        key = str(path.relative_to(live.resolve()))
        out[key] = os.readlink(path) if path.is_symlink() else \
            hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
    return out


def new_shell_avail(root: Path) -> str:
    return lmod(f"source {root}/live/targets/cpu/env.sh && module -t avail 2>&1").stdout


def test_kill_9_mid_install_leaves_the_live_view_and_the_next_run_finishes(small):
    tmp, stack, marker, configure = small
    config = str(configure())
    assert modlib("build", "--config", config).returncode == 0
    root = tmp / "library"
    before = live_snapshot(root)

    write_easystack(stack, ["MarkupSafe-3.0.2-GCCcore-system.eb", "slow-1.0-GCCcore-system.eb"])
    marker.touch()
    exe = Path(sys.executable).parent / "modlib"
    run = subprocess.Popen([str(exe), "build", "--config", config], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, start_new_session=True)
    def installed() -> bool:
        return any((root / "cpu" / "software").glob("slow-*/slow/1.0-GCCcore-system/bin/slow"))

    deadline = time.time() + 120
    while not installed() and time.time() < deadline and run.poll() is None:
        time.sleep(0.2)
    assert installed(), "the slow build never reached its install step"
    os.killpg(run.pid, signal.SIGKILL)  # the whole pod dies: modlib and its eb child
    run.wait()

    assert live_snapshot(root) == before
    assert not (root / "cpu" / "modules" / "all" / "slow").exists()
    assert (root / ".modlib" / "run.lock").exists()  # left by the killed holder
    assert any((root / ".modlib" / "eb-locks").iterdir())  # EasyBuild's own install lock, also left behind

    marker.unlink()
    again = modlib("build", "--config", config)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "took over the run lock" in again.stdout and "built    cpu/slow/1.0-GCCcore-system" in again.stdout
    assert list((root / ".modlib" / "eb-locks").iterdir()) == []
    assert "slow/1.0-GCCcore-system" in new_shell_avail(root)  # published a moment ago, seen at once


def test_defaults_retirement_and_python_compatibility(small):
    tmp, stack, marker, configure = small
    write_easystack(stack, ["Jinja2-3.1.4-GCCcore-system.eb", "Jinja2-3.1.5-GCCcore-system.eb"])
    old = tmp / "library" / "cpu" / "modules" / "all" / "OldPy" / "1.0.lua"
    old.parent.mkdir(parents=True)  # a module some earlier library built for another notebook Python
    (tmp / "library" / ".modlib").mkdir()
    old.write_text('help([[old]])\nprepend_path("PYTHONPATH", "/opt/oldpy/lib/python3.8/site-packages")\n')
    config = str(configure(modules={"defaults": {"Jinja2": "3.1.4-GCCcore-system"},
                                    "hidden": ["Jinja2/3.1.5-GCCcore-system"]},
                           featured=[{"name": "Jinja2"}, {"name": "OldPy"}, {"name": "NotThere"}]))
    result = modlib("build", "--config", config)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "warning: featured OldPy/1.0 was built for Python 3.8" in result.stdout
    assert "warning: featured NotThere is not published in target 'cpu'" in result.stdout
    root = tmp / "library"
    index = json.loads((root / "live" / "targets" / "cpu" / "featured.json").read_text())
    assert [m["module"] for m in index["modules"]] == ["Jinja2/3.1.4-GCCcore-system"]

    avail = new_shell_avail(root)
    assert "Jinja2/3.1.4-GCCcore-system" in avail and "Jinja2/3.1.5-GCCcore-system" not in avail
    env_sh = f"source {root}/live/targets/cpu/env.sh"
    default = lmod(f"{env_sh} && module load Jinja2 && {sys.executable} -c 'import jinja2; print(jinja2.__version__)'")
    assert default.stdout.strip() == "3.1.4", default.stderr
    pinned = lmod(f"{env_sh} && module load Jinja2/3.1.5-GCCcore-system && "
                  f"{sys.executable} -c 'import jinja2; print(jinja2.__version__)'")
    assert pinned.stdout.strip() == "3.1.5", pinned.stderr  # retired, still loadable by notebooks that pinned it

    status = json.loads(modlib("status", "--config", config, "--json", check=True).stdout)
    assert status["targets"]["cpu"]["python_mismatch"] == [{"module": "OldPy/1.0", "tree": "cpu", "python": "3.8"}]
