"""`modlib render`: the Jobs of one run, checked as data and against the upstream schemas."""

import dataclasses
import json
import subprocess
from pathlib import Path

import pytest
import yaml

from builder.execute.command import invocation
from builder.execute.inputs import inputs_dir
from builder.execute.k8s_objects import ENTRY, build_job, failure_policy, job_name
from builder.plan.planner import make_plan
from builder.read.config import load_settings
from tests.helpers import REPO, modlib
from tests.k8s.emulator import Emulator, policy_action
from tests.k8s.validate import K8S_VERSIONS, kubectl, run_checkov, schema_errors, semantic_problems

ROOT = "/srv/modlib"
EVICTED = [{"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI"}]


@pytest.fixture(scope="module")
def demo():
    return load_settings(REPO / "easyconfigs" / "library.yaml", env={"MODLIB_ROOT": ROOT})


@pytest.fixture(scope="module")
def rendered(tmp_path_factory, demo):
    """Both demo targets rendered by the real CLI against an empty library."""
    out = {}
    for target in demo.targets:
        folder = tmp_path_factory.mktemp(f"render-{target}")
        result = modlib("render", "--target", target, "--out", str(folder), env={"MODLIB_ROOT": ROOT})
        assert result.returncode == 0, result.stderr
        out[target] = folder
    return out


def _jobs(folder: Path) -> list[dict]:
    return [yaml.safe_load(p.read_text()) for p in sorted(folder.glob("*.yaml"))]


@pytest.mark.parametrize("target", ["cpu", "cuda"])
def test_one_job_per_planned_node_and_all_valid(rendered, demo, target):
    jobs = _jobs(rendered[target])
    plan = make_plan(demo, [demo.target(target)])
    assert len(jobs) == len(plan.nodes) == len(plan.missing())
    assert {j["metadata"]["annotations"]["modlib.io/module"] for j in jobs} == {n.module for n in plan.nodes}
    kustomization = yaml.safe_load((rendered[target] / "Kustomization").read_text())
    assert len(kustomization["resources"]) == len(jobs)
    for job in jobs:
        for version in K8S_VERSIONS:
            assert schema_errors(job, version) == [], job["metadata"]["name"]
        assert semantic_problems(job) == [], job["metadata"]["name"]


@pytest.mark.slow  # checkov takes seconds a run
@pytest.mark.parametrize("target", ["cpu", "cuda"])
def test_checkov_passes_on_rendered_jobs(rendered, target):
    result = run_checkov(rendered[target])
    assert result.returncode == 0, result.stdout[-4000:]


