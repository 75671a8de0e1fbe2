"""`modlib render`: the Jobs a run would create, written as files an admin can review or apply."""

from __future__ import annotations

from pathlib import Path

import yaml

from builder.execute.command import invocation, node_request
from builder.execute.inputs import inputs_dir
from builder.execute.k8s_objects import build_job
from builder.plan.planner import make_plan
from builder.read.config import Settings, Target, quantity


def run_jobs(settings: Settings, target: Target) -> tuple[list[dict], Path, list[str]]:
    """One Job per node still to build, in plan order; the same objects the executor creates, each asking
    for what the node's records compute (a line per Job says so and why)."""
    inputs = inputs_dir(settings)
    jobs, asked = [], []
    for node in make_plan(settings, [target]).select([]):
        request = node_request(settings, node)
        jobs.append(build_job(settings, node, invocation(settings, node, request=request), inputs))
        asked.append(f"{jobs[-1]['metadata']['name']}: memory {quantity(request.memory_bytes)}, "
                     f"{request.cpus} core(s) ({request.basis})")
    return jobs, inputs, asked


def root_warning(settings: Settings) -> str | None:
    """Jobs mount the claim at the library root, and EasyBuild bakes that root into module files and RPATHs:
    rendered for another root than the cluster's (a workstation's ``root: library``), they would build a
    library notebooks cannot load."""
    mount = Path(settings.kubernetes.mount_path)
    if settings.root == mount:
        return None
    return (f"the library root is {settings.root}, but the cluster mounts the library at {mount} "
            f"(kubernetes.mount_path in {settings.config_file}): these Jobs would build for the wrong path; "
            f"render with MODLIB_ROOT={mount}")


#: kustomize's extensionless file name: ``kubectl apply -k`` reads it, ``kubectl apply -f`` (which takes
#: every .yaml, .yml and .json file of a folder as an object to send) passes it by
KUSTOMIZATION = "Kustomization"


def render_run(settings: Settings, target: Target, out: Path) -> tuple[list[Path], Path, list[str]]:
    jobs, inputs, asked = run_jobs(settings, target)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for job in jobs:
        path = out / f"{job['metadata']['name']}.yaml"
        path.write_text(yaml.safe_dump(job, sort_keys=False))
        files.append(path)
    kustomization = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                     "resources": [p.name for p in files]}
    (out / KUSTOMIZATION).write_text(yaml.safe_dump(kustomization, sort_keys=False))
    return files, inputs, asked
