"""Planning and no-op-run benchmarks: modlib against EasyBuild's own `eb`, both run here, now."""

from __future__ import annotations

import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
MODLIB = str(BIN / "modlib")
EB_ENV = {"LMOD_CMD": "/usr/share/lmod/lmod/libexec/lmod", "EASYBUILD_ALLOW_USE_AS_ROOT_AND_ACCEPT_CONSEQUENCES": "1",
          "PATH": f"{BIN}:{os.environ['PATH']}"}
_EB_MODULE = re.compile(r"^\s*\* \[.\] .* \(module: (\S+)\)$", re.M)


class Timed(NamedTuple):
    seconds: float
    cpu: float  # user + system seconds of the command and the processes it waited for
    result: subprocess.CompletedProcess


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(argv: list[str], env: dict | None = None, cwd: Path = REPO) -> Timed:
    start, cpu = time.perf_counter(), _children_cpu()
    result = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **(env or {})}, cwd=cwd)
    took = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{argv[:3]} failed ({result.returncode}): {result.stderr[-2000:]}")
    return Timed(took, _children_cpu() - cpu, result)


#: eb's cold run takes a minute or more: the cold comparison pairs this many runs of each side.
EB_RUNS = 2
#: Neither side reads the robot path index shipped with easybuild-easyconfigs (.eb-path-index, EasyBuild's
#: only cache between runs): each walks the 12,000 easyconfigs' folders itself, as a cold run would.
NO_INDEX = {"EASYBUILD_IGNORE_INDEX": "1"}


def modlib_plan(easystack: Path, root: Path, cache: Path, env: dict | None = None) -> tuple[Timed, set[str]]:
    run = timed([MODLIB, "plan", "--json", "--easystack", str(easystack)],
                         env={"MODLIB_ROOT": str(root), "MODLIB_CACHE": str(cache), **(env or {})})
    return run, {n["module"] for n in json.loads(run.result.stdout)["nodes"]}


def eb_dry_run(easystack: Path) -> tuple[Timed, set[str]]:
    """``eb --dry-run --robot`` cold: its own scratch folders, no index, no modules on MODULEPATH."""
    upstream = REPO / ".venv" / "easybuild" / "easyconfigs"
    with tempfile.TemporaryDirectory(prefix="modlib-bench-eb-") as scratch:
        run = timed([str(BIN / "eb"), "--easystack", str(easystack), "--robot", "--dry-run",
                              "--ignore-index", f"--robot-paths={upstream}",
                              f"--installpath={scratch}/eb-install", f"--tmpdir={scratch}",
                              "--disable-show-progress-bar", "--output-style=basic"],
                             env={**EB_ENV, "MODULEPATH": ""})
    return run, set(_EB_MODULE.findall(run.result.stdout))


def half_installed(root: Path, modules: set[str]) -> None:
    """Module files for every second module: what "installed" means to the planner."""
    for module in sorted(modules)[::2]:
        path = root / "cpu" / "modules" / "all" / f"{module}.lua"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("-- placeholder\n")


def paired(ours: Callable[[], float], other: Callable[[], float], runs: int = 5) -> tuple[list[float], list[float]]:
    """Both sides run alternately, so that a noisy neighbour slows both alike."""
    pairs = [(ours(), other()) for _ in range(runs)]
    return [a for a, _ in pairs], [b for _, b in pairs]


def spread(times: list[float]) -> str:
    return f"median of {len(times)}, {min(times):.3f}-{max(times):.3f} s"


def ratios(ours: list[float], other: list[float]) -> str:
    each = sorted(b / a for a, b in zip(ours, other, strict=True))
    return f"per pair {each[0]:.1f}-{each[-1]:.1f}x"


