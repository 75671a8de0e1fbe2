"""A cluster for the kubernetes executor's tests: kmock's API emulator, and a kubelet played here.

kmock serves a stateful Kubernetes API over real HTTP; it stores what it is sent and runs nothing.
``Kubelet`` plays the Job controller and the kubelet against it through the same API: for each new
Job it creates a Pod object, runs the Job's own container command in a private mount namespace (the
claim's host folder bind-mounted at the pod's mount path, emptyDirs as tmpfs, the root file system
read-only) as the Job's user in cgroups of its own with its memory limit (builder/execute/cgroups.py's, v1:
a real OOM kill is reported OOMKilled, and the container's termination-log file becomes its termination message, as a
kubelet reports them), serves the container's log, plays evictions, deletions and whole-container OOM kills
(``Disruption``), applies the Job's podFailurePolicy (first matching rule) and backoffLimit, and reports
Complete or Failed through the Job's status. kmock ignores label
selectors, so tests assert on the query strings the executor sends (``Emulator.requests``).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import kmock
import yaml
from kubernetes import client

from builder.execute import cgroups
from builder.read.config import quantity_bytes

#: Where pods' cgroups go: the tests' own v1 memory and cpuacct cgroups (pod_sandbox.py binds a container's v1
#: folders where a v1 node shows them); None where there are none, and the tests that need a limit skip.
CGROUPS = next((h for h in [cgroups.find()[0]] if h is not None and h.version == 1), None)

POD_SANDBOX = Path(__file__).with_name("pod_sandbox.py")
KUBELET_AGENT = "modlib-tests-kubelet"
GRACE_SECONDS = 20  # after SIGTERM, what is left of a pod is SIGKILLed (a Job's terminationGracePeriodSeconds, cut)
RESOURCES = [(("batch", "v1", "jobs"), "Job", {"status"}), (("", "v1", "pods"), "Pod", {"status", "log"}),
             (("coordination.k8s.io", "v1", "leases"), "Lease", set())]


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Emulator:
    """kmock's emulator on 127.0.0.1 in a thread of its own, serving pod logs from files."""

    def __init__(self) -> None:
        self.logs: dict[str, Path] = {}  # pod name -> its container's output
        self._ready, self._loop = threading.Event(), asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(self._serve(),), daemon=True)

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        self.kmock = kmock.KubernetesEmulator()
        for (group, version, plural), kind, subresources in RESOURCES:  # an apiserver knows them before any object
            self.kmock.resources[kmock.resource(group, version, plural)] = kmock.ResourceInfo(
                kind=kind, namespaced=True, subresources=subresources,
                verbs={"create", "get", "list", "watch", "update", "patch", "delete"})
        self.kmock["get", kmock.subresource("log")] << self._log  # the kubelet's part, not the apiserver's
        self.kmock["put"] << self._replace
        async with self.kmock, kmock.Server(self.kmock, host="127.0.0.1") as server:
            self.url = str(server.url).rstrip("/")
            self._ready.set()
            await self._stop.wait()

    def _log(self, request: kmock.Request) -> kmock.Response:
        path = self.logs.get(request.name or "")
        if path is None:
            return kmock.Response(status=404, payload=b"no such pod")
        return kmock.Response(status=200, payload=path.read_bytes(), headers={"Content-Type": "text/plain"})

    def _replace(self, request: kmock.Request) -> dict:
        """PUT (update), which kmock 0.8 does not serve; the body is the whole object, so a merge
        into the stored one is a replace. No resourceVersion check: kmock keeps none."""
        assert request.resource is not None and request.name is not None
        key = (request.resource, request.namespace, request.name)
        if key not in self.kmock.objects or self.kmock.objects[key].deleted:
            raise kmock.KubernetesObjectNotFoundError()
        self.kmock.objects[key].patch(request.data)
        return self.kmock.objects[key].raw

    def __enter__(self) -> Emulator:
        self._thread.start()
        assert self._ready.wait(10), "kmock did not start"
        return self

    def __exit__(self, *exc) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def write_kubeconfig(self, path: Path) -> Path:
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "emulated",
            "clusters": [{"name": "emulated", "cluster": {"server": self.url}}],
            "users": [{"name": "runner", "user": {"token": "not-checked"}}],
            "contexts": [{"name": "emulated", "context": {"cluster": "emulated", "user": "runner"}}]}))
        path.chmod(0o644)
        return path

    def api(self) -> client.ApiClient:
        cfg = client.Configuration()
        cfg.host = self.url
        api = client.ApiClient(cfg)
        api.user_agent = KUBELET_AGENT
        return api

    def requests(self) -> list[kmock.Request]:
        """What everyone but the kubelet sent, in order."""
        return [r for r in self.kmock if r.headers.get("User-Agent") != KUBELET_AGENT]

    def object(self, plural: str, namespace: str, name: str, group: str = "batch", version: str = "v1"):
        return self.kmock.objects[kmock.resource(group, version, plural), namespace, name]


