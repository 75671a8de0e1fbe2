"""The notebook panel on a large tree behind a slow file system, timed in a real browser.

What a user waits for in JupyterLab (Debian's Chromium driven by Playwright, the notebook image's server
of bench/notebook_server.py): from a click on the Lmod panel's tab until its module list shows, and
from a click on a module's Load button until the panel shows it loaded. The tree is the EasyBuild tree
of bench/notebook_side.py (1,099 modules), behind latencyfs (``--delay-ms`` per file-system call, as
NFS), with Lmod's spider cache made through the mount, as a library publishes it. Each run is a fresh
server (jupyter-lmod keeps its list for the life of the server).

Two hooks, each in its own servers: the image's (the panel lists with cached loads, the rest as env.sh
says) and the old default (the same hook without that, so the list walks the tree with env.sh's
LMOD_CACHED_LOADS=no). Lmod's own time for the same load, in a shell with the same environment, is
measured beside them: a Load click's overhead is its time less that.

Usage (about 12 minutes with 5 runs, once the tree is made; `make bench` runs it)::

    .venv/bin/python -m bench.notebook_browser --workdir /tmp/modlib-bench --runs 5 --json browser.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from bench import latencyfs, notebook_side
from bench.notebook_server import IMAGE, free_port, local_lab

AVAIL_ITEM = "#module_avail_list .jp-Module-itemLabel"
PANEL_TAB = '.jp-SideBar.jp-mod-left li[data-id="module-jupyterlab"]'
CACHED_LISTING = "    listing_from_cache()\n"
WAIT_MS = 600_000  # the old default's Load click on a busy machine takes minutes: not a failure here


def old_hook() -> str:
    """The image's hook as it was before the panel listed from the cache: the same file, without that."""
    hook = (IMAGE / "jupyter_server_config.py").read_text()
    if CACHED_LISTING not in hook:
        raise RuntimeError(f"{IMAGE / 'jupyter_server_config.py'} no longer calls listing_from_cache()")
    return hook.replace(CACHED_LISTING, "")


def panel_listing_s(page) -> float:
    """Seconds from a click on the panel's tab to the first module of its list shown."""
    start = time.monotonic()
    page.click(PANEL_TAB)
    page.locator(AVAIL_ITEM).first.wait_for(timeout=WAIT_MS)
    return time.monotonic() - start


def load_click_s(page, module: str) -> float:
    """Seconds from a click on ``module``'s Load button to the panel showing it loaded (jupyter-lmod
    lists again after each load: the panel changes once both lists are back)."""
    page.fill("#modules", module)
    item = page.locator("#module_avail_list li", has_text=module)
    item.hover()
    button = item.locator("button", has_text="Load")
    start = time.monotonic()
    button.click()
    page.locator("#module_loaded_list .jp-Module-itemLabel", has_text=module).wait_for(timeout=WAIT_MS)
    return time.monotonic() - start


def library_root(work: Path, mnt: Path, rc: Path) -> Path:
    """A library root of one target (cpu) whose env.sh points at the mounted tree and its cache: the
    Lmod settings of a published env.sh (notebook.cached_loads left at false), nothing featured."""
    target = work / "browser-library" / "live" / "targets" / "cpu"
    target.mkdir(parents=True, exist_ok=True)
    (target / "env.sh").write_text(f"export MODULEPATH={mnt}/modules/all\nexport LMOD_RC={rc}\n"
                                   "export LMOD_CACHED_LOADS=no\nexport LMOD_SHORT_TIME=86400\n"
                                   "export MODLIB_TARGET=cpu\n")
    (target / "featured.json").write_text(json.dumps({"target": "cpu", "modules": []}))
    (target / "jupyter_server_config.json").write_text("{}")
    return target.parents[2]


def browser_runs(root: Path, module: str, hook: str | None, runs: int, work: Path) -> dict[str, list[float]]:
    """``runs`` fresh servers with ``hook`` (None: the image's), each timed for listing and one Load."""
    from tests.e2e.browser import lab_page

    times: dict[str, list[float]] = {"listing_s": [], "load_click_s": []}
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="lab-", dir=work) as scratch, \
                local_lab(root, "cpu", free_port(), Path(scratch), hook) as (server, _), lab_page(server) as page:
            times["listing_s"].append(panel_listing_s(page))
            times["load_click_s"].append(load_click_s(page, module))
        print(f"  {'old default' if hook else 'image hook'}: listing {times['listing_s'][-1]:.2f} s, "
              f"Load click {times['load_click_s'][-1]:.2f} s", flush=True)
    return times


def mid_depth_module(modulepath: Path) -> tuple[str, int]:
    """The module at the median of the tree's load sizes (ties: the first by name): a typical Load."""
    graph = notebook_side.module_graph(modulepath)
    sizes = sorted((len(notebook_side.closure(graph, name)), name) for name in graph)
    size, name = sizes[len(sizes) // 2]
    return name, size


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/modlib-bench"),
                        help="holds the tree (shared with notebook_side.py), caches, mount point, scratch")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--delay-ms", type=float, default=1.0)
    parser.add_argument("--module", help="module to Load (default: the tree's median load size)")
    parser.add_argument("--json", type=Path, help="write all results here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = _parse_args(argv)
    args.cache_timeout = 0.0  # notebook_side's mount and cache helpers read it
    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    tree = notebook_side.ensure_tree(work / "tree", None)
    modulepath = work / "tree" / "modules" / "all"
    module, size = (args.module, len(notebook_side.closure(notebook_side.module_graph(modulepath), args.module))) \
        if args.module else mid_depth_module(modulepath)
    results: dict = {"delay_ms": args.delay_ms, "runs": args.runs, "modules": tree["modules"],
                     "load": {"module": module, "dependencies": size}}
    print(f"tree: {tree['modules']} modules; Load target {module} ({size} dependencies)", flush=True)
    with tempfile.TemporaryDirectory(prefix="scratch-", dir=work) as tmp:
        scratch = Path(tmp)
        places = notebook_side.make_places(work, work / "mnt")
        notebook_side.prepare_caches(args, work, places, scratch)
        root = library_root(work, places["fuse"].tree, places["fuse"].rc)
        with latencyfs.mounted(work / "tree", work / "mnt", args.delay_ms, 0.0):
            lmod = notebook_side.measure(places["fuse"], "cache, uncached loads", "load", ["load", module],
                                         args.runs, 0, scratch)
            results["lmod_load_s"] = lmod.module_s
            print(f"  Lmod's own load: median {lmod.median:.2f} s", flush=True)
            results["old_default"] = browser_runs(root, module, old_hook(), args.runs, work)
            results["image_hook"] = browser_runs(root, module, None, args.runs, work)
    results["median"] = {f"{way}/{what}": statistics.median(results[way][what])
                         for way in ("old_default", "image_hook") for what in ("listing_s", "load_click_s")}
    results["median"]["lmod_load_s"] = statistics.median(results["lmod_load_s"])
    print(json.dumps(results["median"], indent=1))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
