"""`make bench`: every benchmark in one run, one table, and docs/performance.md.

Each comparison runs both sides in this same run (shared machines are noisy) and reports the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench import lock_race, notebook_browser, planning, schedule_sim, verify_tree

REPO = planning.REPO
EESSI = REPO / "tests" / "data" / "eessi-2025.06.yml"


def schedule_rows() -> list[dict]:
    """The production scheduler (expected.scheduler) on EESSI, for a library with no records yet: the root
    does not exist, so the priority is the build model's, as the builds' simulated durations are."""
    from builder.plan.planner import make_plan
    from builder.read.config import load_settings

    settings = load_settings(REPO / "easyconfigs" / "library.yaml", env={**os.environ, "MODLIB_ROOT": "/nonexistent"})
    nodes = list(make_plan(settings, [settings.first_cpu_target()], EESSI).nodes)
    rows = []
    for r in schedule_sim.compare(nodes, [4, 16, 64], settings.layout):
        rows.append({"benchmark": f"EESSI makespan, {r['executors']} executors (min; bound {r['bound_min']}: "
                                  f"+{r['over_bound_pct']} % over it, +{r['off_model_worst_pct']} % at worst when "
                                  f"builds take 1/2 to 2x the model (3 draws); waves {r['waves_min']}; running "
                                  f"builds' peak memory {r['peak_gib']:g} GiB of a {r['capacity_gib']} GiB cluster)",
                     "modlib_s": r["modlib_min"], "other": "chain length in nodes (the run's priority before)",
                     "other_s": r["by_count_min"], "target": "<= 5 % over bound"})
    return rows


def notebook_rows(workdir: Path) -> list[dict]:
    """Lmod on a 1000+ module tree, local and behind a 1 ms FUSE mount, with and without the cache."""
    out = workdir / "notebook_side.json"
    subprocess.run([sys.executable, str(REPO / "bench" / "notebook_side.py"), "--workdir", str(workdir),
                    "--runs", "3", "--warmup", "0", "--json", str(out)], check=True, cwd=REPO)
    data = json.loads(out.read_text())
    median = {(c["place"], c["mode"], c["command"]): c["median_s"] for c in data["cells"]}
    modules, target = data["tree"]["modules"], data["load_target"]["module"]
    rows = []
    for place in ("local", "fuse"):
        where = "local disk" if place == "local" else f"FUSE +{data['delay_ms']:g} ms per call"
        for command in ("avail", "spider", "load"):
            what = f"load {target}" if command == "load" else f"-t {command}"
            cached = "" if command == "spider" else ", LMOD_CACHED_LOADS=yes"
            rows.append({"benchmark": f"module {what}, {where} ({modules} modules{cached})",
                         "modlib_s": median[(place, "cache", command)], "other": "same, no spider cache",
                         "other_s": median[(place, "no cache", command)],
                         "target": "<= 0.3 s" if command == "avail" and place == "fuse" else ""})
        for command in ("avail", "load"):  # env.sh's default (notebook.cached_loads: false)
            what = f"load {target}" if command == "load" else f"-t {command}"
            rows.append({"benchmark": f"module {what}, {where} ({modules} modules, LMOD_CACHED_LOADS=no)",
                         "modlib_s": median[(place, "cache, uncached loads", f"{command}-uncached")],
                         "other": "same, LMOD_CACHED_LOADS=yes", "other_s": median[(place, "cache", command)],
                         "target": ""})
    return rows


def panel_rows(workdir: Path, runs: int = 5) -> list[dict]:
    """JupyterLab's Lmod panel in a real browser on the same tree behind 1 ms FUSE: the image's hook
    against the old default (bench/notebook_browser.py)."""
    data = notebook_browser.main(["--workdir", str(workdir), "--runs", str(runs),
                                  "--json", str(workdir / "notebook_browser.json")])
    median, load = data["median"], data["load"]
    where = f"FUSE +{data['delay_ms']:g} ms per call, {data['modules']} modules, median of {runs} fresh servers"
    return [{"benchmark": f"panel's module list shown after a click on its tab, browser ({where})",
             "modlib_s": round(median["image_hook/listing_s"], 2), "other": "old default (the list walks the tree)",
             "other_s": round(median["old_default/listing_s"], 2), "target": "<= 0.3 s"},
            {"benchmark": f"Load click on {load['module']} ({load['dependencies']} dependencies) until the panel "
                          f"shows it loaded; Lmod's own load {median['lmod_load_s']:.2f} s ({where})",
             "modlib_s": round(median["image_hook/load_click_s"], 2), "other": "old default",
             "other_s": round(median["old_default/load_click_s"], 2),
             "target": f"<= {median['lmod_load_s'] + 1:.1f} s (Lmod's load + 1 s)"}]


def publish_rows(workdir: Path) -> list[dict]:
    """One built node's publish with 10, 100 and 1,000 modules in the store, from the live generation
    against from scratch (what every publish did before)."""
    out = workdir / "publish_cost.json"
    subprocess.run([sys.executable, str(REPO / "bench" / "publish_cost.py"), "--workdir", str(workdir),
                    "--json", str(out)], check=True, cwd=REPO)
    results = {(r["size"], r["way"]): r["median_s"] for r in json.loads(out.read_text())["results"]}
    return [{"benchmark": f"publish one built node, {size} modules in the store (cpu + cuda targets; median)",
             "modlib_s": results[(size, "incremental")], "other": "same, generation from scratch",
             "other_s": results[(size, "full")], "target": "<= 0.15 s" if size == 1000 else ""}
            for size in sorted({size for size, _ in results})]


def lock_rows(trials: int = 3000) -> list[dict]:
    """The run-lock race (bench/lock_race.py): a correctness result, so it fails the benchmark if broken."""
    r = lock_race.race(trials)
    if r["double_holders"] or r["overlapping_holds"]:
        raise SystemExit(f"the run lock had two holders at once: {r}")
    return [{"benchmark": f"run-lock race: {r['trials']} holds by {r['workers']} processes, {r['takeovers']} "
                          f"takeovers of holders that died ({r['double_holders']} double holders)",
             "modlib_s": r["seconds"], "other": "", "other_s": None, "target": "0 double holders"}]


def table(rows: list[dict]) -> str:
    lines = ["| benchmark | modlib | compared with | their time | ratio | target |", "|---|---:|---|---:|---:|---|"]
    for r in rows:
        if r["other_s"] is None:
            lines.append(f"| {r['benchmark']} | {r['modlib_s']:.2f} | | | | {r['target']} |")
            continue
        ratio = r["other_s"] / r["modlib_s"] if r["modlib_s"] else float("inf")
        lines.append(f"| {r['benchmark']} | {r['modlib_s']:.2f} | {r['other']} | {r['other_s']:.2f} | "
                     f"{ratio:.1f}x | {r['target']} |")
    return "\n".join(lines)


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, {platform.platform()}"


#: Each group of rows, in the report's order; ``--only`` runs some of them and rewrites only their blocks.
GROUPS: dict[str, Callable[[argparse.Namespace], list[dict]]] = {
    "cold": lambda args: planning.cold_rows(EESSI),
    "plan": lambda args: planning.plan_rows(EESSI),
    "noop": lambda args: planning.noop_rows(REPO / "library"),
    "schedule": lambda args: schedule_rows(),
    "publish": lambda args: publish_rows(args.workdir),
    "lock": lambda args: lock_rows(),
    "verify": lambda args: verify_tree.verify_rows(args.workdir, fuse=not args.skip_notebook),
    "notebook": lambda args: notebook_rows(args.workdir),
    "panel": lambda args: panel_rows(args.workdir),
}
FUSE_GROUPS = {"notebook", "panel"}  # left out by --skip-notebook
BLOCK = re.compile(r"<!-- group: (\w+) -->\n(.*?)<!-- end: \1 -->\n", re.S)
#: docs/performance.md's results section lies between these; the lab notes below it are kept as they are.
RESULTS, END_RESULTS = "<!-- results -->", "<!-- end results -->"
TITLES = {"cold": "Cold plan of EESSI 2025.06", "plan": "Warm plan of EESSI 2025.06", "noop": "No-op run",
          "schedule": "Scheduling EESSI's DAG", "publish": "Publishing one built node",
          "lock": "The run lock under contention", "verify": "modlib verify",
          "notebook": "Notebook side: Lmod on 1,099 modules",
          "panel": "Notebook side: the Lmod panel in a browser, 1,099 modules"}
INTRO = ("Each block below is one group of rows (`make bench BENCH_ARGS=\"--only GROUP,...\"` reruns some and "
         "rewrites only their blocks), with when it ran, on what machine, and the machine's load. Times in "
         "seconds, makespans in simulated minutes.\n\n")


def load() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def write_report(path: Path, fresh: dict[str, str]) -> None:
    """The results section of ``path``, with the blocks of the groups just run replaced; what is before
    and after the section stays."""
    head, _, rest = path.read_text().partition(RESULTS)
    results, _, tail = rest.partition(END_RESULTS)
    blocks = {**dict(BLOCK.findall(results)), **fresh}
    body = "".join(f"### {TITLES[g]}\n\n<!-- group: {g} -->\n{blocks[g]}<!-- end: {g} -->\n"
                   for g in GROUPS if g in blocks)
    path.write_text(head + RESULTS + "\n\n" + INTRO + body + END_RESULTS + tail)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/modlib-bench"))
    parser.add_argument("--skip-notebook", action="store_true",
                        help="no FUSE here: leave out the Lmod rows, the panel rows and verify's FUSE rows")
    parser.add_argument("--only", type=lambda v: v.split(","), default=list(GROUPS),
                        help=f"comma-separated groups to run, of {','.join(GROUPS)} (default: all)")
    parser.add_argument("--report", type=Path, default=REPO / "docs" / "performance.md")
    args = parser.parse_args()
    unknown = [g for g in args.only if g not in GROUPS]
    if unknown:
        parser.error(f"unknown group {unknown[0]!r}: choose from {', '.join(GROUPS)}")
    fresh = {}
    for group in (g for g in GROUPS if g in args.only and not (g in FUSE_GROUPS and args.skip_notebook)):
        before, stamp = load(), time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        text = table(GROUPS[group](args))
        print(text, flush=True)
        fresh[group] = (f"\nMeasured {stamp} on {machine()} by `make bench`; 1-minute load average "
                        f"{before} before, {load()} after.\n\n{text}\n\n")
    write_report(args.report, fresh)


if __name__ == "__main__":
    main()
