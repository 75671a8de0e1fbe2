"""Build pods disrupted or failing in the emulated cluster, each Job ending as its podFailurePolicy says.

One `modlib build --executor kubernetes` of three test easyconfigs, real EasyBuild in every pod:
`evicted` waits in its post-install step while its first two pods are evicted (condition
DisruptionTarget, then SIGTERM), `deleted` waits while its first pod is deleted by hand (SIGTERM, no
condition), and `postfail`'s postinstallcmds fail. The Jobs' backoffLimit is 1: an eviction must not
count, a deletion counts once, and the failed post-install fails its Job with its first pod.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from builder.read.config import load_settings
from tests.helpers import REPO, bundle_easyconfig, write_config, write_easystack
from tests.k8s.emulator import Disruption, Emulator, Kubelet
from tests.k8s.scenario import KUBERNETES, NS, ROOT, Scenario, make_volume, waiting_easyconfig

EVICTED, DELETED, POSTFAIL = "evicted/1.0-GCCcore-system", "deleted/1.0-GCCcore-system", "postfail/1.0-GCCcore-system"


pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="mount namespaces and setpriv need root (test machines are root)"),
    pytest.mark.skipif(not all(shutil.which(t) for t in ("unshare", "setpriv", "mount")), reason="util-linux missing"),
]


def _postprocessing(log: str) -> bool:
    return "postprocessing..." in log


@pytest.fixture(scope="module")
def run(source_cache):
    base = Path(tempfile.mkdtemp(prefix="modlib-k8s-disrupt-", dir="/var/tmp"))  # not below /tmp: pods get their own
    base.chmod(0o755)
    markers = {name: base / f"{name}.marker" for name in ("evicted", "deleted")}
    site = base / "site"
    easyconfigs = {"evicted": waiting_easyconfig("evicted", str(markers["evicted"])),
                   "deleted": waiting_easyconfig("deleted", str(markers["deleted"])),
                   "postfail": bundle_easyconfig("postfail", "postinstallcmds = ['echo post-install fails; exit 3']")}
    for name, text in easyconfigs.items():
        (site / name[0] / name).mkdir(parents=True)
        (site / name[0] / name / f"{name}-1.0-GCCcore-system.eb").write_text(text)
    for marker in markers.values():
        marker.touch()
    stack = write_easystack(base / "stack.yaml", [f"{name}-1.0-GCCcore-system.eb" for name in easyconfigs])
    config = write_config(base, {"cpu": {"kind": "cpu", "tree": "cpu", "easystacks": [str(stack)]}},
                          easyconfig_paths=[str(site)], root=ROOT, extra={"kubernetes": KUBERNETES})
    volume = make_volume(base, source_cache)
    disruptions = (Disruption(EVICTED, ("evict", "evict"), _postprocessing, markers["evicted"]),
                   Disruption(DELETED, ("delete",), _postprocessing, markers["deleted"]))
    with Emulator() as emulator:
        scenario = Scenario(base, volume, config, emulator.write_kubeconfig(base / "kubeconfig"))
        (base / "kubelet").mkdir()
        claims = {load_settings(config).kubernetes.claim: volume}
        with Kubelet(emulator, NS, claims, scenario.image_env, base / "kubelet", reveal=(str(REPO),),
                     disruptions=disruptions) as kubelet:
            runner, log = scenario.start_runner("runner")
            try:
                runner.wait(timeout=900)
            finally:
                if runner.poll() is None:
                    runner.kill()
        jobs = {job["metadata"]["annotations"]["modlib.io/module"]: job for job in
                (emulator.object("jobs", NS, r.job) for r in kubelet.runs)}
        yield {"exit": runner.returncode, "output": log.read_text(), "volume": volume, "jobs": jobs,
               "pods": {module: [(r.disruption, r.exit_code) for r in kubelet.runs
                                 if r.job == job["metadata"]["name"]] for module, job in jobs.items()}}
    shutil.rmtree(base, ignore_errors=True)


def _final(run, module: str) -> tuple[list[str], int | None]:
    status = run["jobs"][module]["status"]
    return [f"{c['type']}/{c['reason']}" for c in status["conditions"]], status.get("failed")


def test_an_evicted_pod_is_replaced_without_counting_against_the_backoff_limit(run):
    """Two evictions under backoffLimit 1: neither counts, the third pod builds the module."""
    assert run["pods"][EVICTED] == [("evict", 143), ("evict", 143), (None, 0)], run["output"][-3000:]
    assert _final(run, EVICTED) == (["Complete/Completed"], 0)
    assert f"built    cpu/{EVICTED}" in run["output"]
    assert (run["volume"] / "cpu" / "modules" / "all" / f"{EVICTED}.lua").is_file()

def test_a_pod_deleted_by_hand_is_retried_and_counted(run):
    """No DisruptionTarget condition, and 143 from the entry shell, not EasyBuild's 15 (a failed
    configure step, permanent): the Job counts one failure and its next pod builds the module."""
    assert run["pods"][DELETED] == [("delete", 143), (None, 0)], run["output"][-3000:]
    assert _final(run, DELETED) == (["Complete/Completed"], 1)
    assert f"built    cpu/{DELETED}" in run["output"]

def test_a_failed_post_install_fails_its_job_with_its_first_pod(run):
    """EasyBuild exits 1 when postinstallcmds fail (its postproc step has no code of its own)."""
    assert run["pods"][POSTFAIL] == [(None, 1)], run["output"][-3000:]
    assert _final(run, POSTFAIL) == (["Failed/PodFailurePolicy"], 1)
    assert run["exit"] == 1 and f"FAILED   cpu/{POSTFAIL} (exit 1" in run["output"]
    records = sorted((run["volume"] / ".modlib" / "records" / "cpu" / "postfail--1.0-GCCcore-system")
                     .glob("*.json"))
    log = (run["volume"] / Path(json.loads(records[-1].read_text())["log"]).relative_to(ROOT)).read_text()
    assert "post-install fails" in log
