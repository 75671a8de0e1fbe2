"""A run's Kubernetes objects as plain dicts: pure functions of one plan node and the Settings.

``modlib render`` writes them, the kubernetes executor sends them unchanged, and the tests check
them as data against the upstream schemas. A Job's name is a hash of its node alone (tree,
module, easyconfig content, command), so it stays the same however the plan around it changes:
a rerun finds the Jobs it already created, and the API refuses a duplicate.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from datetime import UTC, datetime
from pathlib import Path

from builder import ebadapter
from builder.execute.command import Invocation, outputs
from builder.execute.executors import Usage
from builder.execute.inputs import pod_env
from builder.plan.graph import Node
from builder.read.config import Settings, quantity, quantity_value
from builder.read.k8s_overrides import BUILD_CONTAINER, CONTAINER_ISOLATION, POD_ISOLATION, merged

PREFIX = "modlib.io"
CONTAINER = BUILD_CONTAINER
LEASE = "modlib-run"
#: every object modlib creates carries this, and lists ask for it
MANAGED = {"app.kubernetes.io/managed-by": "modlib", "app.kubernetes.io/part-of": "modlib"}
SELECTOR = "app.kubernetes.io/managed-by=modlib,app.kubernetes.io/component=build"


def label_value(text: str) -> str:
    """A label value (at most 63 characters of [A-Za-z0-9-_.], alphanumeric at both ends)."""
    value = re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:63]
    return value.strip("-_.")


def job_name(node: Node, inv: Invocation) -> str:
    """What the build is given is part of the name: an out-of-memory retry with more memory is a new Job."""
    ident = json.dumps([node.tree, node.module, node.sha256, inv.argv, inv.env, inv.memory_bytes])
    digest = hashlib.sha256(ident.encode()).hexdigest()[:10]
    readable = re.sub(r"[^a-z0-9]+", "-", f"{node.tree}-{node.module}".lower())[:52].strip("-")
    return f"{readable}-{digest}"


def labels(node: Node) -> dict[str, str]:
    return {"app.kubernetes.io/name": "modlib", "app.kubernetes.io/component": "build", **MANAGED,
            f"{PREFIX}/target": node.target, f"{PREFIX}/tree": node.tree,
            f"{PREFIX}/module": label_value(node.module)}


def _resources(settings: Settings, node: Node, inv: Invocation) -> dict:
    """The build's Request (execute/resources.py), memory and cores each as request and limit alike: a
    build that outgrows its memory is killed and retried with more, never starves its node's neighbours;
    eb --parallel runs as many compilers as it has cores; and a pod whose requests are its limits is
    Guaranteed, the last a node under pressure evicts. What the site pinned in
    ``targets.X.kubernetes.resources`` wins: a pinned limit below the computed request lowers the request, a
    pinned request above the computed limit raises the limit."""
    placement = settings.targets[node.target].kubernetes
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    if inv.memory_bytes:
        requests["memory"] = limits["memory"] = quantity(inv.memory_bytes)
    if inv.cpus:
        requests["cpu"] = limits["cpu"] = str(inv.cpus)
    pinned_requests, pinned_limits = dict(placement.requests), dict(placement.limits)
    requests.update(pinned_requests)
    limits.update(pinned_limits)
    for kind in requests.keys() & limits.keys():  # a request above its limit is invalid: the computed one yields
        if quantity_value(requests[kind]) > quantity_value(limits[kind]):
            if kind not in pinned_requests:
                requests[kind] = limits[kind]
            elif kind not in pinned_limits:
                limits[kind] = requests[kind]
    if placement.gpus:
        limits["nvidia.com/gpu"] = str(placement.gpus)  # extended resources: limits only
    return {"requests": requests, "limits": limits}


#: The build container's entry: ``eb`` runs as the child of a shell that, when the kubelet stops the pod
#: (SIGTERM to the container's first process), passes the signal to the whole build (EasyBuild removes
#: its locks, the step's commands end), waits for EasyBuild and exits 128+15. EasyBuild itself would exit
#: 15, its code for a failed configure step, so a pod deleted by hand (no DisruptionTarget condition)
#: would fail its Job for good; no EasyBuild exit code is above 127. At its end the shell reads what the
#: container's cgroup measured (v2: memory.peak, memory.events, cpu.stat; v1: the memory and cpuacct
#: controllers' files) and leaves it as the container's termination message, which the runner reads from
#: the pod's status (``usage_of``): numbers only, anything else is written as null.
ENTRY_SCRIPT = r"""num() { v=$(cat "$1" 2>/dev/null); case $v in ''|*[!0-9]*) echo null ;; *) echo "$v" ;; esac; }
key() {
  v=null
  [ -r "$1" ] && while read -r k n; do [ "$k" = "$2" ] && case $n in ''|*[!0-9]*) ;; *) v=$n ;; esac; done < "$1"
  echo "$v"
}
usage() {
  c=/sys/fs/cgroup
  if [ -r $c/memory.events ]; then
    set -- 2 "$(num $c/memory.peak)" "$(key $c/memory.events oom_kill)" "$(key $c/cpu.stat usage_usec)"
  else
    ns=$(num $c/cpuacct/cpuacct.usage)
    [ "$ns" = null ] || [ ${#ns} -gt 18 ] && ns=null || ns=$((ns / 1000))
    set -- 1 "$(num $c/memory/memory.max_usage_in_bytes)" "$(key $c/memory/memory.oom_control oom_kill)" "$ns"
  fi
  printf '{"cgroup": %s, "peak": %s, "oom_kills": %s, "cpu_usec": %s}\n' "$@" > /dev/termination-log 2>/dev/null
}
trap 'trap "" TERM; kill -TERM 0; wait "$pid"; usage; exit 143' TERM
"$@" & pid=$!
wait "$pid"
code=$?
usage
exit $code
"""
ENTRY = ["/bin/sh", "-c", ENTRY_SCRIPT, "modlib-build"]
#: Where the kubelet takes the container's termination message from, and the most of it read (the kubelet
#: keeps 4096 bytes; the entry writes under 100).
TERMINATION_LOG, MESSAGE_BYTES = "/dev/termination-log", 4096
_MEASURED = ("peak", "oom_kills", "cpu_usec")


def usage_of(message: object, reason: object) -> Usage | None:
    """What a build pod used, from its container's termination message and the kubelet's reason. Hostile
    data: the build runs in the same container and can write the file itself, so every figure is checked
    (a whole number within range, or left unknown); a build that misstates its own use only moves its own
    next request, which the target's bounds cap. Without a message, the reason ``OOMKilled`` is one kill:
    the kernel stopped the whole container, the entry shell with it (cgroup v2's memory.oom.group)."""
    data = _message(message)
    oom_killed = reason == "OOMKilled"
    if data is None:
        return Usage(None, None, 1, "kubelet") if oom_killed else None
    kills, cpu = data["oom_kills"], data["cpu_usec"]
    return Usage(peak_memory_bytes=data["peak"], cpu_seconds=None if cpu is None else cpu / 1e6,
                 oom_kills=max(kills or 0, 1) if oom_killed else kills, measured_by=f"cgroup v{data['cgroup']}")


def _message(text: object) -> dict | None:
    """The entry's message as {cgroup, peak, oom_kills, cpu_usec}, or None when it is not one."""
    if not isinstance(text, str) or len(text) > MESSAGE_BYTES:
        return None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or data.get("cgroup") not in (1, 2) or type(data["cgroup"]) is not int:
        return None
    counts = {key: data.get(key) for key in _MEASURED}
    return {"cgroup": data["cgroup"],
            **{key: v if type(v) is int and 0 <= v < 1 << 62 else None for key, v in counts.items()}}


def _container(settings: Settings, node: Node, inv: Invocation, inputs: Path) -> dict:
    """The build container, with the library's and then the target's container_overrides laid over it."""
    cluster = settings.kubernetes
    env = {**pod_env(settings, inputs), **dict(inv.env)}
    container = {
        "name": CONTAINER, "image": cluster.image, "imagePullPolicy": cluster.image_pull_policy,
        "command": [*ENTRY, *inv.argv], "workingDir": cluster.scratch_path,
        "env": [{"name": k, "value": v} for k, v in sorted(env.items())],
        "resources": _resources(settings, node, inv),
        "terminationMessagePath": TERMINATION_LOG, "terminationMessagePolicy": "File",  # never the log's tail
        "securityContext": {**copy.deepcopy(CONTAINER_ISOLATION),
                            "runAsUser": cluster.user, "runAsGroup": cluster.user},
        "volumeMounts": [*library_mounts(settings, node, inv), {"name": "scratch", "mountPath": cluster.scratch_path}],
    }
    placement = settings.targets[node.target].kubernetes
    return merged(merged(container, cluster.container_overrides), placement.container_overrides)


def library_mounts(settings: Settings, node: Node, inv: Invocation) -> list[dict]:
    """The claim read-only at the library root, and writable only where this build writes: its prefix
    and its staging folder (subPath mounts of the same claim, made by the runner before the Job), so a
    build step cannot change the store, the live view, another install, the sources or the records."""
    root = settings.root
    writable = [{"name": "library", "mountPath": str(path), "subPath": str(path.relative_to(root))}
                for path in outputs(settings.layout, node, inv)]
    return [{"name": "library", "mountPath": str(root), "readOnly": True}, *writable]


def _pod_spec(settings: Settings, node: Node, inv: Invocation, inputs: Path) -> dict:
    cluster = settings.kubernetes
    placement = settings.targets[node.target].kubernetes
    spec = {
        "restartPolicy": "Never", "serviceAccountName": cluster.service_account,
        **POD_ISOLATION,  # builds need no API access
        "terminationGracePeriodSeconds": 60,  # EasyBuild removes its install lock on SIGTERM
        "securityContext": {"runAsNonRoot": True, "runAsUser": cluster.user, "runAsGroup": cluster.user,
                            "fsGroup": cluster.user, "fsGroupChangePolicy": "OnRootMismatch",
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [_container(settings, node, inv, inputs)],
        "volumes": [{"name": "library", "persistentVolumeClaim": {"claimName": cluster.claim}},
                    {"name": "scratch", "emptyDir": {"sizeLimit": cluster.scratch_size}}],
    }
    if placement.node_selector:
        spec["nodeSelector"] = dict(placement.node_selector)
    if placement.tolerations:
        spec["tolerations"] = [dict(t) for t in placement.tolerations]
    return merged(merged(spec, cluster.pod_overrides), placement.pod_overrides)


#: A container the kernel killed whole (an OOM kill under cgroup v2's memory.oom.group; SIGKILL past the
#: grace period): its Job fails at once, and the run retries an OOM kill as a new Job with more memory.
KILLED = 137


def failure_policy() -> dict:
    """The Job controller takes the first rule that matches, so the order is the policy. A disruption
    (eviction, drain, preemption, node loss: condition DisruptionTarget) comes first and is retried
    without counting against backoffLimit, whatever the build exited with (EasyBuild answers SIGTERM
    with 15, its code for a failed configure step). Then EasyBuild's permanent exit codes and a container
    killed whole (137: another pod with the same memory would be killed again) fail the Job at once;
    anything else (a pod deleted by hand's 143, a failed download) counts."""
    return {"rules": [
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        {"action": "FailJob", "onExitCodes": {"containerName": CONTAINER, "operator": "In",
                                              "values": sorted({*ebadapter.permanent_exit_codes(), KILLED})}},
    ]}


def build_job(settings: Settings, node: Node, inv: Invocation, inputs: Path) -> dict:
    """The node's Job, exactly as ``render`` writes it and the executor posts it: a pure function, so
    the tests check the object against the upstream schemas and the emulated run compares bytes."""
    cluster = settings.kubernetes
    node_labels = labels(node)
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": job_name(node, inv), "namespace": cluster.namespace, "labels": node_labels,
                     "annotations": {f"{PREFIX}/module": node.module, f"{PREFIX}/easyconfig": node.easyconfig.name,
                                     f"{PREFIX}/sha256": node.sha256}},
        "spec": {
            "backoffLimit": cluster.backoff_limit,
            "activeDeadlineSeconds": cluster.active_deadline_seconds,
            "ttlSecondsAfterFinished": cluster.ttl_seconds_after_finished,
            "podReplacementPolicy": "Failed",  # never two pods of one build on the volume at once
            "podFailurePolicy": failure_policy(),
            "template": {"metadata": {"labels": dict(node_labels)}, "spec": _pod_spec(settings, node, inv, inputs)},
        },
    }


def micro_time(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lease(settings: Settings, holder: str, duration: int, now: float) -> dict:
    """The run lock as a coordination.k8s.io Lease: visible with kubectl, renewed while a run lives."""
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": LEASE, "namespace": settings.kubernetes.namespace,
                         "labels": {"app.kubernetes.io/name": "modlib", "app.kubernetes.io/component": "runner",
                                    **MANAGED}},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": duration,
                     "acquireTime": micro_time(now), "renewTime": micro_time(now)}}
