"""k8s-jobs/: every kustomization builds, every object is valid for the oldest and newest
supported Kubernetes, passes the checks schemas cannot make and checkov, and says what the
design promises (least-privilege RBAC, the scheduled run, read-only notebook mounts).
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from builder.execute import k8s_objects
from builder.execute.command import invocation
from builder.plan.planner import make_plan
from builder.read.config import load_settings
from tests.helpers import REPO, modlib
from tests.k8s.validate import (
    K8S_JOBS,
    K8S_VERSIONS,
    UnknownKind,
    kubectl,
    kustomize,
    pod_templates,
    run_checkov,
    schema_errors,
    semantic_problems,
    write_manifests,
)

KUSTOMIZATIONS = ("base", "overlays/cpu-only", "overlays/gpu", "overlays/notebook", "examples/site", "volume-init")
NOTEBOOK = K8S_JOBS / "overlays" / "notebook"
ROOT = "/srv/modlib"


@pytest.fixture(scope="module")
def built() -> dict[str, list[dict]]:
    return {name: kustomize(K8S_JOBS / name) for name in KUSTOMIZATIONS}


def one(docs: list[dict], kind: str, name: str | None = None) -> dict:
    found = [d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def runner_pod(docs: list[dict]) -> dict:
    return one(docs, "CronJob", "modlib-rebuild")["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def env_of(container: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


# --- every object, every kustomization -----------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_objects_match_upstream_schemas(built, name, version):
    errors = [e for doc in built[name] for e in schema_errors(doc, version)]
    assert errors == []


def pod_security(docs: list[dict]) -> str:
    """The level the kustomization's namespace enforces (restricted where it makes none: it goes into modlib's)."""
    labels = [d["metadata"]["labels"] for d in docs if d["kind"] == "Namespace"]
    return labels[0]["pod-security.kubernetes.io/enforce"] if labels else "restricted"


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_objects_pass_semantic_checks(built, name):
    assert [p for doc in built[name] for p in semantic_problems(doc, pod_security(built[name]))] == []


@pytest.mark.slow  # checkov takes seconds a run
@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_checkov_passes(built, name, tmp_path):
    write_manifests(built[name], tmp_path)
    result = run_checkov(tmp_path, with_base=False)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "Failed checks: 0" in result.stdout


def test_base_objects(built):
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in built["base"])
    assert kinds == [("ConfigMap", "modlib-site-repo"), ("CronJob", "modlib-rebuild"), ("Namespace", "modlib"),
                     ("NetworkPolicy", "modlib-builds-deny-egress"), ("NetworkPolicy", "modlib-deny-ingress"),
                     ("PersistentVolumeClaim", "modlib-library"),
                     ("Role", "modlib-runner"), ("RoleBinding", "modlib-runner"),
                     ("ServiceAccount", "modlib-builder"), ("ServiceAccount", "modlib-runner")]
    assert {d["metadata"].get("namespace") for d in built["base"] if d["kind"] != "Namespace"} == {"modlib"}


def test_namespace_enforces_restricted(built):
    labels = one(built["base"], "Namespace")["metadata"]["labels"]
    for mode in ("enforce", "warn", "audit"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"


def test_library_claim(built):
    pvc = one(built["base"], "PersistentVolumeClaim", "modlib-library")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert "storageClassName" not in pvc["spec"]  # the cluster default, unless a site overlay sets one
    assert pvc["metadata"]["labels"]["app.kubernetes.io/component"] == "library"
    site = one(built["examples/site"], "PersistentVolumeClaim", "modlib-library")
    assert site["spec"]["storageClassName"] == "nfs-client"


def test_the_site_overlay_works_where_readme_copies_it(tmp_path):
    """k8s-jobs/README's commands, run as written in a checkout's copy: the example's ``../../overlays``
    resolved only where it sits, so a copy failed to render."""
    readme = (REPO / "k8s-jobs" / "README.md").read_text()
    commands = readme.split("```sh\n# at the root of the modlib checkout")[1].split("```")[0]
    shutil.copytree(REPO / "k8s-jobs", tmp_path / "k8s-jobs")
    env = {**os.environ, "PATH": f"{Path(kubectl()).parent}:{os.environ['PATH']}"}
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", commands], cwd=tmp_path, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    pvc = one(kustomize(tmp_path / "my-site"), "PersistentVolumeClaim", "modlib-library")
    assert pvc["spec"]["storageClassName"] == "nfs-client"


def _selects(policy: dict, labels: dict[str, str]) -> bool:
    wanted = policy["spec"]["podSelector"].get("matchLabels", {})
    return not policy["spec"]["podSelector"].get("matchExpressions") and wanted.items() <= labels.items()


def test_build_pods_reach_no_network_and_the_runner_keeps_its_egress(built):
    """Build pods (labels as builder.execute.k8s_objects gives them) get no egress at all; the runner's
    pod is not selected, so it still reaches the API server, the source mirrors and the site repository."""
    settings = load_settings(REPO / "easyconfigs" / "library.yaml", env={"MODLIB_ROOT": ROOT})
    node = make_plan(settings, [settings.target("cpu")]).nodes[0]
    build_pod = k8s_objects.build_job(settings, node, invocation(settings, node), Path(ROOT))["spec"]["template"]
    runner = one(built["base"], "CronJob", "modlib-rebuild")["spec"]["jobTemplate"]["spec"]["template"]
    policy = one(built["base"], "NetworkPolicy", "modlib-builds-deny-egress")
    assert policy["spec"]["policyTypes"] == ["Egress"] and "egress" not in policy["spec"]
    assert _selects(policy, build_pod["metadata"]["labels"])
    assert not _selects(policy, runner["metadata"]["labels"])
    egress = [p for p in built["base"] if p["kind"] == "NetworkPolicy" and "Egress" in p["spec"]["policyTypes"]]
    assert [p["metadata"]["name"] for p in egress if _selects(p, runner["metadata"]["labels"])] == []


# --- RBAC --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_nothing_cluster_wide(built, name):
    assert not [d for d in built[name] if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]


def test_runner_role_is_exactly_the_contract(built):
    rules = one(built["base"], "Role", "modlib-runner")["rules"]
    assert rules == [
        {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "list", "watch", "delete"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
        {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": ["modlib-run"],
         "verbs": ["get", "update", "delete"]},
    ]
    assert not [r for r in rules if "*" in r["verbs"] + r["resources"] + r["apiGroups"]]


def test_only_the_runner_is_bound(built):
    bindings = [d for d in built["base"] if d["kind"] == "RoleBinding"]
    assert [(b["roleRef"], b["subjects"]) for b in bindings] == [(
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "modlib-runner"},
        [{"kind": "ServiceAccount", "name": "modlib-runner", "namespace": "modlib"}])]
    for name in ("modlib-runner", "modlib-builder"):
        assert one(built["base"], "ServiceAccount", name)["automountServiceAccountToken"] is False


# --- the scheduled run -------------------------------------------------------------------------


def test_cronjob_schedule_and_limits(built):
    cronjob = one(built["base"], "CronJob", "modlib-rebuild")
    spec, job = cronjob["spec"], cronjob["spec"]["jobTemplate"]["spec"]
    assert (spec["schedule"], spec["timeZone"], spec["concurrencyPolicy"]) == ("0 2 * * *", "Etc/UTC", "Forbid")
    assert 0 < spec["startingDeadlineSeconds"] <= 6 * 3600
    assert spec["successfulJobsHistoryLimit"] >= 1 and spec["failedJobsHistoryLimit"] >= 1
    assert job["backoffLimit"] <= 3 and job["ttlSecondsAfterFinished"] > 0
    assert job["activeDeadlineSeconds"] < 24 * 3600  # never runs into the next night's schedule
    fail_codes = job["podFailurePolicy"]["rules"][0]["onExitCodes"]
    assert (fail_codes["containerName"], fail_codes["values"]) == ("modlib", [1, 2, 3])
    assert cronjob["metadata"]["labels"]["app.kubernetes.io/component"] == "runner"


def test_runner_pod(built):
    pod = runner_pod(built["base"])
    assert (pod["serviceAccountName"], pod["automountServiceAccountToken"]) == ("modlib-runner", True)
    assert pod["securityContext"]["runAsUser"] == 1000 and pod["securityContext"]["runAsNonRoot"] is True
    (runner,) = pod["containers"]
    assert runner["name"] == "modlib"
    assert runner["command"] == ["modlib", "build", "--executor", "kubernetes"]
    assert runner["image"] == "ghcr.io/modlib/builder:0.1.0"
    assert set(runner["resources"]["requests"]) >= {"cpu", "memory"}
    assert set(runner["resources"]["limits"]) >= {"cpu", "memory"}
    mounts = {m["mountPath"]: m for m in runner["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts[ROOT]["name"]]["persistentVolumeClaim"]["claimName"] == "modlib-library"
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]


def test_runner_environment(built):
    env = env_of(runner_pod(built["base"])["containers"][0])
    assert env["MODLIB_ROOT"] == ROOT
    assert env["MODLIB_CACHE"] == f"{ROOT}/.modlib/cache"
    assert env["HOME"] == "/tmp/home"
    assert env["MODLIB_PYTHON"] == "/opt/modlib/venv/bin/python"  # the image's venv (Containerfile)
    assert env["MODLIB_CONFIG"].endswith("/easyconfigs/library.yaml")


def test_git_sync_checks_out_what_modlib_config_names(built):
    """One sync, into an emptyDir the runner mounts read-only, at the path MODLIB_CONFIG points into."""
    pod = runner_pod(built["base"])
    (sync,) = pod["initContainers"]
    assert sync["image"].startswith("registry.k8s.io/git-sync/git-sync:v4.")
    args = dict(a.removeprefix("--").partition("=")[::2] for a in sync["args"])
    assert "one-time" in args
    checkout = f"{args['root']}/{args['link']}"
    assert env_of(pod["containers"][0])["MODLIB_CONFIG"] == f"{checkout}/easyconfigs/library.yaml"
    site = next(m for m in sync["volumeMounts"] if m["mountPath"] == args["root"])
    runner_site = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == site["name"])
    assert runner_site["mountPath"] == args["root"] and runner_site["readOnly"] is True
    assert "emptyDir" in next(v for v in pod["volumes"] if v["name"] == site["name"])
    assert sync["envFrom"] == [{"configMapRef": {"name": "modlib-site-repo"}}]
    assert set(one(built["base"], "ConfigMap", "modlib-site-repo")["data"]) == {"GITSYNC_REPO", "GITSYNC_REF"}


def test_site_overlay_sets_the_repository(built):
    data = one(built["examples/site"], "ConfigMap", "modlib-site-repo")["data"]
    assert data["GITSYNC_REPO"] == "https://gitlab.example.org/hpc/modlib-site.git"


def test_cpu_only_builds_the_cpu_target(built):
    assert runner_pod(built["overlays/cpu-only"])["containers"][0]["args"] == ["--target", "cpu"]


def test_gpu_builds_every_target(built):
    runner = runner_pod(built["overlays/gpu"])["containers"][0]
    assert "args" not in runner and "--target" not in runner["command"]


# --- notebooks ---------------------------------------------------------------------------------


def test_notebook_claim_is_read_only_and_statically_bound(built):
    docs = built["overlays/notebook"]
    pv, pvc = one(docs, "PersistentVolume"), one(docs, "PersistentVolumeClaim")
    assert pv["spec"]["accessModes"] == pvc["spec"]["accessModes"] == ["ReadOnlyMany"]
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    assert pv["spec"]["nfs"]["readOnly"] is True and pv["spec"]["mountOptions"] == ["ro"]  # no NFS version assumed
    assert pv["spec"]["claimRef"] == {"namespace": pvc["metadata"]["namespace"], "name": pvc["metadata"]["name"]}
    assert pvc["spec"]["volumeName"] == pv["metadata"]["name"]
    assert pv["spec"]["storageClassName"] == pvc["spec"]["storageClassName"] == ""


@pytest.fixture(scope="module")
def z2jh() -> dict:
    return yaml.safe_load((NOTEBOOK / "z2jh-values.yaml").read_text())["singleuser"]


def notebook_pod(z2jh: dict) -> dict:
    """The pod KubeSpawner would make from the snippet's volumes and mounts (plus a restricted context)."""
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "jupyter-alice"},
            "spec": {"securityContext": {"runAsNonRoot": True, "runAsUser": 1000,
                                         "seccompProfile": {"type": "RuntimeDefault"}},
                     "containers": [{"name": "notebook", "image": f"{z2jh['image']['name']}:{z2jh['image']['tag']}",
                                     "env": [{"name": k, "value": v} for k, v in z2jh["extraEnv"].items()],
                                     "securityContext": {"allowPrivilegeEscalation": False,
                                                         "readOnlyRootFilesystem": True,
                                                         "capabilities": {"drop": ["ALL"]}},
                                     "volumeMounts": z2jh["storage"]["extraVolumeMounts"]}],
                     "volumes": z2jh["storage"]["extraVolumes"]}}