@dataclass
class PodRun:
    job: str
    pod: str
    start: float
    end: float = 0.0
    exit_code: int | None = None
    disruption: str | None = None
    oom_killed: bool = False  # as the kubelet reported it
    module: str | None = None  # the Job's modlib.io/module


@dataclass(frozen=True)
class Disruption:
    """What befalls the first pods of one module's Jobs, one kind per pod in turn, once ``ready(log)``
    (the pod's output so far) says the build is under way; after the last, ``release`` is removed,
    which the build waits on, so that the next pod runs through. The kinds:
    'oom': the kernel's OOM killer taking the whole container, as cgroup v2's memory.oom.group does: SIGKILL
    to every process of the pod (exit 137, reason OOMKilled, no termination message);
    'evict': the Eviction API (a drain, a preemption, the node's memory pressure): the pod gets the
    condition DisruptionTarget, then its main process SIGTERM, as the kubelet stops it;
    'delete': ``kubectl delete pod``: the pod object goes, its main process gets SIGTERM, no condition."""

    module: str
    kinds: tuple[str, ...]
    ready: Callable[[str], bool]
    release: Path


@dataclass
class Kubelet:
    """One node of the cluster with unlimited room; every claim is a folder on this host."""

    emulator: Emulator
    namespace: str
    claims: dict[str, Path]  # claimName -> host folder
    image_env: dict[str, str]  # what the image's ENV gives every container (PATH)
    work: Path  # pod specs and container logs
    reveal: tuple[str, ...] = ()  # host folders the image stands on (pod_sandbox.py)
    disruptions: tuple[Disruption, ...] = ()
    runs: list[PodRun] = field(default_factory=list)

    def __post_init__(self) -> None:
        api = self.emulator.api()
        self.batch, self.core = client.BatchV1Api(api), client.CoreV1Api(api)
        self._active: set[str] = set()
        self._lock, self._stop = threading.Lock(), threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> Kubelet:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)

    def _watch(self) -> None:
        while not self._stop.wait(0.2):
            for job in self.batch.list_namespaced_job(self.namespace).items:
                fresh = not (job.status and job.status.start_time)
                with self._lock:
                    if fresh and job.metadata.name not in self._active:
                        self._active.add(job.metadata.name)
                        threading.Thread(target=self._run_job, args=(job,), daemon=True).start()

    def _run_job(self, job) -> None:
        """The Job controller: pods one after another until success, a FailJob rule or the backoffLimit;
        a pod an Ignore rule matches is replaced without counting."""
        name = job.metadata.name
        self.batch.patch_namespaced_job_status(name, self.namespace, {"status": {"startTime": now_iso(), "active": 1}})
        failures = 0
        while True:
            code, conditions = self._run_pod(job)
            if code == 0:
                self._finish(name, "Complete", "Completed", succeeded=1, failed=failures)
                break
            policy = self.batch.api_client.sanitize_for_serialization(job.spec.pod_failure_policy)
            action = policy_action(policy, code, conditions)
            if action == "FailJob":
                self._finish(name, "Failed", "PodFailurePolicy", failed=failures + 1)
                break
            if action == "Ignore":
                continue
            failures += 1
            if failures > job.spec.backoff_limit:
                self._finish(name, "Failed", "BackoffLimitExceeded", failed=failures)
                break
        with self._lock:
            self._active.discard(name)

    def _finish(self, name: str, condition: str, reason: str, **counts: int) -> None:
        cond = {"type": condition, "status": "True", "reason": reason, "lastTransitionTime": now_iso()}
        status = {"active": 0, "conditions": [cond], **counts}
        if condition == "Complete":
            status["completionTime"] = now_iso()
        self.batch.patch_namespaced_job_status(name, self.namespace, {"status": status})

    def _run_pod(self, job) -> tuple[int, list[dict]]:
        """One pod of the Job, run to its end: the container's exit code and the pod's conditions."""
        job_name = job.metadata.name
        pod_name = f"{job_name}-{uuid.uuid4().hex[:5]}"
        template = self.batch.api_client.sanitize_for_serialization(job.spec.template)
        labels = {**template["metadata"].get("labels", {}), "batch.kubernetes.io/job-name": job_name,
                  "job-name": job_name}
        self.core.create_namespaced_pod(self.namespace, {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod_name, "namespace": self.namespace, "labels": labels,
                         "creationTimestamp": now_iso()},
            "spec": template["spec"], "status": {"phase": "Running", "startTime": now_iso()}})
        (container,) = template["spec"]["containers"]
        module = (job.metadata.annotations or {}).get("modlib.io/module")
        run = PodRun(job=job_name, pod=pod_name, start=time.time(), module=module)
        with self._lock:
            self.runs.append(run)
            nth = [r.module for r in self.runs].count(module)  # the module's Jobs' pods: a retry Job's too
        message = self.work / f"{pod_name}.termination-log"
        message.touch(mode=0o666)  # the kubelet's file, bind-mounted at the container's terminationMessagePath
        message.chmod(0o666)
        cgroup = cgroups.Cgroup(CGROUPS, pod_name, _memory_limit(container)) if CGROUPS else None
        try:
            code, kind, conditions = self._run_container(job, nth, pod_name, template, cgroup, message)
            oom_killed = kind == "oom" or bool(cgroup and cgroup.usage().oom_kills and code != 0)
        finally:
            if cgroup is not None:
                cgroup.remove()  # whatever the pod left running ends with it, as its container's processes do
        run.oom_killed = oom_killed
        if kind != "delete":  # a deleted pod's object is gone
            self.core.patch_namespaced_pod_status(pod_name, self.namespace, {"status": {
                "phase": "Succeeded" if code == 0 else "Failed", "conditions": conditions,
                "containerStatuses": [_container_status(container, code, oom_killed, message)]}})
        with self._lock:
            run.end, run.exit_code, run.disruption = time.time(), code, kind
        return code, conditions

    def _run_container(self, job, nth: int, pod: str, template: dict, cgroup: cgroups.Cgroup | None,
                       message: Path) -> tuple[int, str | None, list[dict]]:
        """The pod's container run to its end, in its cgroups: its exit code as a runtime reports it, the
        disruption played on it and the conditions that gave the pod."""
        (container,) = template["spec"]["containers"]
        spec = {**self.sandbox_spec(template["spec"], container), "termination_log": str(message)}
        if cgroup is not None:
            spec["cgroups"] = {"memory": str(cgroup.folders[0]), "cpuacct": str(cgroup.folders[-1])}
        argv = sandbox_argv(spec, self.work / f"{pod}.json")
        log = self.work / f"{pod}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(_entered(cgroup, argv) if cgroup else argv, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
            kind, conditions = self._disrupt(job, nth, pod, proc, log)
            code = proc.wait()
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # what its main process left running ends with the container
        except ProcessLookupError:
            pass
        self.emulator.logs[pod] = log
        return 128 - code if code < 0 else code, kind, conditions  # a signal: what a container runtime reports

    def _disrupt(self, job, nth: int, pod: str, proc: subprocess.Popen, log: Path) -> tuple[str | None, list[dict]]:
        """Play the module's disruption on this, its Jobs' ``nth`` pod, if one is due: its kind and the
        conditions it gave the pod."""
        module = (job.metadata.annotations or {}).get("modlib.io/module")
        due = [d for d in self.disruptions if d.module == module and nth <= len(d.kinds)]
        if not due:
            return None, []
        (disruption,) = due
        kind = disruption.kinds[nth - 1]
        while not disruption.ready(log.read_text(errors="replace")):
            if proc.poll() is not None:
                return None, []  # it ended by itself first
            time.sleep(0.1)
        conditions = []
        if kind == "oom":
            os.killpg(proc.pid, signal.SIGKILL)  # the pod's every process, as its cgroup's are
        else:
            if kind == "evict":
                conditions = [{"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI",
                               "message": "Eviction API: evicting", "lastTransitionTime": now_iso()}]
                self.core.patch_namespaced_pod_status(pod, self.namespace, {"status": {"conditions": conditions}})
            else:
                self.core.delete_namespaced_pod(pod, self.namespace)
            os.kill(proc.pid, signal.SIGTERM)  # the container's main process, as the kubelet stops it
            try:
                proc.wait(GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # the grace period is over
        proc.wait()
        if nth == len(disruption.kinds):
            disruption.release.unlink()
        return kind, conditions

    def sandbox_spec(self, pod: dict, container: dict) -> dict:
        """What pod_sandbox.py needs: the volumes as mounts, the security context as uid/gid."""
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts, empty = [], []
        for mount in container["volumeMounts"]:
            volume = volumes[mount["name"]]
            if "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]
                mounts.append({"source": str(self._claim_path(claim["claimName"], mount.get("subPath", ""))),
                               "target": mount["mountPath"],
                               "read_only": bool(mount.get("readOnly") or claim.get("readOnly"))})
            elif "emptyDir" in volume:
                empty.append(mount["mountPath"])
            else:
                raise AssertionError(f"the emulated kubelet mounts claims and emptyDirs only, not {volume}")
        ctx = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
        env = {**self.image_env, **{e["name"]: e["value"] for e in container.get("env", [])}}
        # command then args, with $(VAR) of the container's environment expanded as the kubelet does
        argv = [re.sub(r"\$\((\w+)\)", lambda m: env.get(m[1], m[0]), arg)
                for arg in [*container["command"], *container.get("args", [])]]
        return {"mounts": mounts, "empty_dirs": empty, "read_only_root": bool(ctx.get("readOnlyRootFilesystem")),
                "uid": ctx["runAsUser"], "gid": ctx.get("runAsGroup", ctx["runAsUser"]), "reveal": list(self.reveal),
                "workdir": container.get("workingDir", "/"), "env": env, "command": argv}

    def start_pod(self, name: str) -> subprocess.Popen:
        """The kubelet's part for a bare Pod already created through the API (no Job: dask-kubernetes makes
        its worker pods so): its one container started, the pod Running. The caller ends the process
        (its own session: ``os.killpg``); its output is the pod's log."""
        pod = self.core.api_client.sanitize_for_serialization(self.core.read_namespaced_pod(name, self.namespace))
        (container,) = pod["spec"]["containers"]
        log = self.work / f"{name}.log"
        argv = sandbox_argv(self.sandbox_spec(pod["spec"], container), self.work / f"{name}.json")
        with log.open("wb") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.emulator.logs[name] = log
        self.core.patch_namespaced_pod_status(name, self.namespace,
                                              {"status": {"phase": "Running", "startTime": now_iso()}})
        return proc


    def _claim_path(self, claim: str, sub_path: str) -> Path:
        """A mount's source on the claim; a missing subPath folder is made as the kubelet makes it: by
        root, so that a pod running as another user cannot write it."""
        path = self.claims[claim] / sub_path
        if sub_path and not path.exists():
            path.mkdir(mode=0o755, parents=True)
        return path


def _entered(cgroup: cgroups.Cgroup, argv: list[str]) -> list[str]:
    """``argv`` started inside the pod's cgroups, as a runtime starts a container: a shell moves itself first."""
    procs = [str(path) for path in cgroup.procs()]
    move = " && ".join(f'echo $$ > "${i + 1}"' for i in range(len(procs)))
    return ["sh", "-c", f'{move} && shift {len(procs)} && exec "$@"', "pod-cgroup", *procs, *argv]


def _memory_limit(container: dict) -> int | None:
    limit = container.get("resources", {}).get("limits", {}).get("memory")
    return quantity_bytes(limit) if limit else None


def _container_status(container: dict, code: int, oom_killed: bool, message: Path) -> dict:
    """As a kubelet reports a terminated container: OOMKilled where its cgroup saw an OOM kill and it
    failed, and the termination message (at most 4096 bytes of the file) where there is one."""
    terminated = {"exitCode": code, "reason": "OOMKilled" if oom_killed else "Completed" if code == 0 else "Error"}
    with message.open("rb") as fh:
        text = fh.read(4096).decode(errors="replace")
    if text:
        terminated["message"] = text
    return {"name": container["name"], "image": container["image"], "imageID": "", "ready": False,
            "restartCount": 0, "state": {"terminated": terminated}}


def policy_action(policy: dict | None, code: int, conditions: list[dict]) -> str | None:
    """A Job's podFailurePolicy as the Job controller applies it to a failed pod: the rules in order, the
    first that matches decides (FailJob, Ignore or Count); None when none matches (it counts)."""
    for rule in (policy or {}).get("rules", []):
        codes = rule.get("onExitCodes")
        if codes is not None:
            matched = (code in codes["values"]) == (codes["operator"] == "In")
        else:
            matched = any(c["type"] == p["type"] and c["status"] == p["status"]
                          for p in rule["onPodConditions"] for c in conditions)
        if matched:
            return rule["action"]
    return None


def sandbox_argv(spec: dict, spec_file: Path) -> list[str]:
    """The command that runs ``spec`` (see pod_sandbox.py) in a private mount namespace of its own."""
    spec_file.write_text(json.dumps(spec))
    return ["unshare", "--mount", "--propagation", "private", sys.executable, str(POD_SANDBOX), str(spec_file)]


def own_folders(path: Path, uid: int) -> None:
    """The claim belongs to the pods' user (fsGroup does this on a cluster); files stay as they are,
    since some are hard links into the session's source cache."""
    for dirpath, _, _ in os.walk(path):
        os.chown(dirpath, uid, uid)
