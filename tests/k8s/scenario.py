"""The emulated cluster scenario of test_executor_emulated.py: its easyconfigs, its volume, its
runner pods and its runs, each run a runner pod started the way the CronJob starts one.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tests.helpers import (
    LMOD_INIT,
    REPO,
    bundle_easyconfig,
    copy_site_easyconfigs,
    link_sources,
    modlib,
    write_config,
    write_easystack,
)
from tests.k8s.emulator import own_folders, sandbox_argv

ROOT, SCRATCH, NS, UID = "/srv/modlib", "/srv/scratch", "modlib", 1000
BROKEN, NEEDS_BROKEN, SLOW = ("cpu", "broken/1.0-GCCcore-system"), ("cpu", "needsbroken/1.0-GCCcore-system"), \
    ("cpu", "slow/1.0-GCCcore-system")
OOMER, TAMPER = ("cpu", "oomer/1.0-GCCcore-system"), ("cpu", "tamper/1.0-GCCcore-system")
#: what `tamper` appends to: another module's file in the store, another module's install, the live env.sh
TAMPERED = (f"{ROOT}/cpu/modules/all/MarkupSafe/3.0.2-GCCcore-system.lua",
            f"{ROOT}/cpu/software/MarkupSafe-*/MarkupSafe/3.0.2-GCCcore-system/easybuild/*.eb",
            f"{ROOT}/live/targets/cpu/env.sh")


def waiting_easyconfig(name: str, marker: str, then: str = "true") -> str:
    """A build that leaves bin/<name> in its install, then waits while ``marker`` exists."""
    return bundle_easyconfig(name, f"postinstallcmds = ['mkdir -p %(installdir)s/bin && touch %(installdir)s/bin/{name}"
                                   f" && {then} && while [ -e {marker} ]; do sleep 0.2; done']\n"
                                   f"sanity_check_paths = {{'files': ['bin/{name}'], 'dirs': []}}")


#: library.yaml's kubernetes section of every emulated scenario
KUBERNETES = {"namespace": NS, "scratch": {"path": SCRATCH}, "poll_seconds": 1, "backoff_limit": 1}

FIXTURES = {
    "broken": bundle_easyconfig("broken", "sanity_check_paths = {'files': ['bin/never-there'], 'dirs': []}"),
    "needsbroken": bundle_easyconfig("needsbroken", "dependencies = [('broken', '1.0')]"),
    "slow": waiting_easyconfig("slow", "{marker}"),
    "oomer": waiting_easyconfig("oomer", "{oom_marker}", then="mktemp %(installdir)s/attempt-XXXXXX"),
    "tamper": bundle_easyconfig("tamper", f"postinstallcmds = ['failed=0; for f in {' '.join(TAMPERED)}; do"
                                          " echo tampered >> $f || failed=1; done; exit $failed']"),
}
FIRST_RUNS = ["needsbroken-1.0-GCCcore-system.eb", "slow-1.0-GCCcore-system.eb", "oomer-1.0-GCCcore-system.eb"]
THIRD_RUN = ["slow-1.0-GCCcore-system.eb", "oomer-1.0-GCCcore-system.eb", "tamper-1.0-GCCcore-system.eb"]


#: demo entries left out of the emulated cluster: ipykernel and dask need the library's own Python module, whose stack
#: the demo library builds once per session (the scenario's Python packages are the migration path's,
#: tests/data/easyconfigs); Lmod's luaposix fails its build step in the emulated pods (exit 1 from luke, cause
#: not found yet) while it builds locally
LEFT_OUT = {"ipykernel-7.4.0-GCCcore-system.eb", "dask-2026.8.0-GCCcore-system.eb", "Lmod-8.7.60-GCCcore-system.eb"}


def _without_left_out(base: Path, easystack: Path) -> Path:
    entries = yaml.safe_load(easystack.read_text())["easyconfigs"]
    kept = [e for e in entries if (e if isinstance(e, str) else next(iter(e))) not in LEFT_OUT]
    return write_easystack(base / f"demo-{easystack.name}", kept)


def write_scenario_config(base: Path, marker: Path, oom_marker: Path) -> Path:
    site = copy_site_easyconfigs(base / "site")
    for name, text in FIXTURES.items():
        (site / name[0] / name).mkdir(parents=True)
        text = text.replace("{marker}", str(marker)).replace("{oom_marker}", str(oom_marker))
        (site / name[0] / name / f"{name}-1.0-GCCcore-system.eb").write_text(text)
    (base / "easyconfigs").mkdir()
    fixtures = write_easystack(base / "easyconfigs" / "fixtures.yaml", FIRST_RUNS)
    demo = yaml.safe_load((REPO / "easyconfigs" / "library.yaml").read_text())
    targets = {name: {**t, "easystacks": [str(_without_left_out(base, REPO / s)) for s in t["easystacks"]]}
               for name, t in demo["targets"].items()}
    targets["cpu"]["easystacks"].append(str(fixtures))
    return write_config(base, targets, easyconfig_paths=[str(site)], root=ROOT, extra={
        "kubernetes": KUBERNETES, "modules": demo["modules"], "featured": demo["featured"],
        "notebook": {"launchers": demo["notebook"]["launchers"]}})  # the launcher featured names


def fetch_sources(base: Path, config: Path, source_cache: Path) -> None:
    """Build pods have no network: what the library's builds fetch goes into the session's cache first
    (``plan --check-sources`` against a root holding just that cache), whichever test ran before."""
    root = base / "fetch"
    link_sources(root, source_cache)
    result = modlib("plan", "--config", str(config), "--check-sources", env={"MODLIB_ROOT": str(root)})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def make_volume(base: Path, source_cache: Path) -> Path:
    """The claim's folder, with the session's downloads hard-linked in (build pods have no network)."""
    volume = base / "volume"
    volume.mkdir()
    for path in source_cache.rglob("*"):
        if path.is_file():
            dest = volume / "sources" / path.relative_to(source_cache)
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(path, dest)
            except OSError:  # another file system
                shutil.copy2(path, dest)
    own_folders(volume, UID)
    return volume


class Scenario:
    def __init__(self, base: Path, volume: Path, config: Path, kubeconfig: Path):
        self.base, self.volume, self.config, self.kubeconfig = base, volume, config, kubeconfig
        # the builder image's ENV (k8s-jobs/image/Containerfile): its venv first on PATH, and named as the
        # library's Python, which the site hooks write into installed scripts
        self.image_env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "MODLIB_PYTHON": sys.executable}

    def spec(self, command: list[str], read_only: bool = False) -> dict:
        """A pod of the runner's kind (the CronJob's, or a notebook's with ``read_only``)."""
        return {"mounts": [{"source": str(self.volume), "target": ROOT, "read_only": read_only}],
                "empty_dirs": [SCRATCH], "read_only_root": True, "uid": UID, "gid": UID, "reveal": [str(REPO)],
                "workdir": SCRATCH, "command": command,
                "env": {**self.image_env, "HOME": SCRATCH, "MODLIB_CACHE": f"{SCRATCH}/cache",
                        "LMOD_CMD": "/usr/share/lmod/lmod/libexec/lmod"}}

    def start_runner(self, name: str) -> tuple[subprocess.Popen, Path]:
        modlib = str(Path(sys.executable).parent / "modlib")
        argv = sandbox_argv(self.spec([modlib, "build", "--config", str(self.config), "--executor", "kubernetes",
                                       "--kubeconfig", str(self.kubeconfig), "--jobs", "2"]),
                            self.base / f"{name}.json")
        log = self.base / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        return proc, log

    def notebook(self, script: str) -> subprocess.CompletedProcess:
        argv = sandbox_argv(self.spec(["bash", "-c", f"source {LMOD_INIT}\n{script}"], read_only=True),
                            self.base / "notebook.json")
        return subprocess.run(argv, capture_output=True, text=True, timeout=300)