def test_z2jh_snippet_mounts_the_library_read_only(built, z2jh):
    (volume,) = z2jh["storage"]["extraVolumes"]
    (mount,) = z2jh["storage"]["extraVolumeMounts"]
    claim = one(built["overlays/notebook"], "PersistentVolumeClaim")["metadata"]["name"]
    assert volume["persistentVolumeClaim"] == {"claimName": claim, "readOnly": True}
    assert (mount["name"], mount["mountPath"], mount["readOnly"]) == (volume["name"], ROOT, True)
    pod = notebook_pod(z2jh)
    for version in K8S_VERSIONS:
        assert schema_errors(pod, version) == []
    assert semantic_problems(pod) == []


def test_z2jh_profiles_name_targets_the_notebook_image_reads(z2jh):
    """The image's hooks take everything else from the target's env.sh: a profile names a target of
    library.yaml (one `modlib env` knows), the default being cpu; the GPU profile asks for a GPU."""
    profiles = {p["kubespawner_override"]["environment"]["MODLIB_TARGET"]: p for p in z2jh["profileList"]}
    claim = z2jh["storage"]["extraVolumes"][0]["persistentVolumeClaim"]["claimName"]
    assert z2jh["extraEnv"] == {"MODLIB_ROOT": ROOT, "MODLIB_TARGET": "cpu", "MODLIB_CLAIM": claim}
    assert profiles["cpu"].get("default") is True
    for target, profile in profiles.items():
        assert profile["kubespawner_override"]["environment"] == {"MODLIB_TARGET": target}
        result = modlib("env", "--target", target, "--config", str(REPO / "easyconfigs" / "library.yaml"),
                        env={"MODLIB_ROOT": ROOT})
        assert result.returncode == 0 and f"export MODLIB_TARGET={target}" in result.stdout, result.stderr
    assert profiles["cuda"]["kubespawner_override"]["extra_resource_limits"] == {"nvidia.com/gpu": "1"}
    image = z2jh["image"]
    made = subprocess.run(["make", "-s", "image", "CONTAINER_TOOL=print"], cwd=REPO, capture_output=True, text=True)
    assert f"-t {image['name']}:{image['tag']} ." in made.stdout, made.stdout + made.stderr  # what `make image` builds


