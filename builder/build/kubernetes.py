"""The cluster executor: one Job per node, created when its dependencies' Jobs succeeded.

The runner holds a Lease while it drives the Jobs. It is restart-safe because a Job's name is a
hash of its node: a rerun lists the Jobs already there and adopts the running and finished ones
instead of creating duplicates; only failed Jobs (and finished ones whose output is gone) are
created again. Pods reach nothing but the volume, so every source is fetched before (runner.py).
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.progress import Progress

from builder.build import k8s_objects as objects
from builder.build.command import Invocation, clear_leftovers, staging_dir
from builder.build.executors import NodeRun
from builder.build.inputs import stage_inputs
from builder.build.lock import holder_gone
from builder.errors import EXIT_LOCKED, ModlibError, bad_input
from builder.plan.graph import Node
from builder.plan.schedule import Scheduler
from builder.read.config import Settings

try:
    from kubernetes import client, config, watch
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError
except ImportError:  # pragma: no cover - reported when the executor is chosen
    raise ModlibError("--executor kubernetes needs the kubernetes client: pip install 'modlib[kubernetes]'") from None

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
        raise bad_input(kubeconfig or "kubeconfig", f"cannot load the cluster configuration: {err}") from None


def _api_error(err: Exception) -> ModlibError:
    reason = f"HTTP {err.status} {err.reason}" if isinstance(err, ApiException) else str(err)
    return ModlibError(f"Kubernetes API: {reason}")


class LeaseLock:
    """The run lock as a Lease: taken over only when its holder is gone (stale or dead here)."""

    def __init__(self, settings: Settings, api: client.ApiClient):
        self.settings, self.leases = settings, client.CoordinationV1Api(api)
        self.ns = settings.cluster.namespace
        self.identity = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, daemon=True)

    def _holder(self, lease) -> dict:
        host, _, rest = (lease.spec.holder_identity or "").partition(":")
        renewed = lease.spec.renew_time.timestamp() if lease.spec.renew_time else 0.0
        return {"host": host, "pid": rest.partition(":")[0] or 0, "heartbeat": renewed}

    def __enter__(self) -> LeaseLock:
        body = objects.lease(self.settings, self.identity, LEASE_SECONDS, time.time())
        try:
            self.leases.create_namespaced_lease(self.ns, body)
        except ApiException as err:
            if err.status != 409:
                raise _api_error(err) from None
            current = self.leases.read_namespaced_lease(objects.LEASE, self.ns)
            if not holder_gone(self._holder(current), time.time(), LEASE_SECONDS):
                raise ModlibError(f"another run holds Lease {self.ns}/{objects.LEASE} "
                                  f"({current.spec.holder_identity})", EXIT_LOCKED) from None
            body["metadata"]["resourceVersion"] = current.metadata.resource_version
            self.leases.replace_namespaced_lease(objects.LEASE, self.ns, body)  # 409: someone was faster
        self._thread.start()
        return self

    def _renew(self) -> None:
        while not self._stop.wait(LEASE_SECONDS / 4):
            try:
                lease = self.leases.read_namespaced_lease(objects.LEASE, self.ns)
                lease.spec.renew_time = objects.micro_time(time.time())
                self.leases.replace_namespaced_lease(objects.LEASE, self.ns, lease)
            except (ApiException, HTTPError):
                pass  # a blip: the next renewal tries again well within the lease's duration

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        try:
            self.leases.delete_namespaced_lease(objects.LEASE, self.ns)
        except ApiException:
            pass


def job_state(job) -> str:
    """'Complete', 'Failed' or 'active' from the Job controller's conditions."""
    for cond in (job.status.conditions if job.status else None) or []:
        if cond.type in ("Complete", "Failed") and cond.status == "True":
            return cond.type
    return "active"


