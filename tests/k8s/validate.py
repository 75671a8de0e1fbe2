"""Offline checks for Kubernetes manifests, shared by the k8s tests.

No API server can run here, so a manifest is judged by three independent means: the upstream
OpenAPI-derived schemas (strict: unknown fields are errors), the rules the API server enforces
but the schemas cannot express (names, labels, Job restart policy, quantities, Pod Security
"restricted", cron syntax), and checkov with the project's configuration (k8s-jobs/.checkov.yaml).

Helpers:
    schema_errors(doc, version) -> list[str]
    semantic_problems(doc) -> list[str]
    pod_templates(doc) -> list[tuple[str, dict]]
    kustomize(path) -> list[dict]
    write_manifests(docs, directory, name="manifests.yaml") -> Path
    run_checkov(directory, with_base=True) -> subprocess.CompletedProcess
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml
from kubernetes_validate.utils import all_versions, major_minor, schema_contents
from referencing import Registry, Resource

REPO = Path(__file__).resolve().parents[2]
K8S_JOBS = REPO / "k8s-jobs"
CHECKOV_CONFIG = K8S_JOBS / ".checkov.yaml"

#: Oldest and newest minor the manifests must be valid for (recursiveReadOnly needs 1.30).
K8S_VERSIONS = ("1.30", "1.34")

# --- schemas -----------------------------------------------------------------------------------


class UnknownKind(kubernetes_validate.SchemaNotFoundError):
    """No bundled schema for this apiVersion/kind (a CRD or a typo); str() says which."""

    def __str__(self) -> str:
        return self.message


@functools.cache
def _validator(api_version: str, kind: str, version: str) -> jsonschema.protocols.Validator:
    """One compiled strict validator per (apiVersion, kind, minor): loading a schema costs ~50 ms."""
    bundled = [v for v in all_versions() if _minor_key(major_minor(v)) <= _minor_key(version)]
    if not bundled or _minor_key(version) > _minor_key(major_minor(all_versions()[-1])):
        raise kubernetes_validate.VersionNotSupportedError(version)
    bundled = bundled[-1]
    folder = f"kubernetes-json-schema/v{bundled}-local-strict"
    group = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)  # rbac.authorization.k8s.io/v1 -> rbac-v1
    try:
        schema = schema_contents(f"{folder}/{kind.lower()}-{group}.json", version)
    except FileNotFoundError:
        raise UnknownKind(kind=kind, version=version, api_version=api_version) from None
    definitions = schema_contents(f"{folder}/_definitions.json", version)
    registry = Resource.from_contents(definitions) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.Draft202012Validator(schema, registry=registry)


def _minor_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def schema_errors(doc: dict, version: str) -> list[str]:
    """Every schema error, not just the first that kubernetes_validate.validate reports.

    An unknown kind (a CRD, a typo in apiVersion) raises UnknownKind: the command-line tool
    only warns and passes, which would let a misspelt manifest through.
    """
    validator = _validator(doc.get("apiVersion", ""), doc.get("kind", ""), version)
    errors = sorted(validator.iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path])
    return [f"{_where(doc)} {'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors]


def _where(doc: dict) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name') or doc.get('metadata', {}).get('generateName')}"


# --- what the schemas cannot see -------------------------------------------------------------

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
QUANTITY = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|[KMGTPE]i|[mkMGTPE])?$")
#: Longest name per kind: a Job's name becomes its pods' job-name label (63); the CronJob
#: controller appends an 11-character suffix to make Job names (52).
MAX_NAME = {"Job": 63, "CronJob": 52, "Namespace": 63, "Service": 63}
LABEL_NAMED_KINDS = {"Job", "CronJob", "Namespace", "Service"}
PSS_VOLUME_TYPES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                    "projected", "secret"}
CRON_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
CRON_NAMES: tuple[dict[str, int], ...] = ({}, {}, {}, {m: i + 1 for i, m in enumerate(
    "jan feb mar apr may jun jul aug sep oct nov dec".split())},
    {d: i for i, d in enumerate("sun mon tue wed thu fri sat".split())})
CRON_MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}


def semantic_problems(doc: dict, level: str = "restricted") -> list[str]:
    """What the API server (or admission) would refuse although the schema accepts it; ``level``: the Pod
    Security level the namespace enforces (k8s-jobs/volume-init's is "baseline")."""
    where = _where(doc)
    problems = _name_problems(doc) + _label_problems(doc.get("metadata", {}), "metadata")
    if doc.get("kind") == "CronJob":
        problems += _cron_problems(doc.get("spec", {}))
    for path, template in pod_templates(doc):
        problems += _label_problems(template.get("metadata", {}), f"{path}.metadata")
        problems += _pod_problems(template.get("spec", {}), path, doc.get("kind") in ("Job", "CronJob"), level)
    return [f"{where} {p}" for p in problems]


def pod_templates(doc: dict) -> list[tuple[str, dict]]:
    """(path, {metadata, spec}) of every pod an object makes: a Pod itself, a Job's or a CronJob's template."""
    kind, spec = doc.get("kind"), doc.get("spec", {})
    if kind == "Pod":
        return [("<pod>", {"metadata": doc.get("metadata", {}), "spec": spec})]
    if kind == "CronJob":
        return [("spec.jobTemplate.spec.template", spec.get("jobTemplate", {}).get("spec", {}).get("template", {}))]
    if "template" in spec and kind in ("Job", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"):
        return [("spec.template", spec["template"])]
    return []


def _name_problems(doc: dict) -> list[str]:
    meta = doc.get("metadata", {})
    kind, name = doc.get("kind"), meta.get("name")
    if name is None:
        # generateName: the server appends 5 characters to the prefix
        prefix = meta.get("generateName", "")
        name = prefix + "x" * 5 if prefix else None
    if not name:
        return ["metadata.name: missing"]
    problems = []
    pattern = DNS_LABEL if kind in LABEL_NAMED_KINDS else DNS_SUBDOMAIN
    if not pattern.match(name):
        problems.append(f"metadata.name {name!r}: not a DNS-1123 {'label' if pattern is DNS_LABEL else 'subdomain'}")
    limit = MAX_NAME.get(kind or "", 253)
    if len(name) > limit:
        problems.append(f"metadata.name {name!r}: {len(name)} characters, at most {limit} for a {kind}")
    return problems


def _label_problems(meta: dict, path: str) -> list[str]:
    problems = []
    for key, value in (meta.get("labels") or {}).items():
        prefix, _, name = key.rpartition("/")
        if (prefix and (len(prefix) > 253 or not DNS_SUBDOMAIN.match(prefix))) or len(name) > 63 \
                or not LABEL_NAME.match(name):
            problems.append(f"{path}.labels: invalid key {key!r}")
        if not isinstance(value, str):
            problems.append(f"{path}.labels[{key}]: value {value!r} is not a string")
        elif value and (len(value) > 63 or not LABEL_NAME.match(value)):
            problems.append(f"{path}.labels[{key}]: invalid value {value!r} (at most 63 of [A-Za-z0-9-_.])")
    return problems


def _pod_problems(spec: dict, path: str, is_job: bool, level: str) -> list[str]:
    problems = []
    if is_job and spec.get("restartPolicy") not in ("Never", "OnFailure"):
        problems.append(f"{path}.spec.restartPolicy: a Job's pods need Never or OnFailure, "
                        f"not {spec.get('restartPolicy')!r}")
    check = {"restricted": _restricted_problems, "baseline": _baseline_problems}[level]
    problems += check(spec, f"{path}.spec")
    for kind in ("initContainers", "containers"):
        for i, container in enumerate(spec.get(kind, [])):
            problems += _resource_problems(container.get("resources", {}), f"{path}.spec.{kind}[{i}].resources")
    return problems


def _resource_problems(resources: dict, path: str) -> list[str]:
    """Quantities as strings (the official client refuses numbers), GPUs whole and requests == limits."""
    problems = []
    for part in ("requests", "limits"):
        for name, value in (resources.get(part) or {}).items():
            if not isinstance(value, str):
                problems.append(f"{path}.{part}[{name}]: quantity {value!r} is not a string")
            elif not QUANTITY.match(value):
                problems.append(f"{path}.{part}[{name}]: {value!r} is not a quantity")
    for name, value in (resources.get("limits") or {}).items():
        if "gpu" not in name:
            continue
        if not (isinstance(value, str) and value.isdigit()):
            problems.append(f"{path}.limits[{name}]: a GPU count must be a whole number, not {value!r}")
        requested = (resources.get("requests") or {}).get(name, value)
        if requested != value:
            problems.append(f"{path}.requests[{name}]: {requested!r} differs from the limit {value!r}")
    for name in (resources.get("requests") or {}):
        if "gpu" in name and name not in (resources.get("limits") or {}):
            problems.append(f"{path}.limits[{name}]: GPUs must be set in limits")
    return problems


def _restricted_problems(spec: dict, path: str) -> list[str]:
    """Pod Security Standard "restricted", plus the project's read-only root file system."""
    problems = [f"{path}.{key}: not allowed" for key in ("hostNetwork", "hostPID", "hostIPC") if spec.get(key)]
    pod_sc = spec.get("securityContext") or {}
    if pod_sc.get("runAsUser") == 0:
        problems.append(f"{path}.securityContext.runAsUser: 0 (root)")
    for volume in spec.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= PSS_VOLUME_TYPES:
            problems.append(f"{path}.volumes[{volume.get('name')}]: {sorted(kinds - PSS_VOLUME_TYPES)} not allowed")
    for kind in ("initContainers", "containers"):
        for i, container in enumerate(spec.get(kind, [])):
            problems += _container_restricted(container, pod_sc, f"{path}.{kind}[{i}]")
    return problems


#: What Pod Security "baseline" lets a container add to the runtime's default capabilities.
BASELINE_CAPABILITIES = {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
                         "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}


def _baseline_problems(spec: dict, path: str) -> list[str]:
    """Pod Security Standard "baseline": no host namespaces, ports or paths, nothing privileged, no added
    capability beyond the default set; plus the project's read-only root file system and no escalation."""
    problems = [f"{path}.{key}: not allowed" for key in ("hostNetwork", "hostPID", "hostIPC") if spec.get(key)]
    problems += [f"{path}.volumes[{v.get('name')}]: hostPath not allowed" for v in spec.get("volumes", [])
                 if "hostPath" in v]
    for kind in ("initContainers", "containers"):
        for i, container in enumerate(spec.get(kind, [])):
            sc, where = container.get("securityContext") or {}, f"{path}.{kind}[{i}]"
            if sc.get("privileged"):
                problems.append(f"{where}.securityContext.privileged: not allowed")
            if set((sc.get("capabilities") or {}).get("add") or []) - BASELINE_CAPABILITIES:
                problems.append(f"{where}.securityContext.capabilities.add: beyond baseline's default set")
            if sc.get("allowPrivilegeEscalation") is not False or sc.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{where}.securityContext: allowPrivilegeEscalation false and readOnlyRootFilesystem "
                                "true (project rule)")
            problems += [f"{where}.ports: hostPort not allowed" for p in container.get("ports", [])
                         if p.get("hostPort")]
    return problems


def _container_restricted(container: dict, pod_sc: dict, path: str) -> list[str]:
    sc = container.get("securityContext") or {}
    merged = {**pod_sc, **sc}
    problems = []
    if merged.get("runAsNonRoot") is not True:
        problems.append(f"{path}: runAsNonRoot must be true (pod or container)")
    if sc.get("runAsUser") == 0:
        problems.append(f"{path}.securityContext.runAsUser: 0 (root)")
    if (merged.get("seccompProfile") or {}).get("type") not in ("RuntimeDefault", "Localhost"):
        problems.append(f"{path}: seccompProfile.type must be RuntimeDefault or Localhost (pod or container)")
    if sc.get("allowPrivilegeEscalation") is not False:
        problems.append(f"{path}.securityContext.allowPrivilegeEscalation: must be false")
    if sc.get("privileged"):
        problems.append(f"{path}.securityContext.privileged: not allowed")
    caps = sc.get("capabilities") or {}
    if "ALL" not in (caps.get("drop") or []):
        problems.append(f"{path}.securityContext.capabilities.drop: must contain ALL")
    if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
        problems.append(f"{path}.securityContext.capabilities.add: only NET_BIND_SERVICE is allowed")
    if sc.get("readOnlyRootFilesystem") is not True:
        problems.append(f"{path}.securityContext.readOnlyRootFilesystem: must be true (project rule)")
    problems += [f"{path}.ports: hostPort not allowed" for p in container.get("ports", []) if p.get("hostPort")]
    return problems


def _cron_problems(spec: dict) -> list[str]:
    schedule = str(spec.get("schedule", "")).strip()
    if schedule.startswith(("TZ=", "CRON_TZ=")):
        return [f"spec.schedule {schedule!r}: set spec.timeZone instead of TZ= (refused since 1.27)"]
    if schedule in CRON_MACROS:
        return []
    fields = schedule.split()
    if len(fields) != 5:
        return [f"spec.schedule {schedule!r}: needs 5 fields, has {len(fields)}"]
    return [f"spec.schedule {schedule!r}: bad field {i + 1} {field!r}"
            for i, field in enumerate(fields) if not _cron_field_ok(field, i)]


def _cron_field_ok(field: str, index: int) -> bool:
    low, high = CRON_RANGES[index]
    names = CRON_NAMES[index]
    for part in field.split(","):
        base, _, step = part.partition("/")
        if step and not step.isdigit():
            return False
        if base in ("*", "?"):
            continue
        ends = base.split("-")
        if len(ends) > 2:
            return False
        found = [names.get(e.lower(), int(e) if e.isdigit() else None) for e in ends]
        values = [v for v in found if v is not None]
        if len(values) < len(found) or any(not low <= v <= high for v in values) or values != sorted(values):
            return False
    return True


# --- tools -------------------------------------------------------------------------------------


def _tool(name: str, *candidates: Path) -> str:
    """The system's copy first, else the one `make setup` installs under .venv."""
    found = shutil.which(name) or next((str(c) for c in candidates if c.exists()), None)
    if not found:
        raise FileNotFoundError(f"{name} not found on PATH nor in {[str(c) for c in candidates]}: run `make setup`")
    return found


def kubectl() -> str:
    return _tool("kubectl", REPO / ".venv" / "bin" / "kubectl")


def checkov() -> str:
    """checkov lives in its own venv: it pins packaging and python-dateutil below what modlib uses."""
    env = os.environ.get("MODLIB_CHECKOV")
    return env or _tool("checkov", REPO / ".venv" / "checkov-venv" / "bin" / "checkov")


def kustomize(path: Path | str) -> list[dict]:
    """The objects `kubectl kustomize PATH` builds (kustomize is built into kubectl >= 1.14)."""
    result = subprocess.run([kubectl(), "kustomize", str(path)], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {path} failed:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def write_manifests(docs: list[dict], directory: Path, name: str = "manifests.yaml") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def run_checkov(directory: Path, with_base: bool = True) -> subprocess.CompletedProcess:
    """checkov with k8s-jobs/.checkov.yaml over the manifests in DIRECTORY; returncode 0 means clean.

    Build Jobs only ever run in the namespace the base makes, whose NetworkPolicy covers every pod
    there, and checkov's CKV2_K8S_6 sees that only when both are in one scan (its graph does not
    span two --directory arguments). So by default the directory's YAML files are scanned together
    with the base's objects; with_base=False scans the directory alone (kustomize output of an
    overlay holds the base already).
    """
    with tempfile.TemporaryDirectory(prefix="checkov-") as scratch:
        scan = directory
        if with_base:
            scan = Path(scratch)
            for path in [*directory.glob("*.yaml"), *directory.glob("*.yml")]:
                shutil.copy2(path, scan / path.name)
            write_manifests(kustomize(K8S_JOBS / "base"), scan, "zz-modlib-base.yaml")
        return subprocess.run([checkov(), "--config-file", str(CHECKOV_CONFIG), "--directory", str(scan)],
                              capture_output=True, text=True, cwd=scan)
