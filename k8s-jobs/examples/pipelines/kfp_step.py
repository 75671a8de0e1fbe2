"""A Kubeflow Pipelines step that runs with a notebook session's modules (README "For notebooks").

In the notebook, with the kfp and kfp-kubernetes packages from PyPI where the pipeline is compiled::

    import os, runpy
    patch = runpy.run_path(os.environ["MODLIB_SESSION_PY"])["pod_patch"]()
    compiler.Compiler().compile(pipeline(patch, "python:3.11-slim", ["python", "train.py"]), "pipeline.yaml")

or ``python kfp_step.py PATCH.json PIPELINE.yaml`` with the patch as JSON. The step's container runs the
session's launcher (``modlib-exec --target T --modules A,B --``) before its own command, and
kfp-kubernetes mounts the library's claim at the library root. kfp-kubernetes (2.17) cannot mark a mount
read-only (its PvcMount has no such field): the claim the admin gives pipeline namespaces must be
read-only itself (a PersistentVolume whose source is read-only: ``csi.readOnly`` or ``nfs.readOnly``).
"""

from __future__ import annotations

import json
import sys

from kfp import compiler, dsl, kubernetes

#: jovyan, as in notebook images: the step runs as the notebook's user (Pod Security "restricted").
USER, GROUP = 1000, 100


def pipeline(patch: dict, image: str, command: list[str]):
    """A one-step pipeline: ``command`` in ``image`` with the patch's launcher, mount and claim."""
    (volume,) = patch["volumes"]
    (mount,) = patch["volumeMounts"]

    @dsl.container_component
    def step():
        return dsl.ContainerSpec(image=image, command=patch["command"], args=command)

    @dsl.pipeline(name="modlib-step")
    def modlib_step():
        task = step()
        kubernetes.mount_pvc(task, pvc_name=volume["persistentVolumeClaim"]["claimName"],
                             mount_path=mount["mountPath"])
        kubernetes.set_security_context(task, run_as_user=USER, run_as_group=GROUP, run_as_non_root=True)

    return modlib_step


if __name__ == "__main__":
    with open(sys.argv[1]) as patch_file:
        PATCH = json.load(patch_file)
    compiler.Compiler().compile(pipeline(PATCH, "python:3.11-slim", ["python", "-c", "import jinja2"]),
                                sys.argv[2])
