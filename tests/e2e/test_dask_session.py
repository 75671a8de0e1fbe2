"""Dask workers run the notebook's modules (issue 27, point 3), with the demo library's dask module and real
dask.distributed: a scheduler and workers started as processes through ``live/bin/modlib-exec``, then worker
pods made from a dask-kubernetes-style pod template patched by ``modlib_session.patch_pod`` and run by the
emulated kubelet (tests/k8s/emulator.py) with the library's claim mounted read-only. A client that loaded the
same modules checks with ``client.run`` that each worker imports jinja2 3.1.4 from the library, and
``modlib_session.mismatches`` names the worker that loaded another Jinja2."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from bench.notebook_server import stop_group
from tests.e2e.test_notebook_side import KERNEL, bare_env, kernel_session
from tests.k8s.emulator import Emulator, Kubelet

pytestmark = pytest.mark.e2e
DASK = "dask/2026.8.0-GCCcore-system"
JINJA = "Jinja2/3.1.4-GCCcore-system"
OTHER_JINJA = "Jinja2/3.1.5-GCCcore-system"
CLAIM = "modlib-library"
NS = "notebooks"
SESSION = 'import os, runpy; modlib_session = runpy.run_path(os.environ["MODLIB_SESSION_PY"])\n'
#: The notebook's part for a pod: the pod template (argv[1]) patched with its session, as JSON.
PATCH = SESSION + 'import json, sys; print(json.dumps(modlib_session["patch_pod"](json.loads(sys.argv[1]))))'
#: The client, run through the launcher as a notebook that loaded the modules: what each worker imports and
#: what modlib_session finds, as JSON, then what check_workers raised.
CLIENT = SESSION + r"""
import json, sys
from distributed import Client

def imports():
    import jinja2, sys
    return [jinja2.__version__, jinja2.__file__, sys.executable]

with Client(scheduler_file=sys.argv[1], timeout=60) as client:
    client.wait_for_workers(int(sys.argv[2]), timeout=120)
    print(json.dumps({"imports": client.run(imports), "mismatches": modlib_session["mismatches"](client)}))
    try:
        modlib_session["check_workers"](client)
    except RuntimeError as err:
        print(err)
