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
from builder.execute.inputs import pod_env
from builder.plan.graph import Node
from builder.read.config import Settings
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
    ident = json.dumps([node.tree, node.module, node.sha256, inv.argv, inv.env])
    digest = hashlib.sha256(ident.encode()).hexdigest()[:10]
    readable = re.sub(r"[^a-z0-9]+", "-", f"{node.tree}-{node.module}".lower())[:52].strip("-")
    return f"{readable}-{digest}"


def labels(node: Node) -> dict[str, str]:
    return {"app.kubernetes.io/name": "modlib", "app.kubernetes.io/component": "build", **MANAGED,
            f"{PREFIX}/target": node.target, f"{PREFIX}/tree": node.tree,
            f"{PREFIX}/module": label_value(node.module)}


def _resources(settings: Settings, node: Node) -> dict:
    placement = settings.targets[node.target].kubernetes
    limits = dict(placement.limits)
    if placement.gpus:
        limits["nvidia.com/gpu"] = str(placement.gpus)  # extended resources: limits only
    return {"requests": dict(placement.requests), "limits": limits}


#: The build container's entry: ``eb`` runs as the child of a shell that, when the kubelet stops the pod
#: (SIGTERM to the container's first process), passes the signal to the whole build (EasyBuild removes
#: its locks, the step's commands end), waits for EasyBuild and exits 128+15. EasyBuild itself would exit
#: 15, its code for a failed configure step, so a pod deleted by hand (no DisruptionTarget condition)
#: would fail its Job for good; no EasyBuild exit code is above 127.
ENTRY = ["/bin/sh", "-c",
         'trap \'trap "" TERM; kill -TERM 0; wait "$pid"; exit 143\' TERM; "$@" & pid=$!; wait "$pid"', "modlib-build"]


def _container(settings: Settings, node: Node, inv: Invocation, inputs: Path) -> dict:
    """The build container, with the library's and then the target's container_overrides laid over it."""
    cluster = settings.kubernetes
    env = {**pod_env(settings, inputs), **dict(inv.env)}
    container = {
        "name": CONTAINER, "image": cluster.image, "imagePullPolicy": cluster.image_pull_policy,
        "command": [*ENTRY, *inv.argv], "workingDir": cluster.scratch_path,
        "env": [{"name": k, "value": v} for k, v in sorted(env.items())],
        "resources": _resources(settings, node),
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


def failure_policy() -> dict:
    """The Job controller takes the first rule that matches, so the order is the policy. A disruption
    (eviction, drain, preemption, node loss: condition DisruptionTarget) comes first and is retried
    without counting against backoffLimit, whatever the build exited with (EasyBuild answers SIGTERM
    with 15, its code for a failed configure step). Then EasyBuild's permanent exit codes fail the Job
    at once; anything else (an OOM kill's 137, a pod deleted by hand's 143, a failed download) counts."""
    return {"rules": [
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        {"action": "FailJob", "onExitCodes": {"containerName": CONTAINER, "operator": "In",
                                              "values": ebadapter.permanent_exit_codes()}},
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
