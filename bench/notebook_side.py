"""Benchmark the notebook side of a published library: Lmod's avail, spider and load on 1000+ modules.

A notebook pod sees the library through a read-only RWX volume, where every file-system call is a
network round trip. This measures what a user waits for, on local disk and through ``latencyfs.py``
(a FUSE passthrough adding ``--delay-ms`` to every call), with and without Lmod's system spider cache:

* ``module -t avail``, ``module -t spider``, and ``module load <the module with most dependencies>``;
* each run is a fresh ``bash -c 'source <Lmod init>; module ...'`` with an empty HOME and
  ``LMOD_SHORT_TIME`` high, so no user cache is read or written (checked after every run);
* "cache" means ``LMOD_RC`` = Lmod's default lmodrc.lua + ``scDescriptT`` pointing at a cache made by
  ``update_lmod_system_cache_files`` for the *same MODULEPATH string* (Lmod matches the cache by the
  literal path, so the FUSE cache is generated through the mount), plus ``LMOD_CACHED_LOADS=yes``.

Extra rows time the load and the terse avail with the cache configured but ``LMOD_CACHED_LOADS`` unset
(Lmod's default "no", and env.sh's: library.yaml's notebook.cached_loads is false unless set): loads walk
the tree, cached loads having turned out slower here, and so does ``module -t avail`` (what jupyter-lmod's
panel runs), since Lmod uses the cache for a terse avail only with cached loads; spider and plain avail
use it either way.

Correctness checks: the cached ``avail``/``spider`` list the same modules as the uncached ones; every
load brings in the expected number of modules; a canary module added after the cache was built is
hidden by the cached ``avail`` (proof that Lmod answered from the cache) and shown by the uncached one.

Usage (about 20 minutes with 5 runs, most of it in FUSE runs; the tree is made first if missing)::

    .venv/bin/python bench/notebook_side.py --workdir /tmp/modlib-bench --runs 5 --json bench-results.json
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
import latencyfs  # type: ignore[import-not-found]  # noqa: E402  (run as a script too)

LMOD_INIT = "/usr/share/lmod/lmod/init/bash"
LMOD_LIBEXEC = Path("/usr/share/lmod/lmod/libexec")
DEFAULT_LMODRC = Path("/usr/share/lmod/lmod/init/lmodrc.lua")
#: Run inside ``bash -c``: time only the module command (not bash start-up nor sourcing Lmod's init),
#: with bash's own microsecond clock; Lmod's messages (avail/spider lists) go to $BENCH_OUT.
TIMED_SCRIPT = """source "$LMOD_INIT"
t0=$EPOCHREALTIME
module "$@" 2>"$BENCH_OUT"
rc=$?
t1=$EPOCHREALTIME
printf '%s %s %s %s\\n' "$t0" "$t1" "$rc" "${LOADEDMODULES:-}" >"$BENCH_TIMES"
"""


#: Scenario -> (LMOD_RC with scDescriptT set, LMOD_CACHED_LOADS=yes). The third one is an extra, for loads
#: and terse avail only: the system cache configured, LMOD_CACHED_LOADS left at Lmod's default (no).
MODES = {"no cache": (False, False), "cache": (True, True), "cache, uncached loads": (True, False)}


@dataclass
class Place:
    """Where the notebook reads the tree: local disk, or through the latency file system."""

    name: str
    tree: Path  # the tree as the notebook sees it
    cache_dir: Path  # seen by the notebook (under ``tree`` for the FUSE place)
    timestamp: Path
    rc: Path
    fuse: bool


@dataclass
class Cell:
    """Timings of one command in one scenario."""

    place: str
    mode: str  # a key of MODES
    command: str
    module_s: list[float] = field(default_factory=list)  # the module command alone, in the shell
    total_s: list[float] = field(default_factory=list)  # the whole bash process
    fs_ops_per_run: float | None = None  # FUSE requests per run (FUSE place only)
    outputs: list[str] = field(default_factory=list, repr=False)
    loaded: int | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.module_s)


# -- the tree, the target module, the cache -------------------------------------------------------------


def ensure_tree(tree: Path, easystack: Path | None) -> dict:
    """Build or reuse the tree with make_module_tree.py in its own process (EasyBuild mutates os.environ)."""
    cmd = [sys.executable, str(BENCH / "make_module_tree.py"), "--root", str(tree)]
    cmd += ["--easystack", str(easystack)] if easystack else []
    t0 = time.monotonic()
    subprocess.run(cmd, check=True)
    marker = json.loads((tree / "bench-tree.json").read_text())
    return {"modules": marker["modules"], "generation_s": marker["seconds"],
            "this_call_s": round(time.monotonic() - t0, 1), "details": marker}


def module_graph(modulepath: Path) -> dict[str, list[str]]:
    """Module name -> modules its ``depends_on`` lines name, with ``.modulerc.lua`` aliases resolved."""
    aliases = {}
    for rc in modulepath.glob("*/.modulerc.lua"):
        for full, alias in re.findall(r'module_version\("([^"]+)", "([^"]+)"\)', rc.read_text()):
            aliases[f"{rc.parent.name}/{alias}"] = full
    graph = {}
    for path in modulepath.rglob("*.lua"):
        if path.name != ".modulerc.lua":
            deps = re.findall(r'depends_on\("([^"]+)"\)', path.read_text())
            graph[str(path.relative_to(modulepath))[:-4]] = [aliases.get(d, d) for d in deps]
    return graph


def closure(graph: dict[str, list[str]], module: str) -> set[str]:
    """Every module a load of ``module`` brings in, itself excluded."""
    seen: set[str] = set()
    todo = list(graph[module])
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(graph.get(name, []))
    return seen


def most_dependencies(modulepath: Path) -> tuple[str, int]:
    """The module whose load brings in the most modules (ties: the first by name)."""
    graph = module_graph(modulepath)
    sizes = {name: len(closure(graph, name)) for name in graph}
    best = min(sizes, key=lambda name: (-sizes[name], name))
    return best, sizes[best]


def clean_env(home: Path, modulepath: Path, rc: Path | None = None, cached_loads: bool = False) -> dict[str, str]:
    """A minimal environment: nothing of ours leaks into Lmod; no user cache can be found or written."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8", "TERM": "dumb",
           "MODULEPATH": str(modulepath), "LMOD_INIT": LMOD_INIT, "LMOD_SHORT_TIME": "86400"}
    if rc:
        env["LMOD_RC"] = str(rc)
    if cached_loads:
        env["LMOD_CACHED_LOADS"] = "yes"
    return env


