"""The cluster executor: one Job per node, created when its dependencies' Jobs succeeded.

The runner holds a Lease while it drives the Jobs. It is restart-safe because a Job's name is a
hash of its node: a rerun lists the Jobs already there and adopts the running and finished ones
instead of creating duplicates; only failed Jobs (and finished ones whose output is gone) are
created again. Pods reach nothing but the volume, so every source is fetched before (builder/commands/run.py).
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from builder.errors import BadInput, Locked, RunFailed
from builder.execute import k8s_objects as objects
from builder.execute.command import Invocation, clear_leftovers, outputs
from builder.execute.executors import Executor, NodeRun
from builder.execute.inputs import stage_inputs
from builder.execute.lock import Heartbeat, holder_gone
from builder.plan.graph import Node, NodeKey
from builder.read.config import Settings

try:
    from kubernetes import client, config, watch
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError
except ImportError:  # pragma: no cover - reported when the executor is chosen
    raise RunFailed("--executor kubernetes needs the kubernetes client: pip install 'modlib[kubernetes]'") from None

LEASE_SECONDS = 60


def connect(kubeconfig: str | None) -> client.ApiClient:
    """--kubeconfig / $KUBECONFIG, else the service account of the pod we run in, else ~/.kube/config."""
    try:
        if kubeconfig or not os.environ.get("KUBERNETES_SERVICE_HOST"):
            return config.new_client_from_config(config_file=kubeconfig)
        cfg = client.Configuration()
        config.load_incluster_config(client_configuration=cfg)
        return client.ApiClient(cfg)
    except (config.ConfigException, OSError) as err:
        raise BadInput(kubeconfig or "kubeconfig", f"cannot load the cluster configuration: {err}") from None


def _api_error(err: Exception) -> RunFailed:
    """The API failing during a run (a 503, a dropped connection) is a failed run, never bad input."""
    reason = f"HTTP {err.status} {err.reason}" if isinstance(err, ApiException) else str(err)
    return RunFailed(f"Kubernetes API: {reason}")


class LeaseLock:
    """The run lock as a Lease: taken over only when its holder is gone (stale or dead here)."""

    def __init__(self, settings: Settings, api: client.ApiClient, warn: Callable[[str], None]):
        self.settings, self.leases = settings, client.CoordinationV1Api(api)
        self.ns = settings.kubernetes.namespace
        self.identity = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.heartbeat = Heartbeat(f"Lease {self.ns}/{objects.LEASE}", self._renew, LEASE_SECONDS / 4, 2, warn)

    def _holder(self, lease) -> dict:
        host, _, rest = (lease.spec.holder_identity or "").partition(":")
        renewed = lease.spec.renew_time.timestamp() if lease.spec.renew_time else 0.0
        return {"host": host, "pid": rest.partition(":")[0] or 0, "heartbeat": renewed}

    def acquire(self) -> None:
        body = objects.lease(self.settings, self.identity, LEASE_SECONDS, time.time())
        try:
            self.leases.create_namespaced_lease(self.ns, body)
        except ApiException as err:
            if err.status != 409:
                raise _api_error(err) from None
            current = self.leases.read_namespaced_lease(objects.LEASE, self.ns)
            if not holder_gone(self._holder(current), time.time(), LEASE_SECONDS):
                raise Locked(f"another run holds Lease {self.ns}/{objects.LEASE} "
                             f"({current.spec.holder_identity})") from None
            body["metadata"]["resourceVersion"] = current.metadata.resource_version
            self.leases.replace_namespaced_lease(objects.LEASE, self.ns, body)  # 409: someone was faster
        self.heartbeat.start()

    def _renew(self) -> bool:
        lease = self.leases.read_namespaced_lease(objects.LEASE, self.ns)
        if lease.spec.holder_identity != self.identity:
            return False
        lease.spec.renew_time = objects.micro_time(time.time())
        self.leases.replace_namespaced_lease(objects.LEASE, self.ns, lease)
        return True

    def release(self) -> None:
        self.heartbeat.stop()
        try:
            if self.heartbeat.lost is None:
                self.leases.delete_namespaced_lease(objects.LEASE, self.ns)
        except (ApiException, HTTPError):
            pass  # it expires by itself


def job_state(job) -> str:
    """'Complete', 'Failed' or 'active' from the Job controller's conditions."""
    for cond in (job.status.conditions if job.status else None) or []:
        if cond.type in ("Complete", "Failed") and cond.status == "True":
            return cond.type
    return "active"