def wait_for(what: str, check, timeout: float, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.time() + timeout
    while not check():
        ended = f"the runner ended (exit {proc.returncode}) before {what}"
        assert proc.poll() is None, f"{ended}:\n{log.read_text()[-4000:]}"
        assert time.time() < deadline, f"timed out waiting for {what}:\n{log.read_text()[-4000:]}"
        time.sleep(0.3)


def installed(volume: Path, tree_module: tuple[str, str], *rel: str) -> list[Path]:
    """Files of a module's installs, whatever its build prefix is called."""
    tree, module = tree_module
    return sorted(volume.glob("/".join([tree, "software", f"{module.split('/')[0]}-*", module, *rel])))


def library_state(volume: Path, skip: tuple[str, ...]) -> dict[str, str]:
    """Every path of the library (relative, not below ``skip`` patterns) with its mode and content
    hash, or its link target: what a build outside its own folders could change."""
    state = {}
    for dirpath, dirnames, filenames in os.walk(volume):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            rel = str(path.relative_to(volume))
            if any(fnmatch.fnmatch(rel, pattern) or fnmatch.fnmatch(rel, f"{pattern}/*") for pattern in skip):
                continue
            mode = path.lstat().st_mode
            if path.is_symlink():
                state[rel] = "-> " + os.readlink(path)
            elif path.is_file():
                with path.open("rb") as f:
                    state[rel] = f"{mode:o} {hashlib.file_digest(f, 'sha256').hexdigest()}"
            else:
                state[rel] = f"{mode:o} dir"
    return state


#: what the tampering run may change: the tamperer's own prefix and staging folder, the run's records,
#: and the runner's note of prefixes nothing names (it adds the tamperer's failed one)
TAMPER_OWN = ("cpu/software/tamper-*", "cpu/.staging/tamper--1.0-GCCcore-system", ".modlib/records",
              ".modlib/runs", ".modlib/run.lock", "cpu/software/.unreferenced.json")


def first_two_runs(scenario: Scenario, marker: Path) -> tuple[float, str, str, int | None]:
    """Runner 1 until slow's pod waits in its install step, killed; runner 2 adopts and finishes."""
    first, first_log = scenario.start_runner("runner-1")
    try:
        wait_for("slow's pod reached its install step", lambda: installed(scenario.volume, SLOW, "bin/slow"),
                  600, first, first_log)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)  # the runner's pod is gone; its Jobs run on
        first.wait()
        killed_at = time.time()
    second, second_log = scenario.start_runner("runner-2")
    try:
        wait_for("the second runner adopted slow's Job",
                  lambda: "adopting active Job cpu-slow-1-0" in second_log.read_text(), 300, second, second_log)
        marker.unlink()
        second.wait(timeout=1500)
    finally:
        if second.poll() is None:
            os.killpg(second.pid, signal.SIGKILL)
    return killed_at, first_log.read_text(), second_log.read_text(), second.returncode


def tampering_run(scenario: Scenario) -> dict:
    """A third run, of the same library.yaml, that builds `tamper` alone; the library before and after."""
    write_easystack(scenario.base / "easyconfigs" / "fixtures.yaml", THIRD_RUN)
    before = library_state(scenario.volume, TAMPER_OWN)
    third, log = scenario.start_runner("runner-3")
    try:
        third.wait(timeout=600)
    finally:
        if third.poll() is None:
            os.killpg(third.pid, signal.SIGKILL)
    after = library_state(scenario.volume, TAMPER_OWN)
    # every node of the scenario, so that `modlib render` covers each Job the runs posted
    write_easystack(scenario.base / "easyconfigs" / "fixtures.yaml", sorted({*FIRST_RUNS, *THIRD_RUN}))
    return {"before": before, "after": after, "exit": third.returncode, "output": log.read_text()}