def test_pods_are_restricted_and_run_the_local_command(demo):
    plan = make_plan(demo, [demo.target("cuda")])
    node = plan.index[("cuda", "saxpy/1.0-GCCcore-system-CUDA-13.2.2")]
    inv = invocation(demo, node)
    job = build_job(demo, node, inv, inputs_dir(demo))
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == [*ENTRY, *inv.argv]  # the very command the local pool runs, under sh
    assert "--allow-use-as-root-and-accept-consequences" not in container["command"]
    assert not any(e["name"].startswith("EASYBUILD_ALLOW_USE_AS_ROOT") for e in container["env"])
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    ctx = container["securityContext"]
    assert ctx["readOnlyRootFilesystem"] and not ctx["allowPrivilegeEscalation"] and ctx["capabilities"] == {
        "drop": ["ALL"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts[ROOT] == "library" and mounts["/tmp"] == "scratch"
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["EASYBUILD_LOCKS_DIR"].startswith("/tmp/")  # the pod's emptyDir: a retry pod gets a fresh one
    assert not any(a.startswith("--locks-dir") for a in container["command"])
    assert pod["volumes"][0] == {"name": "library", "persistentVolumeClaim": {"claimName": "modlib-library"}}
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert job["metadata"]["labels"]["modlib.io/module"] == "saxpy-1.0-GCCcore-system-CUDA-13.2.2"
    rules = job["spec"]["podFailurePolicy"]["rules"]
    # the first matching rule decides: a disruption before any exit code (eb exits 15 on SIGTERM)
    assert rules[0] == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}
    fail_at_once = rules[1]["onExitCodes"]["values"]
    assert {1, 15, 16, 18, 42, 45} <= set(fail_at_once)  # postinstallcmds, configure, build, install, checksum, sanity
    assert not {10, 41, 47, 143} & set(fail_at_once)  # fetches and downloads, SIGTERM are retried
    assert 137 in fail_at_once  # killed whole (for memory): the run retries it as a new Job with more memory


def test_the_first_matching_rule_decides_and_a_disruption_comes_before_any_exit_code():
    """EasyBuild exits 15 on SIGTERM, also its code for a failed configure step; the entry shell of a
    build pod exits 143 on SIGTERM. In the old rule order an evicted pod's 15 failed its Job."""
    policy = failure_policy()
    assert policy_action(policy, 15, EVICTED) == policy_action(policy, 143, EVICTED) == "Ignore"
    assert policy_action(policy, 15, []) == policy_action(policy, 1, []) == "FailJob"
    assert policy_action(policy, 45, []) == policy_action(policy, 18, []) == "FailJob"  # sanity check, install
    assert all(policy_action(policy, code, []) is None for code in (143, 10, 41, 47))  # counted, retried
    assert policy_action(policy, 137, []) == "FailJob"  # another pod with the same memory would be killed again
    swapped = {"rules": policy["rules"][::-1]}
    assert policy_action(swapped, 15, EVICTED) == "FailJob"


def test_pods_write_only_their_prefix_and_staging_folder(demo):
    """The claim read-only at the root; the build's own two folders writable, as subPaths of the claim."""
    node = make_plan(demo, [demo.target("cpu")]).index[("cpu", "Jinja2/3.1.4-GCCcore-system")]
    inv = invocation(demo, node)
    (container,) = build_job(demo, node, inv, inputs_dir(demo))["spec"]["template"]["spec"]["containers"]
    library = [m for m in container["volumeMounts"] if m["name"] == "library"]
    staging = f"cpu/.staging/{node.module.replace('/', '--')}"
    prefix = inv.prefix.removeprefix(ROOT + "/")
    assert library == [{"name": "library", "mountPath": ROOT, "readOnly": True},
                       {"name": "library", "mountPath": inv.prefix, "subPath": prefix},
                       {"name": "library", "mountPath": f"{ROOT}/{staging}", "subPath": staging}]
    assert prefix.startswith("cpu/software/Jinja2-")
    assert f"--installpath-software={inv.prefix}" in container["command"]
    assert f"--installpath-modules={ROOT}/{staging}" in container["command"]


def _demo_config() -> dict:
    return yaml.safe_load((REPO / "easyconfigs" / "library.yaml").read_text())


def _demo_with(tmp_path: Path, config: dict) -> Path:
    """``config`` (the demo's, changed) as a library.yaml in ``tmp_path`` that still finds the demo's files."""
    (tmp_path / "easyconfigs").mkdir(exist_ok=True)
    path = tmp_path / "easyconfigs" / "library.yaml"
    path.write_text(yaml.safe_dump({**config, "easyconfig_paths": [str(REPO / "easyconfigs")],
                                    "hooks": str(REPO / "hooks" / "modlib_hooks.py"),
                                    "targets": {k: {**v, "easystacks": [str(REPO / s) for s in v["easystacks"]]}
                                                for k, v in config["targets"].items()}}))
    return path


def test_cpu_jobs_ask_for_no_gpu_and_placement_comes_from_the_config(tmp_path, demo):
    plan = make_plan(demo, [demo.target("cuda")])
    cpu_node = plan.index[("cpu", "GCCcore/system")]
    pod = build_job(demo, cpu_node, invocation(demo, cpu_node), tmp_path)["spec"]["template"]["spec"]
    assert "nodeSelector" not in pod and "tolerations" not in pod
    assert "nvidia.com/gpu" not in pod["containers"][0]["resources"]["limits"]

    config = _demo_config()
    config["targets"]["cuda"]["kubernetes"] = {
        "gpus": 0, "node_selector": {"node-role/compile": "yes"}, "tolerations": [],
        "resources": {"requests": {"cpu": "8", "memory": "32Gi"}, "limits": {"memory": "32Gi"}},
        "pod_overrides": {"priorityClassName": "gpu-builds", "securityContext": {"fsGroup": 2000}}}
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}}
    config["kubernetes"] = {"namespace": "builds", "claim": "software", "image": "registry.example/b:1",
                            "pod_overrides": {"affinity": affinity, "imagePullSecrets": [{"name": "registry"}],
                                              "priorityClassName": "builds"}}
    custom = load_settings(_demo_with(tmp_path, config), env={"MODLIB_ROOT": ROOT})
    node = plan.index[("cuda", "saxpy/1.0-GCCcore-system-CUDA-13.2.2")]
    job = build_job(custom, node, invocation(custom, node), tmp_path)
    pod = job["spec"]["template"]["spec"]
    assert job["metadata"]["namespace"] == "builds" and pod["containers"][0]["image"] == "registry.example/b:1"
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "software"
    assert pod["nodeSelector"] == {"node-role/compile": "yes"} and "tolerations" not in pod
    # pinned values win; the computed cpu limit (the target's 2 cores) is raised to the pinned request
    assert pod["containers"][0]["resources"] == {"requests": {"cpu": "8", "memory": "32Gi"},
                                                 "limits": {"memory": "32Gi", "cpu": "8"}}
    # pod_overrides: library-wide, then the target's, merged last; dicts key by key, the rest replaced
    assert pod["affinity"] == affinity and pod["imagePullSecrets"] == [{"name": "registry"}]
    assert pod["priorityClassName"] == "gpu-builds"
    assert pod["securityContext"]["fsGroup"] == 2000 and pod["securityContext"]["runAsNonRoot"] is True
    for version in K8S_VERSIONS:
        assert schema_errors(job, version) == []