def build_cache(place: Place, write_dir: Path, write_timestamp: Path, scratch: Path) -> float:
    """Run Lmod's update_lmod_system_cache_files against the notebook's MODULEPATH; returns seconds.

    ``write_dir``/``write_timestamp`` are the writable (local) paths behind the place's read-only ones.
    """
    write_dir.mkdir(parents=True, exist_ok=True)
    cmd = [str(LMOD_LIBEXEC / "update_lmod_system_cache_files"), "-d", str(write_dir),
           "-t", str(write_timestamp), str(place.tree / "modules" / "all")]
    t0 = time.monotonic()
    home = Path(tempfile.mkdtemp(prefix="home-", dir=scratch))
    subprocess.run(cmd, env=clean_env(home, place.tree / "modules" / "all"), check=True)
    return time.monotonic() - t0


def write_lmodrc(place: Place) -> None:
    """Lmod's default lmodrc.lua plus scDescriptT, as a notebook image would ship it."""
    sc = (f'\nscDescriptT = {{\n  {{ ["dir"] = "{place.cache_dir}", '
          f'["timestamp"] = "{place.timestamp}" }},\n}}\n')
    place.rc.write_text(DEFAULT_LMODRC.read_text() + sc)


# -- running Lmod ---------------------------------------------------------------------------------------