def test_notebook_values_are_not_kustomize_resources():
    kustomization = yaml.safe_load((NOTEBOOK / "kustomization.yaml").read_text())
    assert not {"z2jh-values.yaml", "z2jh-values-byo-image.yaml"} & set(kustomization["resources"])


@pytest.fixture(scope="module")
def z2jh_byo() -> dict:
    return yaml.safe_load((NOTEBOOK / "z2jh-values-byo-image.yaml").read_text())["singleuser"]


def test_z2jh_byo_image_mounts_the_library_read_only_and_the_profile_line(built, z2jh_byo):
    """A stock image gets the library read-only at /srv/modlib and the overlay's ConfigMap as one file of its
    /etc/profile.d (subPath: the image's own files there stay), a valid pod under the restricted level."""
    library, profile = z2jh_byo["storage"]["extraVolumes"]
    mounts = {m["name"]: m for m in z2jh_byo["storage"]["extraVolumeMounts"]}
    claim = one(built["overlays/notebook"], "PersistentVolumeClaim")["metadata"]["name"]
    assert library["persistentVolumeClaim"] == {"claimName": claim, "readOnly": True}
    assert (mounts[library["name"]]["mountPath"], mounts[library["name"]]["readOnly"]) == (ROOT, True)
    config_map = one(built["overlays/notebook"], "ConfigMap", profile["configMap"]["name"])
    mount = mounts[profile["name"]]
    assert (mount["mountPath"], mount["readOnly"]) == ("/etc/profile.d/modlib.sh", True)
    line = config_map["data"][mount["subPath"]]
    assert line.strip() == '. "${MODLIB_ROOT:-/srv/modlib}/live/targets/${MODLIB_TARGET:-cpu}/env.sh"'
    pod = notebook_pod(z2jh_byo)
    for version in K8S_VERSIONS:
        assert schema_errors(pod, version) == []
    assert semantic_problems(pod) == []