"""


#: The notebook, in the Jinja2 3.1.4 kernel: it loads dask as jupyter-lmod's panel does, then starts a scheduler
#: and two workers through its session's launcher (their process ids printed for the test to end them). Cells,
#: run one after another: kernel_session gives a cell a minute at most.
NOTEBOOK = (f"import module\nawait module.load({DASK!r})\n" + SESSION + r"""
import json, subprocess, time
launcher = modlib_session["pod_patch"]()["command"]
scheduler = subprocess.Popen(launcher + ["dask", "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                         "--scheduler-file", SCHEDULER_FILE])
workers = [subprocess.Popen(launcher + ["dask", "worker", "--scheduler-file", SCHEDULER_FILE, "--name", name,
                                        "--nthreads", "1", "--no-nanny", "--no-dashboard"]) for name in ("w1", "w2")]
print(json.dumps([p.pid for p in [scheduler, *workers]]))
""", r"""
from distributed import Client
deadline = time.monotonic() + 55
while not os.path.exists(SCHEDULER_FILE) and time.monotonic() < deadline:
    time.sleep(0.5)
client = Client(scheduler_file=SCHEDULER_FILE, timeout=30)
""", r"""
client.wait_for_workers(2, timeout=55)
""", r"""
print(" ".join(launcher))
def imports():
    import jinja2, sys
    return [jinja2.__version__, jinja2.__file__, sys.executable]
print(json.dumps(client.run(imports)))
modlib_session["check_workers"](client)
print("check_workers: no mismatch")
client.close()
""")


def worker_pod(name: str, scheduler: str) -> dict:
    """A worker pod in the shape dask-kubernetes' classic ``make_pod_spec`` gives (its container runs ``args``
    through the image's entrypoint, the scheduler's address from the environment), with the security context
    Pod Security "restricted" asks for and a read-only root (the worker's files go to an emptyDir at /tmp);
    ``--no-nanny`` keeps one process per worker."""
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": "dask", "dask.org/component": "worker"}},
            "spec": {"restartPolicy": "Never",
                     "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 100,
                                         "seccompProfile": {"type": "RuntimeDefault"}},
                     "containers": [{
                         "name": "dask-worker", "image": "ghcr.io/dask/dask:2026.8.0",
                         "args": ["dask", "worker", "$(DASK_SCHEDULER_ADDRESS)", "--name", name, "--nthreads", "1",
                                  "--no-nanny", "--no-dashboard", "--death-timeout", "60"],
                         "env": [{"name": "DASK_SCHEDULER_ADDRESS", "value": scheduler},
                                 {"name": "HOME", "value": "/tmp"}],
                         "resources": {"limits": {"cpu": "1", "memory": "1Gi"},
                                       "requests": {"cpu": "1", "memory": "1Gi"}},
                         "volumeMounts": [{"name": "scratch", "mountPath": "/tmp"}],
                         "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                             "capabilities": {"drop": ["ALL"]}}}],
                     "volumes": [{"name": "scratch", "emptyDir": {}}]}}


class Launcher:
    """Processes started through the demo library's modlib-exec, as a container with the mount runs them."""

    def __init__(self, root: Path, scratch: Path, stack: ExitStack):
        self.exec, self.scratch, self.stack = str(root / "live" / "bin" / "modlib-exec"), scratch, stack
        self.env = {"PATH": "/usr/bin:/bin", "HOME": str(scratch), "MODLIB_CLAIM": CLAIM}

    def argv(self, modules: list[str], *command: str) -> list[str]:
        return [self.exec, "--target", "cpu", "--modules", ",".join(modules), "--", *command]

    def start(self, name: str, modules: list[str], *command: str) -> Path:
        log = self.scratch / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(self.argv(modules, *command), stdout=out, stderr=subprocess.STDOUT,
                                    env=self.env, cwd=self.scratch, start_new_session=True)
        self.stack.callback(stop_group, proc)
        return log

    def run(self, modules: list[str], *command: str) -> str:
        result = subprocess.run(self.argv(modules, *command), capture_output=True, text=True, env=self.env,
                                cwd=self.scratch, timeout=300)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
        return result.stdout

    def client(self, scheduler_file: Path, workers: int) -> tuple[dict, str]:
        out = self.run([DASK, JINJA], "python", "-c", CLIENT, str(scheduler_file), str(workers))
        first, _, rest = out.partition("\n")
        return json.loads(first), rest


@contextmanager
def scheduler(root: Path, scratch: Path) -> Iterator[tuple[Launcher, Path]]:
    """A scheduler on 127.0.0.1 through the launcher with the notebook's modules; its address in the file."""
    with ExitStack() as stack:
        launcher = Launcher(root, scratch, stack)
        address = scratch / "scheduler.json"
        log = launcher.start("scheduler", [DASK, JINJA], "dask", "scheduler", "--host", "127.0.0.1", "--port", "0",
                             "--no-dashboard", "--scheduler-file", str(address))
        deadline = time.monotonic() + 120
        while not address.exists():
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        yield launcher, address


def assert_from_the_library(imports: dict, root: Path, count: int) -> None:
    assert len(imports) == count, imports
    for version, where, executable in imports.values():
        assert version == "3.1.4"
        assert where.startswith(f"{root}/cpu/software/Jinja2-"), where
        assert executable.startswith(f"{root}/cpu/software/Python-"), executable


def test_workers_started_through_the_launcher_run_the_notebooks_modules(demo_library, tmp_path):
    root = demo_library[0]
    with scheduler(root, tmp_path) as (launcher, address):
        for name in ("w1", "w2"):
            launcher.start(name, [DASK, JINJA], "dask", "worker", "--scheduler-file", str(address), "--name", name,
                           "--nthreads", "1", "--no-nanny", "--no-dashboard", "--local-directory", str(tmp_path))
        seen, _ = launcher.client(address, 2)
        assert_from_the_library(seen["imports"], root, 2)
        assert seen["mismatches"] == {}

        launcher.start("w3", [DASK, OTHER_JINJA], "dask", "worker", "--scheduler-file", str(address), "--name", "w3",
                       "--nthreads", "1", "--no-nanny", "--no-dashboard", "--local-directory", str(tmp_path))
        seen, raised = launcher.client(address, 3)
    (odd,) = [address for address, (version, _, _) in seen["imports"].items() if version != "3.1.4"]
    assert seen["imports"][odd][0] == "3.1.5"
    assert seen["mismatches"] == {odd: {"target": "cpu", "missing": [JINJA], "extra": [OTHER_JINJA]}}
    assert raised == ("Dask workers that do not run this session's modules:\n"
                      f"  {odd}: target 'cpu', missing ['{JINJA}'], extra ['{OTHER_JINJA}']\n")


def test_a_notebook_starts_workers_that_import_its_jinja2_from_the_library(demo_library, monkeypatch, tmp_path):
    """The Done-when of issue 27: the Jinja2 3.1.4 kernel loads dask, starts a scheduler and two workers
    through the launcher, and ``client.run`` finds 3.1.4 from the library on each."""
    root = demo_library[0]
    monkeypatch.setenv("JUPYTER_PATH", str(root / "live" / "targets" / "cpu" / "jupyter"))
    start, *cells = NOTEBOOK
    pids: list[int] = []
    with kernel_session(KERNEL, {**bare_env(tmp_path), "MODLIB_CLAIM": CLAIM}) as (_, run):
        try:
            run(f"SCHEDULER_FILE = {str(tmp_path / 'scheduler.json')!r}")
            # the kernel also says on stderr which packages it had imported before the load (tornado ...)
            pids = json.loads(next(line for line in run(start).splitlines() if line.startswith("[")))
            out = "".join(run(cell) for cell in cells)
        finally:
            for pid in pids:
                os.kill(pid, signal.SIGTERM)
    print(out)  # the session, for the record (pytest -s)
    lines = out.splitlines()  # and what dask logs there
    launcher = next(line for line in lines if line.startswith(str(root / "live" / "bin" / "modlib-exec")))
    assert {DASK, JINJA} <= set(launcher.split(" --modules ")[1].split()[0].split(","))
    assert_from_the_library(json.loads(next(line for line in lines if line.startswith("{"))), root, 2)
    assert "check_workers: no mismatch" in lines


@pytest.mark.skipif(os.geteuid() != 0, reason="mount namespaces and setpriv need root (test machines are root)")
@pytest.mark.skipif(not all(shutil.which(t) for t in ("unshare", "setpriv", "mount")), reason="util-linux missing")
def test_worker_pods_from_a_patched_template_run_the_notebooks_modules(demo_library, tmp_path):
    """The notebook patches the template (``patch_pod``) and creates the pods; the emulated kubelet runs each
    with the claim (the library's folder) mounted where the patch says, as uid 1000."""
    root = demo_library[0]
    (tmp_path / "kubelet").mkdir()
    with scheduler(root, tmp_path) as (launcher, address), Emulator() as emulator:
        kubelet = Kubelet(emulator, NS, {CLAIM: root}, {"PATH": "/usr/bin:/bin"}, tmp_path / "kubelet")
        scheduler_address = json.loads(address.read_text())["address"]
        for name in ("dask-worker-a", "dask-worker-b"):
            template = json.dumps(worker_pod(name, scheduler_address))
            pod = json.loads(launcher.run([DASK, JINJA], "python", "-c", PATCH, template))
            claim = {"claimName": CLAIM, "readOnly": True}
            assert pod["spec"]["volumes"][-1] == {"name": "modlib-library", "persistentVolumeClaim": claim}
            kubelet.core.create_namespaced_pod(NS, pod)
            launcher.stack.callback(stop_group, kubelet.start_pod(name))
        seen, _ = launcher.client(address, 2)
    assert_from_the_library(seen["imports"], root, 2)
    assert seen["mismatches"] == {}