def test_container_overrides_merge_into_the_build_container_by_name(tmp_path, demo):
    """kubespawner's extra_container_config: env on name, volumeMounts on mountPath, the rest key by key;
    pod_overrides' containers entry named like the build container merges into it, another is added."""
    config = _demo_config()
    shipper = {"name": "log-shipper", "image": "registry.example/ship:1",  # restricted, as the build container
               "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True,
                                   "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}}
    config["kubernetes"] = {
        "container_overrides": {"env": [{"name": "HTTPS_PROXY", "value": "http://proxy:3128"},
                                        {"name": "EASYBUILD_PARALLEL", "value": "1"}],
                                "volumeMounts": [{"name": "scratch", "mountPath": "/tmp", "readOnly": False}],
                                "securityContext": {"runAsUser": 2000}},
        "pod_overrides": {"containers": [{"name": "eb", "env": [{"name": "HTTPS_PROXY", "value": "http://p2:3128"}]},
                                         shipper],
                          "volumes": [{"name": "certs", "configMap": {"name": "site-ca"}}]}}
    config["targets"]["cuda"]["kubernetes"] = {"container_overrides": {
        "volumeMounts": [{"name": "certs", "mountPath": "/etc/ssl/site", "readOnly": True}]}}
    custom = load_settings(_demo_with(tmp_path, config), env={"MODLIB_ROOT": ROOT})
    plan = make_plan(custom, [custom.target("cuda")])
    node = plan.index[("cuda", "saxpy/1.0-GCCcore-system-CUDA-13.2.2")]
    job = build_job(custom, node, invocation(custom, node), tmp_path)
    plain = build_job(demo, node, invocation(demo, node), tmp_path)["spec"]["template"]["spec"]
    pod = job["spec"]["template"]["spec"]
    build, sidecar = pod["containers"]
    env = [(e["name"], e["value"]) for e in build["env"]]
    values = dict(env)
    assert values["HTTPS_PROXY"] == "http://p2:3128" and values["EASYBUILD_PARALLEL"] == "1"
    assert {e["name"] for e in plain["containers"][0]["env"]} < set(values)
    assert len(env) == len(values)  # merged on name: no variable twice
    mounts = {m["mountPath"]: m for m in build["volumeMounts"]}
    assert mounts["/tmp"] == {"name": "scratch", "mountPath": "/tmp", "readOnly": False}
    assert mounts["/etc/ssl/site"]["name"] == "certs"  # the target's, after the library-wide ones
    assert [m for m in build["volumeMounts"] if m["mountPath"] != "/etc/ssl/site"] == [
        {**m, "readOnly": False} if m["mountPath"] == "/tmp" else m for m in plain["containers"][0]["volumeMounts"]]
    assert build["securityContext"] == {**plain["containers"][0]["securityContext"], "runAsUser": 2000}
    assert sidecar == shipper
    assert pod["volumes"] == plain["volumes"] + [{"name": "certs", "configMap": {"name": "site-ca"}}]
    for version in K8S_VERSIONS:
        assert schema_errors(job, version) == []
    assert semantic_problems(job) == []


@pytest.mark.parametrize(("where", "override", "problem"), [
    ("container_overrides", {"securityContext": {"runAsNonRoot": False}}, "securityContext.runAsNonRoot"),
    ("container_overrides", {"securityContext": {"readOnlyRootFilesystem": False}},
     "securityContext.readOnlyRootFilesystem"),
    ("container_overrides", {"securityContext": {"allowPrivilegeEscalation": True}},
     "securityContext.allowPrivilegeEscalation"),
    ("container_overrides", {"securityContext": {"privileged": True}}, "securityContext.privileged"),
    ("container_overrides", {"securityContext": {"capabilities": {"drop": ["NET_RAW"]}}}, "capabilities.drop"),
    ("container_overrides", {"securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}}, "capabilities.add"),
    ("container_overrides", {"securityContext": None}, "securityContext must stay"),
    ("container_overrides", {"name": "other"}, "the 'eb' container must stay"),
    ("pod_overrides", {"automountServiceAccountToken": True}, "automountServiceAccountToken"),
    ("pod_overrides", {"containers": [{"name": "eb", "securityContext": {"runAsNonRoot": False}}]},
     "securityContext.runAsNonRoot"),
    ("pod_overrides", {"containers": "none"}, "the 'eb' container must stay"),
])
@pytest.mark.parametrize("layer", ["library", "target"])
def test_overrides_that_turn_off_the_build_isolation_are_bad_input(tmp_path, where, override, problem, layer):
    config = _demo_config()
    section = config.setdefault("kubernetes", {}) if layer == "library" else config["targets"]["cuda"].setdefault(
        "kubernetes", {})
    section[where] = override
    path = _demo_with(tmp_path, config)
    field = f"kubernetes.{where}" if layer == "library" else f"targets.cuda.kubernetes.{where}"
    result = modlib("render", "--config", str(path), "--target", "cuda", "--out", str(tmp_path / "jobs"),
                    env={"MODLIB_ROOT": ROOT})
    assert result.returncode == 2, result.stderr
    assert f"{path}: invalid configuration at '{field}'" in result.stderr and problem in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "jobs").exists()


def test_job_names_hash_the_node_not_the_plan(demo):
    plan = make_plan(demo, [demo.target("cpu")])
    node = plan.index[("cpu", "Jinja2/3.1.4-GCCcore-system")]
    inv = invocation(demo, node)
    name = job_name(node, inv)
    assert name.startswith("cpu-jinja2-3-1-4-gcccore-system-") and len(name) <= 63
    # the same node in a different plan (another target, more nodes around it) keeps its name
    bigger = make_plan(demo, list(demo.targets.values())).index[node.key]
    assert job_name(bigger, invocation(demo, bigger)) == name
    # a changed easyconfig, or another command for it, is another Job
    assert job_name(dataclasses.replace(node, sha256="0" * 64), inv) != name
    assert job_name(node, invocation(demo, node, rebuild=True)) != name
    long = dataclasses.replace(node, module="X" * 200 + "/1.0")
    assert len(job_name(long, inv)) <= 63


def test_kubectl_apply_f_and_apply_k_take_the_rendered_folder(rendered, tmp_path):
    """``kubectl apply -f DIR`` sends every .yaml, .yml and .json file of DIR as an object (a
    kustomization.yaml there failed it); ``apply -k`` reads the extensionless Kustomization. A client
    dry run still asks an API server for the kinds it sends: the emulator's serves it (kubectl's
    OpenAPI validation is off, the schemas are checked above)."""
    folder = rendered["cpu"]
    with Emulator() as emulator:
        kubeconfig = str(emulator.write_kubeconfig(tmp_path / "kubeconfig"))
        applied = {how: subprocess.run([kubectl(), "--kubeconfig", kubeconfig, "apply", "--dry-run=client",
                                        "--validate=false", how, str(folder)], capture_output=True, text=True)
                   for how in ("-f", "-k")}
    jobs = sorted(f"job.batch/{j['metadata']['name']} created (dry run)" for j in _jobs(folder) if j["kind"] == "Job")
    for how, result in applied.items():
        assert result.returncode == 0, (how, result.stderr)
        assert sorted(result.stdout.splitlines()) == jobs, how


def test_render_of_a_published_library_writes_no_jobs(tmp_path, demo_library):
    root, env, _ = demo_library
    result = modlib("render", "--target", "cuda", "--out", str(tmp_path), env=env)
    assert result.returncode == 0, result.stderr
    assert _jobs(tmp_path) == [] and "wrote 0 Job manifest(s)" in result.stdout
    assert json.loads((root / "live" / "inputs.json").read_text())  # the library it looked at was published


def test_render_warns_when_the_root_is_not_where_the_cluster_mounts_the_library(tmp_path):
    """The demo's `root: library` is a workstation's path; the Jobs would bake it into every module."""
    result = modlib("render", "--target", "cpu", "--out", str(tmp_path / "jobs"),
                    env={"MODLIB_ROOT": str(tmp_path / "library")})
    assert result.returncode == 0
    assert result.stderr.startswith(f"modlib: warning: the library root is {tmp_path / 'library'}, but the cluster "
                                    f"mounts the library at {ROOT} (kubernetes.mount_path in ")
    at_mount = modlib("render", "--target", "cpu", "--out", str(tmp_path / "at-mount"), env={"MODLIB_ROOT": ROOT})
    assert at_mount.returncode == 0 and "warning" not in at_mount.stderr