def test_z2jh_byo_image_profiles_set_the_target_and_its_kernels(z2jh_byo):
    """The image has no hook: each profile sets the target the profile line sources and the JUPYTER_PATH the
    server lists kernels from, the folder env.sh puts first (`modlib env`)."""
    profiles = {p["kubespawner_override"]["environment"]["MODLIB_TARGET"]: p for p in z2jh_byo["profileList"]}
    assert profiles["cpu"].get("default") is True
    claim = z2jh_byo["storage"]["extraVolumes"][0]["persistentVolumeClaim"]["claimName"]
    assert z2jh_byo["extraEnv"] == {"MODLIB_ROOT": ROOT, "MODLIB_CLAIM": claim,
                                    **profiles["cpu"]["kubespawner_override"]["environment"]}
    for target, profile in profiles.items():
        jupyter = f"{ROOT}/live/targets/{target}/jupyter"
        assert profile["kubespawner_override"]["environment"] == {"MODLIB_TARGET": target, "JUPYTER_PATH": jupyter}
        result = modlib("env", "--target", target, "--config", str(REPO / "easyconfigs" / "library.yaml"),
                        env={"MODLIB_ROOT": ROOT})
        assert result.returncode == 0 and f"export JUPYTER_PATH={jupyter}" in result.stdout, result.stderr
    assert profiles["cuda"]["kubespawner_override"]["extra_resource_limits"] == {"nvidia.com/gpu": "1"}
    assert "modlib" not in z2jh_byo["image"]["name"]  # a stock image


