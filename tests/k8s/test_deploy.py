"""What a fresh cluster needs besides the base: the volume's owner, the images, an alert on failed runs.
(Schemas, semantic checks and checkov of k8s-jobs/volume-init run in test_manifests.py with the others.)"""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from tests.helpers import REPO
from tests.k8s.validate import K8S_JOBS, kustomize, semantic_problems


@pytest.fixture(scope="module")
def volume_init() -> list[dict]:
    return kustomize(K8S_JOBS / "volume-init")


def of_kind(docs: list[dict], kind: str) -> dict:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, kind
    return found[0]


def test_volume_init_runs_root_once_outside_modlibs_restricted_namespace(volume_init):
    namespace = of_kind(volume_init, "Namespace")
    assert namespace["metadata"]["name"] != "modlib"
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "baseline"
    assert {d["metadata"].get("namespace") for d in volume_init
            if d["kind"] not in ("Namespace", "PersistentVolume")} == {namespace["metadata"]["name"]}
    job = of_kind(volume_init, "Job")
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsUser"] == 0 and container["securityContext"]["capabilities"] == {
        "drop": ["ALL"], "add": ["CHOWN"]}
    assert "chown 1000:1000 /srv/modlib" in container["command"][-1]
    # the same Job in modlib's namespace would be refused: restricted forbids root and added capabilities
    refused = "\n".join(semantic_problems(job, "restricted"))
    assert "runAsUser: 0 (root)" in refused and "only NET_BIND_SERVICE is allowed" in refused
    assert semantic_problems(job, "baseline") == []


def test_volume_init_mounts_the_same_storage_read_write_and_never_deletes_it(volume_init):
    pv, pvc = of_kind(volume_init, "PersistentVolume"), of_kind(volume_init, "PersistentVolumeClaim")
    assert pv["spec"]["accessModes"] == pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    assert pv["spec"]["claimRef"] == {"namespace": pvc["metadata"]["namespace"], "name": pvc["metadata"]["name"]}
    assert pvc["spec"]["volumeName"] == pv["metadata"]["name"]
    notebook = of_kind(kustomize(K8S_JOBS / "overlays" / "notebook"), "PersistentVolume")
    assert pv["spec"]["nfs"] == {k: v for k, v in notebook["spec"]["nfs"].items() if k != "readOnly"}


def test_the_alerts_watch_the_cronjobs_jobs():
    """The rule names what the base deploys: a renamed CronJob or namespace must rename them here."""
    cronjob = of_kind(kustomize(K8S_JOBS / "base"), "CronJob")
    name, namespace = cronjob["metadata"]["name"], cronjob["metadata"]["namespace"]
    rule = yaml.safe_load((K8S_JOBS / "monitoring" / "prometheusrule.yaml").read_text())
    assert (rule["apiVersion"], rule["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    alerts = {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"]}
    assert sorted(alerts) == ["ModlibNoSuccessfulRun", "ModlibRunFailed"]
    failed = alerts["ModlibRunFailed"]["expr"]
    assert f'kube_job_status_failed{{namespace="{namespace}"}}' in failed
    assert f'owner_kind="CronJob", owner_name="{name}"' in failed
    assert f'cronjob="{name}"' in alerts["ModlibNoSuccessfulRun"]["expr"]
    for alert in alerts.values():  # parentheses balance: a cut-off expression is caught here, not by Prometheus
        assert alert["expr"].count("(") == alert["expr"].count(")") and alert["labels"]["severity"]
    assert cronjob["spec"]["failedJobsHistoryLimit"] >= 1  # the failed run is still there to read


def test_make_image_prints_the_build_and_the_digest_pin():
    made = subprocess.run(["make", "-s", "image", "CONTAINER_TOOL=print", "PUSH=1",
                           "IMAGE_REGISTRY=registry.example.org/hpc"], cwd=REPO, capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    lines = made.stdout.splitlines()
    version = re.search(r'^version = "(.*)"', (REPO / "pyproject.toml").read_text(), re.M).group(1)  # type: ignore[union-attr]
    for name, containerfile in (("builder", "k8s-jobs/image/Containerfile"),
                                ("notebook", "k8s-jobs/notebook-image/Containerfile")):
        ref = f"registry.example.org/hpc/{name}:{version}"
        assert f"podman build -f {containerfile} -t {ref} ." in lines
        assert f"podman push --digestfile {name}.digest {ref}" in lines
        block = made.stdout.split(f"# pin {name} by digest")[1].split("# pin ")[0]
        pin = yaml.safe_load("\n".join(line for line in block.splitlines()[1:] if not line.startswith(("#", "podman"))))
        if name == "builder":  # kustomize's images: and library.yaml's kubernetes.image, for build Jobs
            assert pin == {"images": [{"name": "ghcr.io/modlib/builder", "digest": "sha256:...",
                                       "newName": "registry.example.org/hpc/builder"}]}
            assert 'kubernetes: {image: "registry.example.org/hpc/builder@sha256:..."}' in block
            site = yaml.safe_load((REPO / "k8s-jobs" / "examples" / "site" / "kustomization.yaml").read_text())
            assert [i["name"] for i in site["images"]] == ["ghcr.io/modlib/builder"]  # the file it names has it
        else:  # the hub's values, never a build Job's image (every build would run the notebook image)
            assert pin == {"singleuser": {"image": {"name": "registry.example.org/hpc/notebook",
                                                    "tag": f"{version}@sha256:..."}}}
            assert "kubernetes:" not in block
            values = yaml.safe_load((REPO / "k8s-jobs" / "overlays" / "notebook" / "z2jh-values.yaml").read_text())
            assert values["singleuser"]["image"]["name"] == "ghcr.io/modlib/notebook"
    assert (REPO / "k8s-jobs" / "image" / "Containerfile").is_file()
