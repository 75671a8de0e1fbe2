"""The Kubernetes executor's calls one at a time against kmock's emulated API server, with no kubelet:
a Job it creates stays active, so waiting, polling and cancelling are seen on a build that runs."""

from __future__ import annotations

import os
import socket
import time
from datetime import UTC, datetime

import pytest
from kubernetes import client

from builder.execute.command import Invocation
from builder.execute.inputs import inputs_dir
from builder.execute.k8s_objects import SELECTOR
from builder.execute.kubernetes import KubernetesExecutor
from builder.plan.graph import Node
from builder.read.config import load_settings
from tests.helpers import bundle_easyconfig, modlib, write_config, write_easystack
from tests.k8s.emulator import Emulator

NS = "modlib-calls"


@pytest.fixture
def emulator():
    with Emulator() as emulator:
        yield emulator


@pytest.fixture
def settings(tmp_path):
    stack = write_easystack(tmp_path / "cpu.yaml", ["X-1.eb"])
    config = write_config(tmp_path, {"cpu": {"kind": "cpu", "tree": "cpu", "easystacks": [str(stack)]}},
                          extra={"kubernetes": {"namespace": NS, "poll_seconds": 1}})
    return load_settings(config, env={})


def api(url: str) -> client.ApiClient:
    cfg = client.Configuration()
    cfg.host = url
    return client.ApiClient(cfg)


def test_constructing_the_executor_touches_neither_cluster_nor_volume(settings):
    """Nothing listens at the address: any request would fail; the library root stays unmade."""
    executor = KubernetesExecutor(settings, api("http://127.0.0.1:9"), report=lambda msg: None)
    assert executor.lost() is None and not settings.root.exists()
    executor.close()  # a Lease never taken is not given back


def test_wait_times_out_poll_returns_at_once_and_cancel_leaves_the_job_running(settings, emulator):
    executor = KubernetesExecutor(settings, api(emulator.url), report=lambda msg: None)
    assert emulator.requests() == []
    node = Node(tree="cpu", module="X/1", name="X", easyconfig=settings.root / "X-1.eb", target="cpu", deps=(),
                installed=False, sha256="0")
    inv = Invocation(argv=("true",), env=(), prefix=str(settings.layout.prefix("cpu", "X-1")))
    log = settings.root / "logs" / "X.log"
    with executor:
        assert any(r.url.path.endswith("/leases") and r.method == "POST" for r in emulator.requests())
        executor.submit(node, inv, log)
        [job] = [r.data["metadata"]["name"] for r in emulator.requests()
                 if r.method == "POST" and r.url.path == f"/apis/batch/v1/namespaces/{NS}/jobs"]
        t0 = time.monotonic()
        assert executor.wait(1.5) == []
        assert 1.5 <= time.monotonic() - t0 < 5
        t0 = time.monotonic()
        assert executor.poll() == [] and time.monotonic() - t0 < 1
        executor.cancel(node)
        [(ended, run)] = executor.wait()
        assert ended == node and run.exit_code != 0 and run.where == f"Job {NS}/{job}"
        assert "left running" in log.read_text() and "the next run adopts it" in log.read_text()
    assert not emulator.object("jobs", NS, job).deleted  # the next run adopts it
    assert [r for r in emulator.requests() if r.method == "DELETE" and "/jobs" in r.url.path] == []
    assert SELECTOR in {r.params.get("labelSelector") for r in emulator.requests()}


def test_a_run_the_lease_refuses_fetches_and_stages_nothing(tmp_path, emulator):
    """The Lease is held by a live process (this one): `modlib build` exits 3 before it fetches a
    source or stages the pods' inputs on the volume."""
    site = tmp_path / "site"
    (site / "x" / "X").mkdir(parents=True)
    (site / "x" / "X" / "X-1.eb").write_text(bundle_easyconfig("X", "", "a node to build").replace(
        "toolchain = {'name': 'GCCcore', 'version': 'system'}", "toolchain = SYSTEM"))
    stack = write_easystack(tmp_path / "cpu.yaml", ["X-1.eb"])
    config = write_config(tmp_path, {"cpu": {"kind": "cpu", "tree": "cpu", "easystacks": [str(stack)]}},
                          easyconfig_paths=[str(site)], root=str(tmp_path / "library"),
                          extra={"kubernetes": {"namespace": NS, "poll_seconds": 1}})
    settings = load_settings(config, env={})
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    client.CoordinationV1Api(api(emulator.url)).create_namespaced_lease(NS, {
        "metadata": {"name": "modlib-run"},
        "spec": {"holderIdentity": f"{socket.gethostname()}:{os.getpid()}:test", "leaseDurationSeconds": 60,
                 "acquireTime": now, "renewTime": now}})
    result = modlib("build", "--config", str(config), "--executor", "kubernetes",
                    "--kubeconfig", str(emulator.write_kubeconfig(tmp_path / "kubeconfig")))
    assert result.returncode == 3, result.stdout + result.stderr
    assert "another run holds Lease" in result.stderr
    assert not settings.layout.sources().exists() and not inputs_dir(settings).exists()
    assert [r.method for r in emulator.requests() if "/jobs" in r.url.path] == []