def recording(run: Callable[[], Timed], cpu: list[float]) -> Callable[[], float]:
    """``run`` as ``paired`` takes it (its seconds), its CPU seconds appended to ``cpu``: on a loaded
    machine CPU time says more of what a command costs than wall time."""
    def seconds() -> float:
        took = run()
        cpu.append(took.cpu)
        return took.seconds
    return seconds


def cpu_medians(ours: list[float], other: list[float]) -> str:
    return f"CPU s, medians: {statistics.median(ours):.2f} and {statistics.median(other):.2f}"


def without_plan_cache(cache: Path, run: Callable[[], float]) -> Callable[[], float]:
    """``run`` with the whole-plan cache's entries gone (parsed easyconfigs kept): what warm was before it."""
    def cold_plan() -> float:
        for entry in cache.glob("plan-*.json"):
            entry.unlink()
        return run()
    return cold_plan


def cold_plan_row(easystack: Path, tmp: Path) -> dict:
    """A cold ``modlib plan`` (empty $MODLIB_CACHE) against ``eb --dry-run --robot``, paired; neither reads
    the index. One untimed cold plan first, so that neither side pays for compiling EasyBuild's bytecode."""
    modlib_plan(easystack, tmp / "empty", tmp / "untimed", NO_INDEX)
    found: dict[str, set[str]] = {}
    cpu: dict[str, list[float]] = {"modlib": [], "eb": []}

    def ours() -> float:
        run, found["modlib"] = modlib_plan(easystack, tmp / "empty", Path(tempfile.mkdtemp(dir=tmp)), NO_INDEX)
        cpu["modlib"].append(run.cpu)
        return run.seconds

    def eb() -> float:
        run, found["eb"] = eb_dry_run(easystack)
        cpu["eb"].append(run.cpu)
        return run.seconds

    mine, theirs = paired(ours, eb, EB_RUNS)
    same = found["modlib"] == found["eb"]
    return {"benchmark": f"plan EESSI, cold (modules: {len(found['modlib'])}, same as eb: {same}; {spread(mine)}; "
                         f"eb {spread(theirs)}; {ratios(mine, theirs)}; CPU s, medians: modlib "
                         f"{statistics.median(cpu['modlib']):.1f}, eb {statistics.median(cpu['eb']):.1f})",
            "modlib_s": statistics.median(mine), "other": "eb --dry-run --robot --ignore-index",
            "other_s": statistics.median(theirs), "target": ">= 8x faster"}


def warm_plan_row(easystack: Path, root: Path, cache: Path) -> dict:
    """The plan cache's hit against the warm parse cache alone (EasyBuild imported and configured)."""
    def plan() -> Timed:
        return modlib_plan(easystack, root, cache)[0]

    plan()  # the cache holds this plan now
    hit_cpu: list[float] = []
    miss_cpu: list[float] = []
    hits, misses = paired(recording(plan, hit_cpu), without_plan_cache(cache, recording(plan, miss_cpu)))
    plan()
    return {"benchmark": f"plan EESSI, warm: inputs unchanged, plan cache ({spread(hits)}; other side "
                         f"{spread(misses)}; {cpu_medians(hit_cpu, miss_cpu)})", "modlib_s": statistics.median(hits),
            "other": "modlib, parse cache only", "other_s": statistics.median(misses), "target": "<= 0.25 s"}


def cold_rows(easystack: Path) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="modlib-bench-") as scratch:
        return [cold_plan_row(easystack, Path(scratch))]


