"""Planning and no-op-run benchmarks: modlib against EasyBuild's own `eb`, both run here, now."""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
MODLIB = str(BIN / "modlib")
EB_ENV = {"LMOD_CMD": "/usr/share/lmod/lmod/libexec/lmod", "EASYBUILD_ALLOW_USE_AS_ROOT_AND_ACCEPT_CONSEQUENCES": "1",
          "PATH": f"{BIN}:{os.environ['PATH']}"}
_EB_MODULE = re.compile(r"^\s*\* \[.\] .* \(module: (\S+)\)$", re.M)


def timed(argv: list[str], env: dict | None = None, cwd: Path = REPO) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **(env or {})}, cwd=cwd)
    took = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{argv[:3]} failed ({result.returncode}): {result.stderr[-2000:]}")
    return took, result


def modlib_plan(easystack: Path, root: Path, cache: Path) -> tuple[float, set[str]]:
    took, result = timed([MODLIB, "plan", "--json", "--easystack", str(easystack)],
                         env={"MODLIB_ROOT": str(root), "MODLIB_CACHE": str(cache)})
    return took, {n["module"] for n in json.loads(result.stdout)["nodes"]}


def eb_dry_run(easystack: Path, scratch: Path) -> tuple[float, set[str]]:
    upstream = REPO / ".venv" / "easybuild" / "easyconfigs"
    took, result = timed([str(BIN / "eb"), "--easystack", str(easystack), "--robot", "--dry-run",
                          f"--robot-paths={upstream}", f"--installpath={scratch / 'eb-install'}",
                          f"--tmpdir={scratch}", "--disable-show-progress-bar", "--output-style=basic"],
                         env={**EB_ENV, "MODULEPATH": ""})
    return took, set(_EB_MODULE.findall(result.stdout))


def half_installed(root: Path, modules: set[str]) -> None:
    """Module files for every second module: what "installed" means to the planner."""
    for module in sorted(modules)[::2]:
        path = root / "cpu" / "modules" / "all" / f"{module}.lua"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("-- placeholder\n")


def median_plan(easystack: Path, root: Path, caches: list[Path]) -> tuple[float, set[str]]:
    """Median of several runs (one per cache folder given: a fresh folder each makes every run cold)."""
    runs = [modlib_plan(easystack, root, cache) for cache in caches]
    return statistics.median(t for t, _ in runs), runs[0][1]


def paired(ours: Callable[[], float], other: Callable[[], float], runs: int = 5) -> tuple[list[float], list[float]]:
    """Both sides run alternately, so that a noisy neighbour slows both alike."""
    pairs = [(ours(), other()) for _ in range(runs)]
    return [a for a, _ in pairs], [b for _, b in pairs]


def spread(times: list[float]) -> str:
    return f"median of {len(times)}, {min(times):.3f}-{max(times):.3f} s"


def without_plan_cache(cache: Path, run: Callable[[], float]) -> Callable[[], float]:
    """``run`` with the whole-plan cache's entries gone (parsed easyconfigs kept): what warm was before it."""
    def cold_plan() -> float:
        for entry in cache.glob("plan-*.json"):
            entry.unlink()
        return run()
    return cold_plan


def warm_plan_row(easystack: Path, root: Path, cache: Path) -> dict:
    """The plan cache's hit against the warm parse cache alone (EasyBuild imported and configured)."""
    def plan() -> float:
        return modlib_plan(easystack, root, cache)[0]

    plan()  # the cache holds this plan now
    hits, misses = paired(plan, without_plan_cache(cache, plan))
    plan()
    return {"benchmark": f"plan EESSI, warm: inputs unchanged, plan cache ({spread(hits)}; other side "
                         f"{spread(misses)})", "modlib_s": statistics.median(hits),
            "other": "modlib, parse cache only", "other_s": statistics.median(misses), "target": "<= 0.25 s"}