class KubernetesExecutor(Executor):
    """One Job per submitted node. Closing or cancelling leaves running Jobs alone: they own the node's
    install, and the next run adopts them."""

    name = "kubernetes"

    def __init__(self, settings: Settings, api: client.ApiClient, report: Callable[[str], None] = print):
        self.settings, self.api, self.report = settings, api, report
        self.batch, self.core = client.BatchV1Api(api), client.CoreV1Api(api)
        self.ns = settings.kubernetes.namespace
        self.lease = LeaseLock(settings, api, report)
        self.running: dict[str, tuple[Node, Path, float]] = {}  # Job name -> node, log, start
        self.cancelled: list[tuple[Node, NodeRun]] = []  # ends not yet returned by wait
        self.inputs: Path | None = None  # staged by open
        self.existing: dict[str, Any] = {}  # Job name -> a Job there not followed: found by open, or ended

    def open(self) -> None:
        """Take the Lease, then stage the pods' inputs and list the Jobs a previous run left to adopt:
        a runner the Lease refuses changes nothing on the volume."""
        try:
            self.lease.acquire()
        except (ApiException, HTTPError) as err:
            raise _api_error(err) from None
        try:
            self.inputs = stage_inputs(self.settings)
            self.existing = {j.metadata.name: j for j in self.batch.list_namespaced_job(
                self.ns, label_selector=objects.SELECTOR).items}
        except (ApiException, HTTPError) as err:
            self.lease.release()
            raise _api_error(err) from None
        except BaseException:
            self.lease.release()
            raise

    def orphans(self) -> list[NodeKey]:
        """The nodes of Jobs still running that no run follows (their runner was killed): each one's pod
        runs, so it takes one of the run's ``--jobs`` until this run adopts it or it ends."""
        active = [job for job in self.existing.values() if job_state(job) == "active"]
        return [(job.metadata.labels[f"{objects.PREFIX}/tree"], job.metadata.annotations[f"{objects.PREFIX}/module"])
                for job in active]

    @classmethod
    def from_settings(cls, settings: Settings, scratch: Path, report: Callable[[str], None]) -> KubernetesExecutor:
        return cls(settings, connect(settings.kubernetes.kubeconfig), report)

    def lost(self) -> str | None:
        return self.lease.heartbeat.lost

    def close(self) -> None:
        self.lease.release()

    def submit(self, node: Node, inv: Invocation, log: Path) -> None:
        assert self.inputs is not None, "submit before open"
        body = objects.build_job(self.settings, node, inv, self.inputs)
        name = body["metadata"]["name"]
        job = self.existing.pop(name, None)
        if job is None or job_state(job) != "active":
            running = self._running_job_of(node)  # asked for other resources: an OOM retry, older records
            job, name = (running, running.metadata.name) if running is not None else (job, name)
        try:
            start = self._adopt_or_create(body, job, node, inv)
        except (ApiException, HTTPError) as err:
            raise _api_error(err) from None
        self.running[name] = (node, log, start)

    def _running_job_of(self, node: Node):
        """An active Job a previous run left for this very node (same easyconfig digest) under another name:
        adopted, never built beside, as both would write the same prefix."""
        for name, job in list(self.existing.items()):
            meta = job.metadata
            notes = meta.annotations or {}
            if job_state(job) == "active" and (meta.labels or {}).get(f"{objects.PREFIX}/tree") == node.tree \
                    and notes.get(f"{objects.PREFIX}/module") == node.module \
                    and notes.get(f"{objects.PREFIX}/sha256") == node.sha256:
                return self.existing.pop(name)
        return None

    def cancel(self, node: Node) -> None:
        """Stop following the node's Job, never delete it: the run that holds the Lease next may have
        adopted it already (and would find it gone), and it adopts it otherwise. Its end comes back
        from the next ``wait`` as a failure whose log says so."""
        for name, (running, log, start) in list(self.running.items()):
            if running.key == node.key:
                del self.running[name]
                log.parent.mkdir(parents=True, exist_ok=True)
                log.write_text(f"Job {self.ns}/{name} was left running when this run stopped following it: "
                               "the next run adopts it\n")
                self.cancelled.append((node, NodeRun(1, start, time.time(), str(log), f"Job {self.ns}/{name}")))

    def wait(self, timeout: float | None = None) -> list[tuple[Node, NodeRun]]:
        if self.cancelled:
            out, self.cancelled = self.cancelled, []
            return out
        try:
            finished = self._wait_finished(timeout)
            out = []
            for name, job in finished:
                node, log, start = self.running.pop(name)
                self.existing[name] = job  # known as there, should the node be submitted under its name again
                pod = self._last_pod(name)
                ended = self._terminated(pod)
                code = 0 if job_state(job) == "Complete" else (ended.exit_code or 1) if ended else 1
                usage = objects.usage_of(ended.message, ended.reason) if ended else None
                self._copy_log(name, pod, log)
                where = f"pod {self.ns}/{pod.metadata.name}" if pod is not None else f"Job {self.ns}/{name}"
                if pod is not None and pod.spec and pod.spec.node_name:
                    where += f" on node {pod.spec.node_name}"
                out.append((node, NodeRun(code, start, time.time(), str(log), where, usage)))
            return out
        except (ApiException, HTTPError) as err:
            raise _api_error(err) from None

    def _adopt_or_create(self, body: dict, job, node: Node, inv: Invocation) -> float:
        """Adopt the node's Job where it can still give its module; else (re)create it. The start time."""
        name = body["metadata"]["name"]
        state = job_state(job) if job is not None else None
        staged = any(self.settings.layout.staging(node.tree, node.module).glob("*"))
        if state == "active" or (state == "Complete" and staged):
            self.report(f"adopting {state} Job {job.metadata.name}")
            return job.status.start_time.timestamp() if job.status and job.status.start_time else time.time()
        if state is not None:
            self.batch.delete_namespaced_job(name, self.ns, propagation_policy="Background")
        clear_leftovers(self.settings.layout, node, inv)  # no pod of this node runs now
        self._make_outputs(node, inv)
        for _ in range(30):
            try:
                self.batch.create_namespaced_job(self.ns, body)
                return time.time()
            except ApiException as err:
                if err.status != 409:
                    raise
                time.sleep(1)  # the deleted Job is still being removed
        raise RunFailed(f"Job {self.ns}/{name} still exists after it was deleted")

    def _make_outputs(self, node: Node, inv: Invocation) -> None:
        """The build pod's writable subPath mounts, made here: a kubelet would make a missing one as
        root, which the pod's user cannot write, and the read-only root mount could not hold its mount point."""
        uid = self.settings.kubernetes.user
        for path in outputs(self.settings.layout, node, inv):
            path.mkdir(mode=0o755, parents=True)
            if os.geteuid() == 0:  # a runner on a workstation, as root; in the cluster it is the pods' user
                os.chown(path, uid, uid)

    def _wait_finished(self, timeout: float | None) -> list[tuple[str, object]]:
        """Block until at least one running Job is finished or ``timeout`` passed; a watch wakes us, a
        relist catches what a broken watch missed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            jobs = self.batch.list_namespaced_job(self.ns, label_selector=objects.SELECTOR).items
            self.existing = {j.metadata.name: j for j in jobs if j.metadata.name in self.existing}
            done = [(j.metadata.name, j) for j in jobs if j.metadata.name in self.running and job_state(j) != "active"]
            gone = [n for n in self.running if n not in {j.metadata.name for j in jobs}]
            if gone:
                raise RunFailed(f"Job {self.ns}/{gone[0]} was deleted while it ran")
            left = None if deadline is None else deadline - time.monotonic()
            if done or (left is not None and left <= 0):
                return done
            poll = self.settings.kubernetes.poll_seconds
            poll = poll if left is None else min(poll, left)
            try:
                for event in watch.Watch().stream(self.batch.list_namespaced_job, self.ns,
                                                  label_selector=objects.SELECTOR,
                                                  timeout_seconds=max(1, int(poll)), _request_timeout=poll):
                    job = event["object"]
                    if job.metadata.name in self.running and job_state(job) != "active":
                        break
            except (HTTPError, ApiException):
                time.sleep(min(poll, 1.0))

    def _last_pod(self, name: str):
        """The Job's newest pod, or None; the label is checked here too, as the selector does not
        reach every API server (proxies and emulators drop it), and another Job's log must never
        land in this node's record."""
        label = "batch.kubernetes.io/job-name"
        pods = [p for p in self.core.list_namespaced_pod(self.ns, label_selector=f"{label}={name}").items
                if (p.metadata.labels or {}).get(label) == name]
        pods.sort(key=lambda p: p.metadata.creation_timestamp.timestamp() if p.metadata.creation_timestamp else 0.0)
        return pods[-1] if pods else None

    @staticmethod
    def _terminated(pod):
        """The build container's terminated state (exit code, reason, message); None with no pod left to
        ask (deadline exceeded, or garbage collected)."""
        for status in (pod.status.container_statuses or []) if pod is not None and pod.status else []:
            if status.name == objects.CONTAINER and status.state and status.state.terminated:
                return status.state.terminated
        return None

    def _copy_log(self, name: str, pod, log: Path) -> None:
        """The pod goes away with the Job's TTL; its log stays in the build record on the volume."""
        log.parent.mkdir(parents=True, exist_ok=True)
        if pod is None:
            log.write_text(f"Job {self.ns}/{name}: no pod left to read the log of\n")
            return
        try:
            text = self.core.read_namespaced_pod_log(pod.metadata.name, self.ns, container=objects.CONTAINER)
        except ApiException as err:
            text = f"Job {self.ns}/{name}: the log of pod {pod.metadata.name} could not be read: HTTP {err.status}\n"
        log.write_text(text if isinstance(text, str) else str(text))
