"""What library.yaml's ``pod_overrides`` and ``container_overrides`` mean, and what they may not change.

They are the escape hatch for what modlib does not model (kubespawner's ``extra_pod_config`` and
``extra_container_config``), laid over the build Job's pod spec and its build container with a
strategic merge: dicts key by key, the lists Kubernetes merges by key (containers, env, volumeMounts,
volumes) entry by entry, anything else replaced. A build is untrusted code, so no override may turn off
the build container's isolation; such a file is refused when it is read, before anything runs.
"""

from __future__ import annotations

from pathlib import Path

from builder.errors import BadInput

#: The build container's name: what a ``containers`` entry of pod_overrides names to merge into it.
BUILD_CONTAINER = "eb"
#: The build container's securityContext, less the user it runs as: no override may change these.
CONTAINER_ISOLATION: dict = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                             "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}}
#: Pod fields the isolation needs: builds get no API access.
POD_ISOLATION: dict = {"automountServiceAccountToken": False}
#: Lists merged entry by entry on these keys (Kubernetes' patchMergeKey), not replaced.
MERGE_KEYS = {"containers": "name", "initContainers": "name", "env": "name", "volumeMounts": "mountPath",
              "volumes": "name"}


def merged(base: dict, overrides: dict) -> dict:
    """``overrides`` laid over ``base``: a site adds affinity, an env variable or a mount without
    restating the rest, and a ``containers`` entry named like the build container changes only it."""
    out = dict(base)
    for key, value in overrides.items():
        old = out.get(key)
        if isinstance(value, dict) and isinstance(old, dict):
            out[key] = merged(old, value)
        elif key in MERGE_KEYS and isinstance(value, list) and isinstance(old, list):
            out[key] = _merged_list(old, value, MERGE_KEYS[key])
        else:
            out[key] = value
    return out


def _merged_list(base: list, overrides: list, key: str) -> list:
    """Entries of ``overrides`` merged into the ``base`` entry with the same ``key``, the others appended."""
    out = list(base)
    for entry in overrides:
        same = [i for i, old in enumerate(out) if isinstance(entry, dict) and isinstance(old, dict)
                and key in entry and old.get(key) == entry[key]]
        if same:
            out[same[0]] = merged(out[same[0]], entry)
        else:
            out.append(entry)
    return out


def _weakened(container: dict) -> str | None:
    """The first isolation setting ``container`` (the build container after an override) no longer has."""
    context = container.get("securityContext")
    if not isinstance(context, dict):
        return "securityContext must stay"
    for key in ("allowPrivilegeEscalation", "readOnlyRootFilesystem", "runAsNonRoot"):
        if context.get(key) is not CONTAINER_ISOLATION[key]:
            return f"securityContext.{key} must stay {str(CONTAINER_ISOLATION[key]).lower()}"
    if context.get("privileged"):
        return "securityContext.privileged must stay unset"
    capabilities = context.get("capabilities")
    if not isinstance(capabilities, dict) or "ALL" not in (capabilities.get("drop") or []):
        return "securityContext.capabilities.drop must keep ALL"
    if capabilities.get("add"):
        return "securityContext.capabilities.add must stay empty"
    return None


def _weakening(field: str, override: dict) -> str | None:
    """What ``override`` (a ``field`` of library.yaml) would take from the isolation every build pod has."""
    build = {"name": BUILD_CONTAINER, "securityContext": CONTAINER_ISOLATION}
    if field == "container_overrides":
        pod = {**POD_ISOLATION, "containers": [merged(build, override)]}
    else:
        pod = merged({**POD_ISOLATION, "containers": [build]}, override)
    for key, value in POD_ISOLATION.items():
        if pod.get(key) is not value:
            return f"{key} must stay {str(value).lower()}"
    containers = pod.get("containers")
    builds = [c for c in containers if isinstance(c, dict) and c.get("name") == BUILD_CONTAINER] \
        if isinstance(containers, list) else []
    return _weakened(builds[0]) if builds else f"the '{BUILD_CONTAINER}' container must stay"


def _check(path: Path, where: str, kubernetes: dict) -> None:
    for field in ("pod_overrides", "container_overrides"):
        problem = _weakening(field, kubernetes[field]) if field in kubernetes else None
        if problem:
            raise BadInput(path, f"invalid configuration at '{where}.{field}': it would turn off the build "
                                 f"container's isolation ({problem})")


def check(path: Path, data: dict) -> None:
    """Refuse a library.yaml (``data``, schema-valid) whose overrides would weaken a build's sandbox. Each
    layer (library-wide, then each target's) is checked alone: a later one replaces what it sets, so
    none can undo what another left in place."""
    _check(path, "kubernetes", data.get("kubernetes", {}))
    for name, target in data["targets"].items():
        _check(path, f"targets.{name}.kubernetes", target.get("kubernetes", {}))