class KubernetesExecutor:
    def __init__(self, settings: Settings, jobs: int, api: client.ApiClient):
        self.settings, self.jobs, self.api = settings, max(1, jobs), api
        self.batch, self.core = client.BatchV1Api(api), client.CoreV1Api(api)
        self.ns = settings.cluster.namespace
        self.console = Console(stderr=True)

    @classmethod
    def from_settings(cls, settings: Settings, jobs: int, scratch: Path) -> KubernetesExecutor:
        return cls(settings, jobs, connect(settings.cluster.kubeconfig))

    def run(self, scheduler: Scheduler, invocation: Callable[[Node], Invocation],
            started: Callable[[Node], str], finished: Callable[[Node, NodeRun], bool]) -> None:
        inputs = stage_inputs(self.settings)
        try:
            with LeaseLock(self.settings, self.api), Progress(console=self.console, transient=True) as progress:
                self._drive(scheduler, invocation, started, finished, inputs, progress)
        except (ApiException, HTTPError) as err:
            raise _api_error(err) from None

    def _drive(self, scheduler, invocation, started, finished, inputs: Path, progress: Progress) -> None:
        existing = {j.metadata.name: j for j in self.batch.list_namespaced_job(
            self.ns, label_selector=objects.SELECTOR).items}
        task = progress.add_task("Jobs", total=scheduler.total)
        running: dict[str, tuple[Node, str, float]] = {}
        while not scheduler.done():
            for node in scheduler.ready()[: self.jobs - len(running)]:
                scheduler.start(node.key)
                body = objects.build_job(self.settings, node, invocation(node), inputs)
                log = started(node)
                running[body["metadata"]["name"]] = (node, log, self._submit(body, existing.pop(
                    body["metadata"]["name"], None), node))
            progress.update(task, description=f"Jobs: {len(running)} running")
            for name, job in self._wait_finished(running):
                node, log, start = running.pop(name)
                code = 0 if job_state(job) == "Complete" else self._exit_code(name)
                self._copy_log(name, Path(log))
                scheduler.finish(node.key, finished(node, NodeRun(code, start, time.time(), log)))
                progress.advance(task)

    def _submit(self, body: dict, job, node: Node) -> float:
        """Adopt the node's Job where it can still give its module; else (re)create it."""
        name = body["metadata"]["name"]
        state = job_state(job) if job is not None else None
        if state == "active" or (state == "Complete" and any(staging_dir(self.settings.root, node).glob("*"))):
            self.console.print(f"adopting {state} Job {name}", markup=False, highlight=False)
            return job.status.start_time.timestamp() if job.status and job.status.start_time else time.time()
        if state is not None:
            self.batch.delete_namespaced_job(name, self.ns, propagation_policy="Background")
        clear_leftovers(self.settings.root, node)  # no pod of this node runs now
        for _ in range(30):
            try:
                self.batch.create_namespaced_job(self.ns, body)
                return time.time()
            except ApiException as err:
                if err.status != 409:
                    raise
                time.sleep(1)  # the deleted Job is still being removed
        raise ModlibError(f"Job {self.ns}/{name} still exists after it was deleted")

    def _wait_finished(self, running: dict) -> list[tuple[str, object]]:
        """Block until at least one running Job is finished; a watch wakes us, a relist catches
        what a broken watch missed."""
        while True:
            jobs = self.batch.list_namespaced_job(self.ns, label_selector=objects.SELECTOR).items
            done = [(j.metadata.name, j) for j in jobs if j.metadata.name in running and job_state(j) != "active"]
            gone = [n for n in running if n not in {j.metadata.name for j in jobs}]
            if gone:
                raise ModlibError(f"Job {self.ns}/{gone[0]} was deleted while it ran")
            if done:
                return done
            poll = self.settings.cluster.poll_seconds
            try:
                for event in watch.Watch().stream(self.batch.list_namespaced_job, self.ns,
                                                  label_selector=objects.SELECTOR,
                                                  timeout_seconds=max(1, int(poll)), _request_timeout=poll):
                    job = event["object"]
                    if job.metadata.name in running and job_state(job) != "active":
                        break
            except (HTTPError, ApiException):
                time.sleep(min(poll, 1.0))

    def _pods(self, name: str) -> list:
        """The Job's pods, oldest first; the label is checked here too, as the selector does not
        reach every API server (proxies and emulators drop it), and another Job's log must never
        land in this node's record."""
        label = "batch.kubernetes.io/job-name"
        pods = [p for p in self.core.list_namespaced_pod(self.ns, label_selector=f"{label}={name}").items
                if (p.metadata.labels or {}).get(label) == name]
        return sorted(pods, key=lambda p: p.metadata.creation_timestamp.timestamp()
                      if p.metadata.creation_timestamp else 0.0)

    def _exit_code(self, name: str) -> int:
        for pod in reversed(self._pods(name)):
            for status in (pod.status.container_statuses or []) if pod.status else []:
                if status.state and status.state.terminated:
                    return status.state.terminated.exit_code or 1
        return 1  # no pod left to ask (deadline exceeded, or garbage collected)

    def _copy_log(self, name: str, log: Path) -> None:
        """The pod goes away with the Job's TTL; its log stays in the build record on the volume."""
        pods = self._pods(name)
        log.parent.mkdir(parents=True, exist_ok=True)
        if not pods:
            log.write_text(f"Job {self.ns}/{name}: no pod left to read the log of\n")
            return
        pod = pods[-1].metadata.name
        try:
            text = self.core.read_namespaced_pod_log(pod, self.ns, container=objects.CONTAINER)
        except ApiException as err:
            text = f"Job {self.ns}/{name}: the log of pod {pod} could not be read: HTTP {err.status}\n"
        log.write_text(text if isinstance(text, str) else str(text))