def run_module(place: Place, mode: str, args: list[str], scratch: Path) -> tuple[float, float, str, int, str]:
    """One fresh shell running ``module <args>``: (module s, total s, output, rc, $LOADEDMODULES)."""
    home = Path(tempfile.mkdtemp(prefix="home-", dir=scratch))
    use_rc, cached_loads = MODES[mode]
    env = clean_env(home, place.tree / "modules" / "all", place.rc if use_rc else None, cached_loads)
    env.update(BENCH_OUT=str(scratch / "out.txt"), BENCH_TIMES=str(scratch / "times.txt"))
    t0 = time.perf_counter()
    subprocess.run(["bash", "-c", TIMED_SCRIPT, "bench", *args], env=env, check=True, cwd=scratch)
    total = time.perf_counter() - t0
    start, end, rc, loaded = ((scratch / "times.txt").read_text().rstrip("\n").split(" ") + [""])[:4]
    assert_no_user_cache(home)
    shutil.rmtree(home)
    return float(end) - float(start), total, (scratch / "out.txt").read_text(), int(rc), loaded


def assert_no_user_cache(home: Path) -> None:
    """Lmod must neither have found nor written a user spider cache (~/.cache/lmod, ~/.lmod.d/.cache)."""
    written = [str(p) for p in home.rglob("*") if p.is_file()]
    if written:
        raise RuntimeError(f"Lmod wrote into the empty HOME: {written}")


def measure(place: Place, mode: str, command: str, args: list[str], runs: int, warmup: int,
            scratch: Path) -> Cell:
    """Warm-up runs (discarded), then ``runs`` timed runs; any failing module command is an error."""
    cell = Cell(place.name, mode, command)
    for i in range(warmup + runs):
        module_s, total_s, out, rc, loaded = run_module(place, mode, args, scratch)
        if rc != 0:
            raise RuntimeError(f"module {' '.join(args)} failed ({place.name}, {mode}): {out[-2000:]}")
        if i >= warmup:
            cell.module_s.append(module_s)
            cell.total_s.append(total_s)
        cell.outputs.append(out)
        cell.loaded = len(loaded.split(":")) if loaded else 0
    return cell


def lmod_config(place: Place, mode: str, scratch: Path) -> dict:
    """What ``module --config`` says about caches, to show the rc file was taken (or not)."""
    _, _, out, _, _ = run_module(place, mode, ["--config"], scratch)
    keys = ("number of cache dirs", "Cached loads", "LMOD_RC", "Ignore Cache", "Write cache after")
    return {k: line.split(k, 1)[1].strip() for line in out.splitlines() for k in keys if line.startswith(k)}


# -- checks ---------------------------------------------------------------------------------------------


def listed(output: str) -> list[str]:
    """Module names in terse avail/spider output: not the MODULEPATH headers ('dir:') nor the
    package lines ('name/') that terse output puts before each package's versions."""
    lines = (line.strip() for line in output.splitlines())
    return sorted(line for line in lines if line and not line.endswith((":", "/")))


def canary_check(place: Place, source_modulepath: Path, scratch: Path) -> dict:
    """Add a module after the cache was built: a cached avail that does not list it used the cache.

    The canary is written into the source tree (the FUSE place sees it through the mount).
    """
    canary = source_modulepath / "zzz-bench-canary" / "1.0.lua"
    canary.parent.mkdir()
    try:
        canary.write_text('whatis("benchmark canary")\n')
        seen = {mode: "zzz-bench-canary/1.0" in listed(run_module(place, mode, ["-t", "avail"], scratch)[2])
                for mode in ("no cache", "cache")}
    finally:
        shutil.rmtree(canary.parent)
    return {"canary_listed": seen, "cache_used": seen == {"no cache": True, "cache": False}}


# -- reporting ------------------------------------------------------------------------------------------