# --- the checks can fail -----------------------------------------------------------------------


@pytest.fixture
def build_job(built) -> dict:
    """A per-module build Job shaped as the contract sketches it (container `eb`, no API token)."""
    pod = copy.deepcopy(runner_pod(built["base"]))
    pod.update(serviceAccountName="modlib-builder", automountServiceAccountToken=False)
    pod.pop("initContainers")
    pod["volumes"] = [v for v in pod["volumes"] if v["name"] in ("library", "scratch")]
    container = pod["containers"][0]
    container.update(name="eb", command=["eb", "Jinja2-3.1.4-GCCcore-system.eb"], workingDir="/tmp")
    container["volumeMounts"] = [m for m in container["volumeMounts"] if m["name"] in ("library", "scratch")]
    labels = {"app.kubernetes.io/name": "modlib", "app.kubernetes.io/component": "build",
              "modlib.io/module": "Jinja2-3.1.4-GCCcore-system"}
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "cpu-jinja2-3-1-4-gcccore-system-0123456789", "namespace": "modlib",
                         "labels": labels, "annotations": {"modlib.io/module": "Jinja2/3.1.4-GCCcore-system"}},
            "spec": {"backoffLimit": 2, "template": {"metadata": {"labels": labels}, "spec": pod}}}


@pytest.fixture
def broken_job(build_job) -> dict:
    """The build Job broken in every way the checks claim to catch."""
    job = copy.deepcopy(build_job)
    job["metadata"]["name"] = "modlib-cpu-" + "x" * 60
    job["metadata"]["labels"]["modlib.io/module"] = "Jinja2/3.1.4-GCCcore-system"
    job["spec"].update(backoffLimit="two", ttlSecondsAfterFinshed=60)
    pod = job["spec"]["template"]["spec"]
    pod["restartPolicy"] = "Always"
    container = pod["containers"][0]
    container["resources"] = {"requests": {"cpu": 2}, "limits": {"memory": "lots", "nvidia.com/gpu": "0.5"}}
    container["securityContext"] = {"privileged": True}
    pod["volumes"].append({"name": "host", "hostPath": {"path": "/"}})
    return job


