"""Build pods disrupted or failing in the emulated cluster, each Job ending as its podFailurePolicy says.

One `modlib build --executor kubernetes` of four test easyconfigs, real EasyBuild in every pod, each in a
memory cgroup with its Job's limit (builder/execute/cgroups.py's):
`evicted` waits in its post-install step while its first two pods are evicted (condition
DisruptionTarget, then SIGTERM), `deleted` waits while its first pod is deleted by hand (SIGTERM, no
condition), `postfail`'s postinstallcmds fail, and `hungry`'s post-install allocates 400 MiB under the
320 MiB every unmeasured build gets: the kernel kills it, the run retries it once as a new Job with twice
the memory. The Jobs' backoffLimit is 1: an eviction must not count, a deletion counts once, and the
failed post-install fails its Job with its first pod.
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
from tests.k8s.emulator import CGROUPS, Disruption, Emulator, Kubelet
from tests.k8s.scenario import KUBERNETES, NS, ROOT, Scenario, make_volume, waiting_easyconfig

EVICTED, DELETED, POSTFAIL = "evicted/1.0-GCCcore-system", "deleted/1.0-GCCcore-system", "postfail/1.0-GCCcore-system"
HUNGRY = "hungry/1.0-GCCcore-system"
MIB = 1 << 20
#: every build's memory where no record measured one; `hungry` needs more, and gets it on its one retry
MEMORY = {"default": "320Mi", "min": "64Mi", "max": "1Gi"}
ALLOCATE = "python3 -c 'print(len(bytearray(400 << 20)))'"  # bytearray(n) writes its n bytes


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
                   "postfail": bundle_easyconfig("postfail", "postinstallcmds = ['echo post-install fails; exit 3']"),
                   "hungry": bundle_easyconfig("hungry", f"postinstallcmds = [{ALLOCATE!r}]")}
    for name, text in easyconfigs.items():
        (site / name[0] / name).mkdir(parents=True)
        (site / name[0] / name / f"{name}-1.0-GCCcore-system.eb").write_text(text)
    for marker in markers.values():
        marker.touch()
    stack = write_easystack(base / "stack.yaml", [f"{name}-1.0-GCCcore-system.eb" for name in easyconfigs])
    config = write_config(base, {"cpu": {"kind": "cpu", "tree": "cpu", "easystacks": [str(stack)],
                                         "resources": {"memory": MEMORY}}},
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
        every = {r.job: emulator.object("jobs", NS, r.job).raw for r in kubelet.runs}  # in the order they ran
        jobs = {job["metadata"]["annotations"]["modlib.io/module"]: job for job in every.values()}
        yield {"exit": runner.returncode, "output": log.read_text(), "volume": volume, "jobs": jobs, "every": every,
               "runs": list(kubelet.runs),
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


def _records(run, module: str) -> list[dict]:
    folder = run["volume"] / ".modlib" / "records" / "cpu" / module.replace("/", "--")
    return [json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))]


def _job_memory(job: dict) -> tuple[str, str]:
    resources = job["spec"]["template"]["spec"]["containers"][0]["resources"]
    return resources["requests"]["memory"], resources["limits"]["memory"]


NO_CGROUPS = pytest.mark.skipif(CGROUPS is None, reason="no writable cgroup v1 memory and cpuacct here")


@NO_CGROUPS
def test_a_build_killed_for_memory_is_retried_once_as_a_new_job_with_twice_the_memory(run):
    """The kernel kills `hungry`'s allocation in its 320 MiB cgroup; EasyBuild exits 1 (a failed post-install,
    which alone would fail it for good): the cgroup's OOM count, in the pod's termination message, decides."""
    jobs = [(name, job) for name, job in run["every"].items() if job["metadata"]["annotations"]["modlib.io/module"]
            == HUNGRY]
    assert len(jobs) == 2, run["output"][-3000:]
    pods = [(r.job, r.exit_code, r.oom_killed) for r in run["runs"] if r.job in dict(jobs)]
    assert pods == [(jobs[0][0], 1, True), (jobs[1][0], 0, False)]
    assert [_job_memory(job) for _, job in jobs] == [("320Mi", "320Mi"), ("640Mi", "640Mi")]
    assert [[f"{c['type']}/{c['reason']}" for c in job["status"]["conditions"]] for _, job in jobs] == [
        ["Failed/PodFailurePolicy"], ["Complete/Completed"]]
    first, retry = _records(run, HUNGRY)
    assert (first["exit_code"], first["memory_bytes"], first["measured_by"]) == (1, 320 * MIB, "cgroup v1")
    assert first["oom_kills"] >= 1 and first["after_oom"] == ""
    assert retry["after_oom"] == str(Path(first["log"]).with_suffix(".json"))
    assert (retry["exit_code"], retry["memory_bytes"], retry["oom_kills"]) == (0, 640 * MIB, 0)
    assert 400 * MIB < retry["peak_memory_bytes"] <= 640 * MIB and retry["cpu_seconds"] > 0
    assert "killed for memory with 320Mi (exit 1" in run["output"] and "retrying once with 640Mi" in run["output"]
    assert f"built    cpu/{HUNGRY}" in run["output"] and "after an OOM kill)" in run["output"]
    assert json.loads((run["volume"] / ".modlib" / "runs" / "last.json").read_text())["after_oom"] == [f"cpu/{HUNGRY}"]


@NO_CGROUPS
def test_every_build_records_what_its_cgroup_measured(run):
    for module in (EVICTED, DELETED, POSTFAIL):
        last = _records(run, module)[-1]
        assert last["measured_by"] == "cgroup v1" and last["memory_bytes"] == 320 * MIB and last["cpus"] == 2
        assert 0 < last["peak_memory_bytes"] <= 320 * MIB and last["cpu_seconds"] > 0 and last["oom_kills"] == 0
        assert "--parallel=2" in last["command"]