def print_table(cells: list[Cell], target: str, runs: int) -> None:
    """Rows are commands, columns the four scenarios: median seconds of the module command, and FUSE
    requests per run in brackets. The extra row (loads not cached) only has values in cache columns."""
    from rich.console import Console
    from rich.table import Table

    columns = [(p, m) for p in ("local", "fuse") for m in ("no cache", "cache")]
    table = Table(title=f"module command wall time, median of {runs} runs, seconds (FUSE requests per run)")
    table.add_column("command")
    for place, mode in columns:
        table.add_column(f"{place}\n{mode}", justify="right")
    for command in dict.fromkeys(c.command for c in cells):
        label = {"load": f"load {target}", "load-uncached": "  same, LMOD_CACHED_LOADS unset",
                 "avail-uncached": "  avail, LMOD_CACHED_LOADS unset"}.get(command, command)
        table.add_row(label, *(_cell_text(cells, place, mode, command) for place, mode in columns))
    Console(width=160).print(table)


def _cell_text(cells: list[Cell], place: str, mode: str, command: str) -> str:
    """'median (requests)' of one cell; the extra load row is stored under its own mode."""
    if command.endswith("-uncached"):
        if mode == "no cache":
            return "-"
        mode = "cache, uncached loads"
    cell = next(c for c in cells if (c.place, c.mode, c.command) == (place, mode, command))
    ops = f" ({cell.fs_ops_per_run:.0f})" if cell.fs_ops_per_run is not None else ""
    return f"{cell.median:.3f}{ops}"


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/modlib-bench"),
                        help="holds the tree (cached), the caches, the mount point, scratch")
    parser.add_argument("--easystack", type=Path, help="curated list (default: tests/data/eessi-2025.06.yml)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--delay-ms", type=float, default=1.0)
    parser.add_argument("--cache-timeout", type=float, default=0.0, help="FUSE kernel attr/entry cache (s)")
    parser.add_argument("--module", help="module to load (default: the one with the most dependencies)")
    parser.add_argument("--json", type=Path, help="write all results here")
    return parser.parse_args(argv)


def make_places(work: Path, mnt: Path) -> dict[str, Place]:
    """The local place reads the tree directly; the FUSE place reads the same files through ``mnt``."""
    tree = work / "tree"
    return {
        "local": Place("local", tree, tree / "lmod" / "local" / "cacheDir", tree / "lmod" / "local" / "system.txt",
                       work / "lmodrc-local.lua", False),
        "fuse": Place("fuse", mnt, mnt / "lmod" / "fuse" / "cacheDir", mnt / "lmod" / "fuse" / "system.txt",
                      work / "lmodrc-fuse.lua", True),
    }


def fuse_mount(args: argparse.Namespace, work: Path, stats: Path | None):
    """The tree mounted through latencyfs at ``work/mnt`` (a context manager)."""
    return latencyfs.mounted(work / "tree", work / "mnt", args.delay_ms, args.cache_timeout, stats)


def ops_in(stats: Path) -> int:
    """FUSE requests recorded by a finished mount (init/destroy excluded)."""
    counts = json.loads(stats.read_text())
    return sum(n for op, n in counts.items() if op not in ("init", "destroy"))


def prepare_caches(args, work: Path, places: dict[str, Place], scratch: Path) -> dict:
    """Build both caches (the FUSE one through the mount, so it lists the mount's paths); time them."""
    local_dir = work / "tree" / "lmod"
    if local_dir.exists():
        shutil.rmtree(local_dir)
    seconds = {"local": build_cache(places["local"], local_dir / "local" / "cacheDir",
                                    local_dir / "local" / "system.txt", scratch)}
    with fuse_mount(args, work, None):
        seconds["fuse"] = build_cache(places["fuse"], local_dir / "fuse" / "cacheDir",
                                      local_dir / "fuse" / "system.txt", scratch)
    for place in places.values():
        write_lmodrc(place)
    return {k: round(v, 2) for k, v in seconds.items()}


def lmod_configs(args, work: Path, places: dict[str, Place], scratch: Path) -> dict:
    """``module --config`` of every scenario (one mount for the FUSE ones)."""
    configs = {}
    for place in places.values():
        with fuse_mount(args, work, None) if place.fuse else nullcontext():
            for mode in MODES:
                configs[f"{place.name}/{mode}"] = lmod_config(place, mode, scratch)
    return configs


