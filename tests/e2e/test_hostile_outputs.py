"""What a build leaves is read as hostile data: its staged module file and EasyBuild's ``default`` marker are
published only as regular files the runner reads itself, a FIFO in its prefix never blocks the run, and a
link or FIFO left in ``software/`` cannot stop a later run. One library, real EasyBuild builds."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import bundle_easyconfig, copy_site_easyconfigs, link_sources, write_config, write_easystack

pytestmark = pytest.mark.e2e

# Waits (detached, output closed, so EasyBuild does not wait for it) until EasyBuild has written the module
# file into staging, then puts a link to a file outside the library in its place while eb still runs.
LINKER = """postinstallcmds = ['''nohup sh -c 'f={staged}; for i in $(seq 1200); do
  if [ -f "$f" ] && [ ! -L "$f" ]; then ln -sf {outside} "$f.tmp" && mv -T "$f.tmp" "$f"; exit 0; fi; sleep 0.05
  done' >/dev/null 2>&1 </dev/null &''']"""
DEFAULTER = "postinstallcmds = ['mkdir -p {folder} && ln -s {outside} {folder}/default']"
FIFO = ("postinstallcmds = ['mkfifo %(installdir)s/pipe && mkdir -p %(installdir)s/bin "
        "&& echo ok > %(installdir)s/bin/x']")

MODULES = {name: f"{name}/1.0-GCCcore-system" for name in ("linker", "defaulter", "fifo")}


def run_modlib(*args: str, cache: Path, timeout: float = 420) -> subprocess.CompletedProcess:
    """The console script, killed if it hangs (a FIFO read once blocked the runner forever)."""
    exe = Path(sys.executable).parent / "modlib"
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "MODLIB_CACHE": str(cache)})


@pytest.fixture(scope="module")
def built(tmp_path_factory, source_cache):
    tmp = tmp_path_factory.mktemp("hostile-outputs")
    root = tmp / "library"
    outside = tmp / "outside.lua"
    outside.write_text('setenv("OWNED", "by whoever writes this file")\n')
    site = copy_site_easyconfigs(tmp / "site")
    staged = {name: root / "cpu" / ".staging" / module.replace("/", "--") / "all" / name
              for name, module in MODULES.items()}
    extra = {"linker": LINKER.format(staged=staged["linker"] / "1.0-GCCcore-system.lua", outside=outside),
             "defaulter": DEFAULTER.format(folder=staged["defaulter"], outside=outside), "fifo": FIFO}
    for name, text in extra.items():
        (site / name[0] / name).mkdir(parents=True, exist_ok=True)
        (site / name[0] / name / f"{name}-1.0-GCCcore-system.eb").write_text(bundle_easyconfig(name, text))
    stack = write_easystack(tmp / "cpu.yaml", [f"{name}-1.0-GCCcore-system.eb" for name in MODULES])
    config = write_config(tmp, {"cpu": {"kind": "cpu", "tree": "cpu", "easystacks": [str(stack)]}},
                          easyconfig_paths=[str(site)], extra={"installs": {"grace_period_hours": 0}})
    link_sources(root, source_cache)
    result = run_modlib("build", "--config", str(config), cache=tmp / "cache")
    return root, config, outside, result


def test_a_link_where_a_module_file_or_default_marker_belongs_fails_that_build(built):
    root, config, outside, result = built
    assert result.returncode == 1, result.stdout + result.stderr
    assert "built 2," in result.stdout and "failed 2" in result.stdout, result.stdout
    assert "1.0-GCCcore-system.lua: is a symbolic link, not a regular file" in result.stdout
    assert "default: is not EasyBuild's default marker" in result.stdout
    store = root / "cpu" / "modules" / "all"
    assert not (store / f"{MODULES['linker']}.lua").exists() and not (store / "defaulter").exists()
    links = [p for p in store.rglob("*") if p.is_symlink() and not p.name == "default"]
    assert links == [] and not any(str(outside) in os.readlink(p) for p in store.rglob("default"))


def test_a_fifo_in_a_prefix_is_recorded_never_read_and_the_module_published(built):
    root, config, outside, result = built
    live = root / "live" / "trees" / "cpu" / "modules" / "all" / f"{MODULES['fifo']}.lua"
    assert live.is_file() and not live.is_symlink()
    verified = run_modlib("verify", "--config", str(config), "--json", cache=root.parent / "cache")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    record = root / "cpu" / ".modlib" / "integrity" / "fifo--1.0-GCCcore-system.jsonl"
    entries = [json.loads(line) for line in record.read_text().splitlines()[1:]]
    assert [e["type"] for e in entries if e["path"] == "pipe"] == ["other"]


def test_links_and_fifos_left_in_software_cannot_stop_a_later_run(built, tmp_path):
    root, config, outside, result = built
    precious = tmp_path / "precious"
    (precious / "keep").mkdir(parents=True)
    software = root / "cpu" / "software"
    (software / "zz-link-to-a-folder").symlink_to(precious)
    (software / "zz-dangling").symlink_to(tmp_path / "nowhere")
    os.mkfifo(software / "zz-fifo")
    again = run_modlib("build", "--config", str(config), cache=root.parent / "cache")
    assert "internal error" not in again.stderr and "Cannot call rmtree" not in again.stdout + again.stderr
    assert again.returncode == 1 and "failed 2" in again.stdout, again.stdout + again.stderr  # the two hostile ones
    assert (precious / "keep").is_dir()  # the link went, never what it points to
    assert not any(os.path.lexists(software / n) for n in ("zz-link-to-a-folder", "zz-dangling", "zz-fifo"))
