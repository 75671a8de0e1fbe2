"""`modlib build --executor kubernetes` end to end against an emulated API server.

The demo library (both targets) plus test easyconfigs is built as Jobs: `broken` fails its sanity
check, `needsbroken` depends on it, `slow` waits in its install step until the test lets it go,
`oomer`'s first pod is SIGKILLed whole (as by the OOM killer under cgroup v2) half-way through its
install, and the run retries it as a new Job with twice the memory. The runner
runs as the CronJob's pod would: uid 1000, the claim's folder mounted at the library root
/srv/modlib. Midway through, while `slow`'s pod runs, the runner is killed with SIGKILL and a second
one started; it must adopt the running Job, not create another. Then a third run builds `tamper`,
whose post-install step writes into another module's file in the store, another module's install
and the live env.sh. The kubelet (emulator.py) runs every Job's own command in its own sandbox, as
uid 1000 with a read-only root file system and the pod's volume mounts as written: the claim
read-only, the build's prefix and staging folder writable.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from builder.execute.k8s_objects import SELECTOR
from builder.plan.planner import make_plan
from builder.read.config import load_settings, quantity_bytes
from tests.helpers import REPO, modlib
from tests.k8s.emulator import Disruption, Emulator, Kubelet
from tests.k8s.scenario import (
    BROKEN,
    NEEDS_BROKEN,
    NS,
    OOMER,
    ROOT,
    SLOW,
    TAMPER,
    UID,
    Scenario,
    fetch_sources,
    first_two_runs,
    installed,
    make_volume,
    tampering_run,
    write_scenario_config,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="mount namespaces and setpriv need root (test machines are root)"),
    pytest.mark.skipif(not all(shutil.which(t) for t in ("unshare", "setpriv", "mount")), reason="util-linux missing"),
]


@pytest.fixture(scope="module")
def run(source_cache):
    """The whole scenario, once; the tests below read what it left."""
    base = Path(tempfile.mkdtemp(prefix="modlib-k8s-", dir="/var/tmp"))  # not below /tmp: pods get their own
    base.chmod(0o755)
    marker, oom_marker = base / "slow.marker", base / "oom.marker"
    marker.touch()
    oom_marker.touch()
    config = write_scenario_config(base, marker, oom_marker)
    fetch_sources(base, config, source_cache)
    volume = make_volume(base, source_cache)
    settings = load_settings(config)
    plan = make_plan(settings, list(settings.targets.values()))
    with Emulator() as emulator:
        scenario = Scenario(base, volume, config, emulator.write_kubeconfig(base / "kubeconfig"))
        (base / "kubelet").mkdir()
        oom = Disruption(OOMER[1], ("oom",), lambda log: bool(installed(volume, OOMER, "attempt-*")), oom_marker)
        kubelet = Kubelet(emulator, NS, {settings.kubernetes.claim: volume}, scenario.image_env, base / "kubelet",
                          reveal=(str(REPO),), disruptions=(oom,))
        with kubelet:
            killed_at, first, second, second_exit = first_two_runs(scenario, marker)
            tampering = tampering_run(scenario)
            deadline = time.time() + 60
            while any(r.exit_code is None for r in kubelet.runs) and time.time() < deadline:
                time.sleep(0.2)
        requests = emulator.requests()
        yield {"scenario": scenario, "settings": settings, "plan": plan, "emulator": emulator, "kubelet": kubelet,
               "killed_at": killed_at, "first": first, "second": second, "exit": second_exit,
               "tampering": tampering, "all_requests": list(emulator.kmock), "requests": requests,
               "posted": [r.data for r in requests if _creates_job(r)]}
    shutil.rmtree(base, ignore_errors=True)


def _creates_job(request) -> bool:
    return request.method == "POST" and request.url.path == f"/apis/batch/v1/namespaces/{NS}/jobs"


def _node_key(job: dict) -> tuple[str, str]:
    return job["metadata"]["labels"]["modlib.io/tree"], job["metadata"]["annotations"]["modlib.io/module"]


def _names(run) -> list[str]:
    """The names of the Jobs the runners created, once per creation."""
    return [j["metadata"]["name"] for j in run["posted"]]


def _job_of(run, key) -> str:
    (name,) = {j["metadata"]["name"] for j in run["posted"] if _node_key(j) == key}
    return name


def test_second_run_exits_1_with_only_the_broken_branch_missing(run):
    assert run["exit"] == 1, run["second"][-4000:]
    assert "failed 1, not built because a dependency failed 1" in run["second"], run["second"][-3000:]
    assert "not built: cpu/needsbroken/1.0-GCCcore-system (needs cpu/broken/1.0-GCCcore-system)" in run["second"]
    assert "took over the run lock" in run["second"]
    published = {(n.tree, n.module) for n in run["plan"].nodes
                 if (run["scenario"].volume / n.tree / "modules" / "all" / f"{n.module}.lua").is_file()}
    assert published == {n.key for n in run["plan"].nodes} - {BROKEN, NEEDS_BROKEN}


def test_restarted_runner_adopts_the_running_job_instead_of_creating_another(run):
    slow = _job_of(run, SLOW)
    assert f"adopting active Job {slow}" in run["second"]
    assert _names(run).count(slow) == 1
    assert [r.job for r in run["kubelet"].runs].count(slow) == 1
    assert f"built    cpu/{SLOW[1]}" in run["second"]


def _memory(job: dict) -> int:
    return quantity_bytes(job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"])


def test_a_pod_killed_for_memory_is_retried_once_as_a_new_job_with_twice_the_memory(run):
    """The kernel killed the whole container (exit 137, reason OOMKilled, no termination message, as under
    cgroup v2's memory.oom.group): its Job fails at once, as another pod with the same memory would be killed
    again, and the run retries it once as a new Job with twice the memory. The retry pod finds no EasyBuild
    lock of the killed one (it was in that pod's emptyDir), and the half-made install is gone."""
    first, retry = [j for j in run["posted"] if _node_key(j) == OOMER]
    assert _memory(retry) == 2 * _memory(first)
    names = [first["metadata"]["name"], retry["metadata"]["name"]]
    assert [(r.job, r.exit_code, r.oom_killed) for r in run["kubelet"].runs if r.job in names] == [
        (names[0], 137, True), (names[1], 0, False)]
    assert [[c["reason"] for c in run["emulator"].object("jobs", NS, name)["status"]["conditions"]]
            for name in names] == [["PodFailurePolicy"], ["Completed"]]
    volume = run["scenario"].volume
    assert (volume / "cpu" / "modules" / "all" / f"{OOMER[1]}.lua").is_file()
    assert len(installed(volume, OOMER, "attempt-*")) == 1  # the retry's own; the killed pod's is gone
    assert f"built    cpu/{OOMER[1]}" in run["first"] + run["second"]


def test_a_tampering_build_changes_nothing_outside_its_own_folders(run):
    """Its pod sees the claim read-only but for its prefix and staging folder: the three appends fail,
    EasyBuild fails the post-install step, the run exits 1 and the library is as it was."""
    tampering = run["tampering"]
    assert tampering["exit"] == 1, tampering["output"][-4000:]
    assert f"FAILED   cpu/{TAMPER[1]}" in tampering["output"]
    assert tampering["before"] == tampering["after"]
    volume = run["scenario"].volume
    assert installed(volume, ("cpu", "MarkupSafe/3.0.2-GCCcore-system"), "easybuild", "*.eb")  # a real target
    records = sorted((volume / ".modlib" / "records" / "cpu" / "tamper--1.0-GCCcore-system").glob("*.json"))
    log = (volume / Path(json.loads(records[-1].read_text())["log"]).relative_to(ROOT)).read_text()
    assert log.count("Read-only file system") == 3, log[-3000:]
    assert "postinstallcmds" in log or "post-install" in log, log[-3000:]
    assert not (volume / "cpu" / "modules" / "all" / f"{TAMPER[1]}.lua").exists()
    # EasyBuild exits 1 when postinstallcmds fail: permanent, so the Job fails with its first pod
    tamper = _job_of(run, TAMPER)
    assert [r.exit_code for r in run["kubelet"].runs if r.job == tamper] == [1]
    job = run["emulator"].object("jobs", NS, tamper)
    assert [c["reason"] for c in job["status"]["conditions"]] == ["PodFailurePolicy"]
    (prefix,) = volume.glob("cpu/software/tamper-*")
    assert prefix.name in json.loads((volume / "cpu" / "software" / ".unreferenced.json").read_text())


def test_jobs_are_created_once_after_their_dependencies_completed_at_most_two_at_once(run):
    names = _names(run)
    broken = _job_of(run, BROKEN)
    assert all(names.count(n) == 1 for n in names if n != broken)  # a failed Job is retried by a new run only
    assert NEEDS_BROKEN not in {_node_key(j) for j in run["posted"]}
    order = run["all_requests"]
    completed: dict[str, int] = {}  # Job name -> index of the status patch that made it Complete
    for i, r in enumerate(order):
        status = (r.data or {}).get("status") or {} if r.method == "PATCH" else {}
        if any(c["type"] == "Complete" for c in status.get("conditions") or []):
            completed.setdefault(r.url.path.split("/")[-2], i)
    job_of_node = {_node_key(j): j["metadata"]["name"] for j in run["posted"]}
    for i, r in enumerate(order):
        if _creates_job(r) and _node_key(r.data) in run["plan"].index:  # tamper: the third run, not this plan
            node = run["plan"].index[_node_key(r.data)]
            for dep in node.deps:
                dep_job = job_of_node.get(dep)
                assert dep_job is None or completed.get(dep_job, len(order)) < i, (node.module, dep)
    # --jobs 2 throughout: the restarted runner adopts its predecessor's running Jobs before it starts
    # new ones, and counts them against --jobs until then
    spans = [(r.start, r.end) for r in run["kubelet"].runs]
    assert max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans) <= 2


def test_failed_job_fails_at_once_and_its_pod_log_lands_in_the_build_record(run):
    broken = _job_of(run, BROKEN)
    pods = [r for r in run["kubelet"].runs if r.job == broken]
    creations = _names(run).count(broken)
    assert len(pods) == creations  # podFailurePolicy FailJob: no retry of a failed sanity check
    job = run["emulator"].object("jobs", NS, broken)
    assert [c["reason"] for c in job["status"]["conditions"]] == ["PodFailurePolicy"]
    records = sorted((run["scenario"].volume / ".modlib" / "records" / "cpu" / "broken--1.0-GCCcore-system")
                     .glob("*.json"))
    record = json.loads(records[-1].read_text())
    assert record["exit_code"] == pods[-1].exit_code != 0
    assert record["executor"] == "kubernetes" and record["where"] == f"pod {NS}/{pods[-1].pod}"
    log = Path(run["scenario"].volume / Path(record["log"]).relative_to(ROOT)).read_text()
    pod_log = run["scenario"].base / "kubelet" / f"{pods[-1].pod}.log"
    assert "Sanity check failed" in log and log == pod_log.read_text()


def test_every_request_is_namespaced_and_lists_ask_for_modlibs_labels(run):
    requests = run["requests"]
    assert requests and all(f"/namespaces/{NS}/" in r.url.path for r in requests)
    job_lists = [r for r in requests if r.method == "GET" and r.url.path == f"/apis/batch/v1/namespaces/{NS}/jobs"]
    assert job_lists and all(r.params.get("labelSelector") == SELECTOR for r in job_lists)
    assert any(r.params.get("watch") == "true" for r in job_lists)
    pod_lists = [r for r in requests if r.method == "GET" and r.url.path == f"/api/v1/namespaces/{NS}/pods"]
    posted = set(_names(run))
    assert pod_lists and {r.params["labelSelector"].removeprefix("batch.kubernetes.io/job-name=")
                          for r in pod_lists} <= posted
    lease = f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases"
    assert [r.method for r in requests if r.url.path.startswith(lease)][:1] == ["POST"]
    assert run["emulator"].object("leases", NS, "modlib-run", group="coordination.k8s.io").deleted


def test_posted_jobs_are_the_rendered_ones(run, tmp_path):
    rendered = {}
    for target in ("cpu", "cuda"):
        out = tmp_path / target
        result = modlib("render", "--config", str(run["scenario"].config), "--target", target, "--out", str(out))
        assert result.returncode == 0, result.stderr
        docs = (yaml.safe_load(p.read_text()) for p in out.glob("*.yaml"))
        rendered.update({d["metadata"]["name"]: d for d in docs if d["kind"] == "Job"})
    # render here reads no records (the volume is not at the library root on this host): it shows what a
    # node asks for unmeasured; a Job posted after a record of its software existed asks for other
    # resources under another name, and is otherwise the same
    by_node = {_node_key(job): job for job in rendered.values()}
    asked_otherwise = [job for job in run["posted"] if job["metadata"]["name"] not in rendered]
    for job in run["posted"]:
        assert job == rendered.get(job["metadata"]["name"], job)
    for job in asked_otherwise:
        assert _without_resources(job) == _without_resources(by_node[_node_key(job)])
    retry = [job for job in asked_otherwise if _node_key(job) == OOMER][-1]
    assert _memory(retry) == 2 * _memory(by_node[OOMER])


def test_notebook_mounts_the_result_read_only_and_loads_both_trees(run):
    out = run["scenario"].notebook(f"""set -e
source {ROOT}/live/targets/cuda/env.sh
touch {ROOT}/x 2>/dev/null && echo WRITABLE
module -t avail 2>&1
module load Jinja2/3.1.4-GCCcore-system saxpy
python -c 'import jinja2; print("jinja2", jinja2.__version__)'
command -v saxpy nvcc""")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "WRITABLE" not in out.stdout
    for module in ("saxpy/1.0-GCCcore-system-CUDA-13.2.2", "CUDA/13.2.2", "TensorBoard/2.21.0-GCCcore-system",
                   "slow/1.0-GCCcore-system"):
        assert module in out.stdout
    assert "jinja2 3.1.4" in out.stdout and "broken" not in out.stdout
    owners = {p.stat().st_uid for p in (run["scenario"].volume / "cpu" / "software").iterdir()}
    assert owners == {UID}  # every install came from a pod running as the Job's user


def _without_resources(job: dict) -> dict:
    """A Job less what its resources decide: its name, its memory and cores, eb's --parallel."""
    job = copy.deepcopy(job)
    del job["metadata"]["name"]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    container["resources"] = {}
    container["command"] = [arg for arg in container["command"] if not arg.startswith("--parallel=")]
    return job


def _authorization(request) -> tuple[str, str, str, str | None]:
    """(apiGroup, resource[/subresource], verb, name) as the API server's RBAC authorizer sees a request."""
    parts = request.url.path.strip("/").split("/")
    group, rest = ("", parts[2:]) if parts[0] == "api" else (parts[1], parts[3:])
    assert rest[0] == "namespaces", request.url.path
    resource, name, sub = rest[2], (rest[3:4] or [None])[0], (rest[4:5] or [None])[0]
    if request.method == "GET":
        verb = "watch" if request.params.get("watch") == "true" else "get" if name else "list"
    else:
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}[str(request.method.value)]
    return group, f"{resource}/{sub}" if sub else resource, verb, name


def test_the_runners_role_grants_what_it_uses_and_nothing_more(run):
    """Every request the runners sent is allowed by k8s-jobs/base/rbac.yaml's Role, and every verb the
    Role grants was used: least privilege holds both ways."""
    role = next(d for d in yaml.safe_load_all((REPO / "k8s-jobs" / "base" / "rbac.yaml").read_text())
                if d["kind"] == "Role")
    used = {_authorization(r) for r in run["requests"]}
    for group, resource, verb, name in used:
        assert any(group in rule["apiGroups"] and resource in rule["resources"] and verb in rule["verbs"]
                   and (name in rule.get("resourceNames", [name])) for rule in role["rules"]), (group, resource, verb)
    granted = {(group, resource, verb) for rule in role["rules"] for group in rule["apiGroups"]
               for resource in rule["resources"] for verb in rule["verbs"]}
    assert granted == {(group, resource, verb) for group, resource, verb, _ in used}