def plan_rows(easystack: Path) -> list[dict]:
    """Warm plans: the whole-plan cache against the parse cache alone, and the cache's hit with half of
    the modules installed against none (each installed node costs a stat and its manifest read)."""
    with tempfile.TemporaryDirectory(prefix="modlib-bench-") as scratch:
        tmp = Path(scratch)
        warm_row = warm_plan_row(easystack, tmp / "empty", tmp / "warm")
        modules = modlib_plan(easystack, tmp / "empty", tmp / "warm")[1]
        half_installed(tmp / "half", modules)
        if modlib_plan(easystack, tmp / "half", tmp / "warm")[1] != modules:  # and the half root's plan is cached
            raise RuntimeError("the plan with half of the modules installed holds other modules")
        half, none = paired(lambda: modlib_plan(easystack, tmp / "half", tmp / "warm")[0].seconds,
                            lambda: modlib_plan(easystack, tmp / "empty", tmp / "warm")[0].seconds)
    return [warm_row,
            {"benchmark": f"plan EESSI, warm, half of the modules installed ({spread(half)}; other side "
                          f"{spread(none)})", "modlib_s": statistics.median(half),
             "other": "modlib, none installed (warm)", "other_s": statistics.median(none), "target": "<= 0.25 s"}]


def eb_robot_noop(root: Path) -> float:
    """`eb --robot` over the demo's easystacks on the same published tree: EasyBuild's own no-op."""
    upstream = REPO / ".venv" / "easybuild" / "easyconfigs"
    total = 0.0
    for stack, tree, path in (("cpu", "cpu", ["cpu"]), ("cuda", "cuda", ["cuda", "cpu"])):
        modulepath = ":".join(str(root / t / "modules" / "all") for t in path)
        run = timed([str(BIN / "eb"), "--easystack", str(REPO / "easyconfigs" / f"{stack}.easystack.yaml"),
                              "--robot", f"--robot-paths={REPO / 'easyconfigs'}:{upstream}",
                              f"--installpath-software={root / tree / 'software'}",
                              f"--installpath-modules={root / tree / 'modules'}", "--disable-show-progress-bar",
                              "--output-style=basic", "--cuda-compute-capabilities=8.0,9.0"],
                             env={**EB_ENV, "MODULEPATH": modulepath,
                                  "PATH": f"{REPO / '.venv' / 'bin'}:{EB_ENV['PATH']}"})
        if "already installed" not in run.result.stdout + run.result.stderr:
            raise RuntimeError("eb --robot did not find the demo library installed: " + run.result.stdout[-1000:])
        total += run.seconds
    return total


def noop_build(root: Path, cache: Path) -> Timed:
    records = root / ".modlib" / "records"
    before = len(list(records.rglob("*.json")))
    run = timed([MODLIB, "build"], env={"MODLIB_ROOT": str(root), "MODLIB_CACHE": str(cache)})
    if "built 0," not in run.result.stdout or len(list(records.rglob("*.json"))) != before:
        raise RuntimeError("the no-op run built something: " + run.result.stdout[-1000:])
    return run


def noop_rows(root: Path, runs: int = 5, eb_runs: int = 3) -> list[dict]:
    """The no-op run against eb's own no-op, and with its plan cached against planning it again; paired."""
    with tempfile.TemporaryDirectory(prefix="modlib-bench-") as scratch:
        cache = Path(scratch)

        def run() -> Timed:
            return noop_build(root, cache)

        run()  # the plan cache holds this plan now
        ours, theirs = paired(recording(run, []), lambda: eb_robot_noop(root), eb_runs)
        hit_cpu: list[float] = []
        miss_cpu: list[float] = []
        hits, misses = paired(recording(run, hit_cpu), without_plan_cache(cache, recording(run, miss_cpu)), runs)
    return [{"benchmark": f"no-op scheduled run on the published demo library, no eb started ({spread(ours)}; "
                          f"eb {spread(theirs)})", "modlib_s": statistics.median(ours),
             "other": "eb --robot, same easystacks and tree", "other_s": statistics.median(theirs),
             "target": "<= 2 s"},
            {"benchmark": f"no-op run, plan cached ({spread(hits)}; other side {spread(misses)}; "
                          f"{cpu_medians(hit_cpu, miss_cpu)})",
             "modlib_s": statistics.median(hits), "other": "same, plan made again (parse cache warm)",
             "other_s": statistics.median(misses), "target": "<= 0.4 s"}]