def scenarios(commands: dict[str, list[str]]):
    """(mode, command name, module arguments): the 3 x 2 main cells, then the extra uncached-loads ones."""
    for mode in ("no cache", "cache"):
        for command, cmd_args in commands.items():
            yield mode, command, cmd_args
    for command in ("avail", "load"):
        yield "cache, uncached loads", f"{command}-uncached", commands[command]


def run_cells(args, work: Path, places: dict[str, Place], commands: dict[str, list[str]],
              scratch: Path) -> list[Cell]:
    """All cells; FUSE cells each get their own mount, so its request count is theirs alone."""
    cells = []
    for place in places.values():
        for mode, command, cmd_args in scenarios(commands):
            stats = scratch / f"ops-{place.name}-{command}-{mode.replace(' ', '_')}.json"
            with fuse_mount(args, work, stats) if place.fuse else nullcontext():
                cell = measure(place, mode, command, cmd_args, args.runs, args.warmup, scratch)
            if place.fuse:
                cell.fs_ops_per_run = ops_in(stats) / (args.runs + args.warmup)
            print(f"{place.name:5} {mode:22} {command:13} median {cell.median:.3f} s", flush=True)
            cells.append(cell)
    return cells


def check_results(cells: list[Cell], expected_loaded: int, places, work, args, scratch) -> dict:
    """Cached listings equal uncached ones (per place and across places); loads loaded everything."""
    def names(place, mode, command):
        cell = next(c for c in cells if (c.place, c.mode, c.command) == (place, mode, command))
        return [listed(o) for o in cell.outputs]

    checks: dict[str, object] = {}
    for command in ("avail", "spider"):
        ref = names("local", "no cache", command)[0]
        every = [lst for p in ("local", "fuse") for m in ("no cache", "cache") for lst in names(p, m, command)]
        if command == "avail":
            every += [lst for p in ("local", "fuse") for lst in names(p, "cache, uncached loads", "avail-uncached")]
        checks[f"{command}_modules"] = len(ref)
        checks[f"{command}_all_runs_identical"] = all(lst == ref for lst in every)
    checks["load_expected_modules"] = expected_loaded
    checks["load_loaded_modules"] = sorted({c.loaded or 0 for c in cells if c.command.startswith("load")})
    source_modulepath = work / "tree" / "modules" / "all"
    checks["canary_local"] = canary_check(places["local"], source_modulepath, scratch)
    with fuse_mount(args, work, None):
        checks["canary_fuse"] = canary_check(places["fuse"], source_modulepath, scratch)
    return checks


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    results: dict = {"delay_ms": args.delay_ms, "runs": args.runs, "warmup": args.warmup,
                     "fuse_cache_timeout_s": args.cache_timeout}
    results["tree"] = ensure_tree(work / "tree", args.easystack)
    modulepath = work / "tree" / "modules" / "all"
    target, ndeps = (args.module, len(closure(module_graph(modulepath), args.module))) if args.module \
        else most_dependencies(modulepath)
    results["load_target"] = {"module": target, "dependencies": ndeps}
    print(f"tree: {results['tree']['modules']} module files; load target {target} ({ndeps} dependencies)")
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="scratch-", dir=work)))
        places = make_places(work, work / "mnt")
        results["cache_generation_s"] = prepare_caches(args, work, places, scratch)
        print(f"cache generation: {results['cache_generation_s']} s")
        commands = {"avail": ["-t", "avail"], "spider": ["-t", "spider"], "load": ["load", target]}
        results["lmod_config"] = lmod_configs(args, work, places, scratch)
        cells = run_cells(args, work, places, commands, scratch)
        results["checks"] = check_results(cells, ndeps + 1, places, work, args, scratch)
    results["cells"] = [{k: v for k, v in asdict(c).items() if k != "outputs"} | {"median_s": c.median}
                        for c in cells]
    print_table(cells, target, args.runs)
    print(json.dumps(results["checks"], indent=1))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
