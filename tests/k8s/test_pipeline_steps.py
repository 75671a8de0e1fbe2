"""Pipeline steps get a notebook session's patch (issue 27, point 4): a Kubeflow Pipelines component compiled
with the kfp SDK (k8s-jobs/examples/pipelines/kfp_step.py, in its own venv: kfp pins a kubernetes client older
than modlib's), the engine-neutral step pod (step-pod.yaml) and the Dask worker pod template
(tests/e2e/test_dask_session.py), each patched with the session of a real published library (Lmod loads the
module; tests/integration/test_session.py's library). The pods validate against Kubernetes 1.30 and 1.34 and keep
Pod Security "restricted"."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.e2e.test_dask_session import worker_pod
from tests.integration.test_session import live  # noqa: F401 (the fixture)
from tests.k8s.validate import K8S_VERSIONS, REPO, schema_errors, semantic_problems

pytestmark = pytest.mark.slow  # a real publish and Lmod loads each, kfp's compiler (seconds)
EXAMPLES = REPO / "k8s-jobs" / "examples" / "pipelines"
KFP_PYTHON = REPO / ".venv" / "kfp-venv" / "bin" / "python"
CLAIM = "modlib-library"
SESSION = 'import json, os, runpy, sys; modlib_session = runpy.run_path(os.environ["MODLIB_SESSION_PY"])\n'
#: The session's pod patch, or with a pod as argv[1] that pod patched, as JSON.
PATCH = SESSION + ('print(json.dumps(modlib_session["patch_pod"](json.loads(sys.argv[1])) if sys.argv[1:] '
                   'else modlib_session["pod_patch"]()))')


def in_session(live: Path, *args: str) -> dict:  # noqa: F811 (the fixture's value)
    """PATCH run in a session of Greeting/1.0 (the launcher loads it), as a notebook that loaded it runs it."""
    result = subprocess.run([str(live / "bin" / "modlib-exec"), "--target", "cpu", "--modules", "Greeting/1.0", "--",
                             sys.executable, "-c", PATCH, *args], capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "HOME": "/tmp", "MODLIB_CLAIM": CLAIM})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def assert_valid(pod: dict, skip_rule: str = "") -> None:
    for version in K8S_VERSIONS:
        assert schema_errors(pod, version) == [], version
    assert [p for p in semantic_problems(pod) if not (skip_rule and skip_rule in p)] == []


def assert_patched(container: dict, spec: dict, live: Path) -> None:  # noqa: F811
    root = str(live.parent)
    (volume,) = [v for v in spec["volumes"] if "persistentVolumeClaim" in v]
    assert volume["persistentVolumeClaim"]["claimName"] == CLAIM
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    assert mount["mountPath"] == root
    assert container["command"][:5] == [f"{root}/live/bin/modlib-exec", "--target", "cpu", "--modules",
                                        "Greeting/1.0"]


def kfp_pod(pipeline: Path) -> dict:
    """The pod Kubeflow Pipelines' backend makes for the compiled step: the executor's container from the
    pipeline spec, its pvcMount and securityContext from the Kubernetes platform spec, and what the backend
    adds to every step (kfp.kubernetes.set_security_context's documentation): no privilege escalation, all
    capabilities dropped, seccomp RuntimeDefault."""
    spec, platform = yaml.safe_load_all(pipeline.read_text())
    (name, executor), = spec["deploymentSpec"]["executors"].items()
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"][name]
    identity = {key: int(value) if key != "runAsNonRoot" else value for key, value in k8s["securityContext"].items()}
    claims = [(f"pvc-{i}", m["pvcNameParameter"]["runtimeValue"]["constant"], m["mountPath"])
              for i, m in enumerate(k8s["pvcMount"])]
    volumes = [{"name": volume, "persistentVolumeClaim": {"claimName": claim}} for volume, claim, _ in claims]
    container = {"name": "main", **{key: executor["container"][key] for key in ("image", "command", "args")},
                 "volumeMounts": [{"name": volume, "mountPath": path} for volume, _, path in claims],
                 "securityContext": {**identity, "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"restartPolicy": "Never", "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                     "volumes": volumes, "containers": [container]}}


def test_a_compiled_kubeflow_step_runs_the_launcher_with_the_library_mounted(live, tmp_path):  # noqa: F811
    assert KFP_PYTHON.exists(), f"{KFP_PYTHON} is missing: run `make test-tools`"
    (tmp_path / "patch.json").write_text(json.dumps(in_session(live)))
    compiled = subprocess.run([str(KFP_PYTHON), str(EXAMPLES / "kfp_step.py"), str(tmp_path / "patch.json"),
                               str(tmp_path / "pipeline.yaml")], capture_output=True, text=True)
    assert compiled.returncode == 0, compiled.stderr
    pod = kfp_pod(tmp_path / "pipeline.yaml")
    (container,) = pod["spec"]["containers"]
    assert_patched(container, pod["spec"], live)
    assert container["command"][-1] == "--" and container["args"] == ["python", "-c", "import jinja2"]
    # the backend, not the compiled pipeline, decides the root file system: the project's read-only rule is not
    # the pipeline's to keep (KFP's launcher writes into the step's container)
    assert_valid(pod, skip_rule="readOnlyRootFilesystem: must be true (project rule)")


@pytest.mark.parametrize("template", ["step-pod", "dask-worker"])
def test_patched_pod_templates_mount_the_library_read_only_and_stay_restricted(live, template):  # noqa: F811
    pod = yaml.safe_load((EXAMPLES / "step-pod.yaml").read_text()) if template == "step-pod" \
        else worker_pod("dask-worker-a", "tcp://dask-scheduler:8786")
    patched = in_session(live, json.dumps(pod))
    (container,) = patched["spec"]["containers"]
    assert_patched(container, patched["spec"], live)
    assert container["command"][5:] == ["--", *pod["spec"]["containers"][0].get("command", [])]
    assert container["volumeMounts"][-1]["readOnly"] is True
    assert patched["spec"]["volumes"][-1]["persistentVolumeClaim"]["readOnly"] is True
    assert_valid(patched)