def plan_rows(easystack: Path, repeat: int = 3) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="modlib-bench-") as scratch:
        tmp = Path(scratch)
        eb_time, eb_modules = eb_dry_run(easystack, tmp)
        cold, cold_modules = median_plan(easystack, tmp / "empty", [tmp / f"cold{i}" for i in range(repeat)])
        warm, warm_modules = median_plan(easystack, tmp / "empty", [tmp / "cold0"] * repeat)
        warm_row = warm_plan_row(easystack, tmp / "empty", tmp / "cold0")
        half_installed(tmp / "half", cold_modules)
        half, half_modules = median_plan(easystack, tmp / "half", [tmp / "cold0"] * repeat)
    same = eb_modules == cold_modules == warm_modules == half_modules
    return [
        {"benchmark": f"plan EESSI, cold (modules: {len(cold_modules)}, same as eb: {same})",
         "modlib_s": cold, "other": "eb --dry-run --robot", "other_s": eb_time, "target": ">= 8x faster"},
        {"benchmark": "plan EESSI, warm (nothing changed)", "modlib_s": warm, "other": "eb --dry-run --robot",
         "other_s": eb_time, "target": "<= 1 s"},
        warm_row,
        {"benchmark": "plan EESSI, half of the modules installed (warm)", "modlib_s": half,
         "other": "modlib, none installed (warm)", "other_s": warm, "target": "no slower"},
    ]


def eb_robot_noop(root: Path) -> float:
    """`eb --robot` over the demo's easystacks on the same published tree: EasyBuild's own no-op."""
    upstream = REPO / ".venv" / "easybuild" / "easyconfigs"
    total = 0.0
    for stack, tree, path in (("cpu", "cpu", ["cpu"]), ("cuda", "cuda", ["cuda", "cpu"])):
        modulepath = ":".join(str(root / t / "modules" / "all") for t in path)
        took, result = timed([str(BIN / "eb"), "--easystack", str(REPO / "easyconfigs" / f"{stack}.easystack.yaml"),
                              "--robot", f"--robot-paths={REPO / 'easyconfigs'}:{upstream}",
                              f"--installpath-software={root / tree / 'software'}",
                              f"--installpath-modules={root / tree / 'modules'}", "--disable-show-progress-bar",
                              "--output-style=basic", "--cuda-compute-capabilities=8.0,9.0"],
                             env={**EB_ENV, "MODULEPATH": modulepath,
                                  "PATH": f"{REPO / '.venv' / 'bin'}:{EB_ENV['PATH']}"})
        if "already installed" not in result.stdout + result.stderr:
            raise RuntimeError("eb --robot did not find the demo library installed: " + result.stdout[-1000:])
        total += took
    return total


def noop_build(root: Path, cache: Path) -> float:
    records = root / ".modlib" / "records"
    before = len(list(records.rglob("*.json")))
    took, result = timed([MODLIB, "build"], env={"MODLIB_ROOT": str(root), "MODLIB_CACHE": str(cache)})
    if "built 0," not in result.stdout or len(list(records.rglob("*.json"))) != before:
        raise RuntimeError("the no-op run built something: " + result.stdout[-1000:])
    return took


def noop_rows(root: Path) -> list[dict]:
    """The no-op run against eb's own no-op, and with its plan cached against planning it again."""
    with tempfile.TemporaryDirectory(prefix="modlib-bench-") as scratch:
        cache = Path(scratch)
        def run() -> float:
            return noop_build(root, cache)

        took = run()
        hits, misses = paired(run, without_plan_cache(cache, run))
    return [{"benchmark": "no-op scheduled run on the published demo library (no eb started)", "modlib_s": took,
             "other": "eb --robot, same easystacks and tree", "other_s": eb_robot_noop(root), "target": "<= 2 s"},
            {"benchmark": f"no-op run, plan cached ({spread(hits)}; other side {spread(misses)})",
             "modlib_s": statistics.median(hits), "other": "same, plan made again (parse cache warm)",
             "other_s": statistics.median(misses), "target": "<= 0.4 s"}]
