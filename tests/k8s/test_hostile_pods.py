"""What a build pod leaves is read as hostile data by the Kubernetes runner, as by the local one
(tests/e2e/test_hostile_outputs.py): `linker`'s pod swaps its staged module file for a link to a file
outside the library, `fifo`'s leaves a FIFO in its prefix. One emulated run of the two (--jobs 2): the
runner fails `linker`, publishes `fifo` and ends, never linking the outside file into the library.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

from builder.read.config import load_settings
from tests.e2e.test_hostile_outputs import FIFO, LINKER
from tests.helpers import REPO, bundle_easyconfig, copy_site_easyconfigs, write_config, write_easystack
from tests.k8s.emulator import Emulator, Kubelet
from tests.k8s.scenario import KUBERNETES, NS, ROOT, Scenario, installed, make_volume

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="mount namespaces and setpriv need root (test machines are root)"),
    pytest.mark.skipif(not all(shutil.which(t) for t in ("unshare", "setpriv", "mount")), reason="util-linux missing"),
]

MODULE = "1.0-GCCcore-system"


def write_hostile_config(base: Path, outside: Path) -> Path:
    """`linker` and `fifo` in one cpu tree, at the pods' paths (the claim is mounted at the library root)."""
    site = copy_site_easyconfigs(base / "site")
    staged = f"{ROOT}/cpu/.staging/linker--{MODULE}/all/linker/{MODULE}.lua"
    for name, extra in {"linker": LINKER.format(staged=staged, outside=outside), "fifo": FIFO}.items():
        (site / name[0] / name).mkdir(parents=True, exist_ok=True)
        (site / name[0] / name / f"{name}-{MODULE}.eb").write_text(bundle_easyconfig(name, extra))
    stack = write_easystack(base / "cpu.yaml", [f"{name}-{MODULE}.eb" for name in ("linker", "fifo")])
    return write_config(base, {"cpu": {"kind": "cpu", "tree": "cpu", "easystacks": [str(stack)]}},
                        easyconfig_paths=[str(site)], root=ROOT, extra={"kubernetes": KUBERNETES})


@pytest.fixture(scope="module")
def run(source_cache):
    """One runner pod (the two are Bundles: nothing to fetch), killed if it hangs, so that each test
    below says what went wrong rather than the whole session waiting forever."""
    base = Path(tempfile.mkdtemp(prefix="modlib-k8s-hostile-", dir="/var/tmp"))  # pods get their own /tmp
    base.chmod(0o755)
    base = base.resolve()
    outside = base / "outside.lua"
    outside.write_text('setenv("OWNED", "by whoever writes this file")\n')
    config = write_hostile_config(base, outside)
    volume = make_volume(base, source_cache)
    with Emulator() as emulator:
        scenario = Scenario(base, volume, config, emulator.write_kubeconfig(base / "kubeconfig"))
        (base / "kubelet").mkdir()
        claims = {load_settings(config).kubernetes.claim: volume}
        with Kubelet(emulator, NS, claims, scenario.image_env, base / "kubelet", reveal=(str(REPO),)):
            runner, log = scenario.start_runner("runner")
            try:
                runner.wait(timeout=300)  # a FIFO read once blocked the runner forever
            except subprocess.TimeoutExpired:
                os.killpg(runner.pid, signal.SIGKILL)
                runner.wait()
        yield {"volume": volume, "outside": outside, "exit": runner.returncode, "output": log.read_text()}
    shutil.rmtree(base, ignore_errors=True)


def test_a_pods_link_where_its_module_file_belongs_fails_that_build_and_links_nothing_outside(run):
    volume, outside, output = run["volume"], run["outside"], run["output"]
    for tree in (volume / "cpu" / "modules" / "all", volume / "live" / "trees" / "cpu" / "modules" / "all"):
        assert not os.path.lexists(tree / "linker" / f"{MODULE}.lua"), output[-4000:]
    staging = volume / "cpu" / ".staging"  # the pod's own, where it made the link
    links = [p for p in volume.rglob("*") if p.is_symlink() and p.resolve() == outside]
    assert all(p.is_relative_to(staging) for p in links), links
    assert outside.stat().st_nlink == 1  # neither a symbolic nor a hard link to it
    assert f"failed   cpu/linker/{MODULE}: {ROOT}/cpu/.staging/linker--{MODULE}/all/linker/{MODULE}.lua: " \
           "is a symbolic link, not a regular file" in output, output[-4000:]


def test_a_fifo_in_a_pods_prefix_is_never_read_and_its_module_published(run):
    output = run["output"]
    assert run["exit"] != -signal.SIGKILL, f"the runner hung:\n{output[-4000:]}"
    assert run["exit"] == 1 and f"built    cpu/fifo/{MODULE}" in output and "failed 1," in output, output[-4000:]
    live = run["volume"] / "live" / "trees" / "cpu" / "modules" / "all" / "fifo" / f"{MODULE}.lua"
    assert live.is_file() and not live.is_symlink()
    (fifo,) = installed(run["volume"], ("cpu", f"fifo/{MODULE}"), "pipe")
    assert fifo.is_fifo()