@pytest.mark.slow  # checkov takes seconds a run
def test_a_good_build_job_passes_every_check(build_job, tmp_path):
    """The checkov skips and the semantic rules hold for the Jobs the runner creates, not only the CronJob."""
    for version in K8S_VERSIONS:
        assert schema_errors(build_job, version) == []
    assert semantic_problems(build_job) == []
    write_manifests([build_job], tmp_path)
    result = run_checkov(tmp_path)
    assert result.returncode == 0, result.stdout[-3000:]
    alone = run_checkov(tmp_path, with_base=False)  # no NetworkPolicy in sight
    assert alone.returncode != 0 and "CKV2_K8S_6" in alone.stdout


def test_schemas_catch_a_broken_job(broken_job):
    errors = "\n".join(schema_errors(broken_job, K8S_VERSIONS[0]))
    assert "'two' is not of type 'integer'" in errors
    assert "'ttlSecondsAfterFinshed' was unexpected" in errors


def test_semantic_checks_catch_a_broken_job(broken_job):
    problems = "\n".join(semantic_problems(broken_job))
    for expected in ("at most 63 for a Job", "invalid value 'Jinja2/3.1.4-GCCcore-system'",
                     "restartPolicy: a Job's pods need Never or OnFailure", "quantity 2 is not a string",
                     "'lots' is not a quantity", "a GPU count must be a whole number", "['hostPath'] not allowed",
                     "privileged: not allowed", "allowPrivilegeEscalation: must be false",
                     "capabilities.drop: must contain ALL", "readOnlyRootFilesystem: must be true"):
        assert expected in problems


def test_semantic_checks_catch_a_bad_schedule(built):
    cronjob = copy.deepcopy(one(built["base"], "CronJob"))
    for schedule in ("0 2 * *", "61 2 * * *", "0 2 * * funday", "TZ=UTC 0 2 * * *"):
        cronjob["spec"]["schedule"] = schedule
        assert semantic_problems(cronjob), schedule
    cronjob["spec"]["schedule"] = "*/15 0-6 1,15 jan-jun mon-fri"
    assert semantic_problems(cronjob) == []


def test_unknown_kinds_are_refused():
    with pytest.raises(UnknownKind, match="Couldn't find schema for kind Workflow"):
        schema_errors({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "metadata": {"name": "w"}}, "1.34")


@pytest.mark.slow  # checkov takes seconds a run
def test_checkov_catches_a_privileged_job(broken_job, tmp_path):
    broken_job["spec"] = {"template": broken_job["spec"]["template"]}
    broken_job["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    broken_job["metadata"]["name"] = "modlib-broken"
    write_manifests([broken_job], tmp_path)
    result = run_checkov(tmp_path)  # with the base beside it, as build Jobs are scanned
    assert result.returncode != 0
    for check in ("CKV_K8S_16", "CKV_K8S_20", "CKV_K8S_37"):  # privileged, escalation, capabilities
        assert check in result.stdout


def test_pod_templates_cover_every_workload(built):
    assert [p for p, _ in pod_templates(one(built["base"], "CronJob"))] == ["spec.jobTemplate.spec.template"]
