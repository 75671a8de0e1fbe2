"""Immutable installs: a rebuild goes to a fresh prefix, so notebooks using the published module never
notice it, and a rebuild killed half-way leaves the published module working."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.helpers import (
    LMOD_INIT,
    REPO,
    bundle_easyconfig,
    copy_site_easyconfigs,
    link_sources,
    lmod,
    modlib,
    write_config,
    write_easystack,
)

pytestmark = pytest.mark.e2e

MARKUPSAFE = "MarkupSafe/3.0.2-GCCcore-system"


@pytest.fixture()
def library(tmp_path, source_cache):
    site = copy_site_easyconfigs(tmp_path / "site")
    (tmp_path / "easyconfigs").mkdir()
    stack = write_easystack(tmp_path / "easyconfigs" / "cpu.yaml", ["MarkupSafe-3.0.2-GCCcore-system.eb"])
    config = write_config(tmp_path, {"cpu": {"kind": "cpu", "tree": "cpu", "easystacks": [str(stack)]}},
                          easyconfig_paths=[str(site)])
    root = tmp_path / "library"
    link_sources(root, source_cache)
    first = modlib("build", "--config", str(config))
    assert first.returncode == 0, first.stdout + first.stderr
    return root, config


def prefix_of(root: Path, imported: str) -> Path:
    """The build prefix an imported file lives in: <root>/cpu/software/<prefix>/MarkupSafe/<version>/..."""
    software = root / "cpu" / "software"
    return software / Path(imported).relative_to(software).parts[0]


class Reader:
    """A notebook user importing markupsafe from its module in a fresh shell, again and again."""

    SCRIPT = (f"source {LMOD_INIT} && source {{root}}/live/targets/cpu/env.sh && module load {MARKUPSAFE} && "
              f"{sys.executable} -c 'import markupsafe; print(markupsafe.__file__)'")

    def __init__(self, root: Path):
        self.root = root
        self.seen: list[str] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LOADEDMODULES", "_LMFILES_")}
        while not self._stop.is_set():
            out = subprocess.run(["bash", "-c", self.SCRIPT.format(root=self.root)], capture_output=True,
                                 text=True, env=env)
            path = out.stdout.strip()
            if out.returncode != 0 or not path.startswith(f"{self.root}/cpu/software/"):
                self.failures.append(out.stdout + out.stderr)  # an error, or another markupsafe imported
            else:
                self.seen.append(path)

    def __enter__(self) -> "Reader":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def test_a_rebuild_never_disturbs_a_reader_and_a_killed_one_leaves_the_old_module(library):
    root, config = library
    with Reader(root) as reader:
        rebuilt = modlib("build", "--config", str(config), "--rebuild", MARKUPSAFE)
        time.sleep(2)  # a few imports after the swap too
    assert rebuilt.returncode == 0 and "built 1" in rebuilt.stdout, rebuilt.stdout + rebuilt.stderr
    assert reader.failures == [] and len(reader.seen) >= 5
    prefixes = list(dict.fromkeys(prefix_of(root, p) for p in reader.seen))
    assert len(prefixes) == 2
    old, new = prefixes
    assert old.is_dir()  # kept generations and running kernels may still use it: removed only after the grace

    exe = Path(sys.executable).parent / "modlib"
    run = subprocess.Popen([str(exe), "build", "--config", str(config), "--rebuild", MARKUPSAFE],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and not any(p not in (old, new) for p in (root / "cpu" / "software").iterdir()
                                             if p.is_dir()):
        time.sleep(0.1)
    time.sleep(1)  # into the build
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    with Reader(root) as after_kill:
        time.sleep(3)
    assert after_kill.failures == [] and after_kill.seen
    assert all(p.startswith(f"{new}/") for p in after_kill.seen)  # the published build, untouched

    again = modlib("build", "--config", str(config), "--rebuild", MARKUPSAFE)
    assert again.returncode == 0 and "built 1" in again.stdout, again.stdout + again.stderr
    with Reader(root) as last:
        time.sleep(2)
    assert last.failures == [] and {prefix_of(root, p) for p in last.seen} - {old, new}


def test_remove_unpublishes_only_what_nothing_published_loads(tmp_path, source_cache):
    site = tmp_path / "site"
    for name, extra in (("base", ""), ("app", "dependencies = [('base', '1.0')]")):
        (site / name[0] / name).mkdir(parents=True)
        (site / name[0] / name / f"{name}-1.0-GCCcore-system.eb").write_text(bundle_easyconfig(name, extra))
    (tmp_path / "easyconfigs").mkdir()
    stack = write_easystack(tmp_path / "easyconfigs" / "cpu.yaml", ["app-1.0-GCCcore-system.eb"])
    config = str(write_config(tmp_path, {"cpu": {"kind": "cpu", "tree": "cpu", "easystacks": [str(stack)]}},
                              easyconfig_paths=[str(site), str(REPO / "easyconfigs")]))
    root = tmp_path / "library"
    link_sources(root, source_cache)
    assert modlib("build", "--config", config).returncode == 0

    # the names show and logs take: a bare software name, a short name, after its tree
    refused = modlib("remove", "--config", config, "base")
    assert refused.returncode == 2
    assert "published modules load it: cpu/app/1.0-GCCcore-system; remove them first" in refused.stderr
    unknown = modlib("remove", "--config", config, "cpu/app/1.1")
    assert unknown.returncode == 2
    assert "cpu/app/1.1: no such module in this library; did you mean cpu/app/1.0-GCCcore-system?" in unknown.stderr
    removed = modlib("remove", "--config", config, "cpu/app/1.0")
    assert removed.returncode == 0, removed.stderr
    assert "removed cpu/app/1.0-GCCcore-system from the store" in removed.stdout
    avail = lmod(f"source {root}/live/targets/cpu/env.sh && module -t avail 2>&1").stdout
    assert "app/1.0-GCCcore-system" not in avail and "base/1.0-GCCcore-system" in avail
    assert list((root / "cpu" / "software").glob("app-*/app"))  # the prefix waits out the grace period
    status = json.loads(modlib("status", "--config", config, "--json", check=True).stdout)
    assert [m["module"] for m in status["targets"]["cpu"]["missing"]] == ["app/1.0-GCCcore-system"]
    # built again: a fresh prefix, while the removed install waits out its grace period untouched
    old = next((root / "cpu" / "software").glob("app-*"))
    stamp = {p: p.stat().st_mtime_ns for p in old.rglob("*")}
    assert modlib("build", "--config", config).returncode == 0
    new = [p for p in (root / "cpu" / "software").glob("app-*") if p != old]
    assert len(new) == 1 and {p: p.stat().st_mtime_ns for p in old.rglob("*")} == stamp
    assert str(new[0]) in (root / "cpu" / "modules" / "all" / "app" / "1.0-GCCcore-system.lua").read_text()
