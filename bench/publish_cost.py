"""Benchmark what publishing one built node costs as the library grows: 10, 100 and 1,000 modules.

A run publishes a new generation of the live view after every successful node, so a publish that
grows with the library makes a large build spend most of its time publishing. For each size, a
library (a cpu target, and a cuda target layered over it, as in the demo) gets its store filled from
an EasyBuild-generated module tree (``make_module_tree.py``: EESSI's module files), one full publish,
then ``--nodes`` more modules stored and published one at a time, as the run does; each publish is
timed alone. Both ways are measured in the same process on fresh libraries with the same additions:

* ``full``: each generation made from scratch (``publish_view(settings, full=True)``: Lmod walks every
  module file, as every publish did before);
* ``incremental``: each generation made from the live one (``publish_view(settings)``): Lmod walks the
  changed names only.

After both, the two libraries' live views must describe the same modules: the spider caches (paths
aside), the catalogue data and the featured indexes (``generated`` aside) are compared, and the
benchmark fails if not.

Usage::

    .venv/bin/python bench/publish_cost.py --workdir /tmp/modlib-bench --json publish.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))
from builder.layout import Layout  # noqa: E402
from builder.publish.view import publish_view  # noqa: E402
from builder.read.config import load_settings  # noqa: E402

SIZES = (10, 100, 1000)
WAYS = ("full", "incremental")


def ensure_tree(tree: Path) -> Path:
    """The EESSI module tree, made once by make_module_tree.py in its own process (EasyBuild changes os.environ)."""
    subprocess.run([sys.executable, str(BENCH / "make_module_tree.py"), "--root", str(tree)], check=True,
                   stdout=subprocess.DEVNULL)
    return tree / "modules" / "all"


def pick(source: Path, count: int) -> list[str]:
    """``count`` module names spread evenly over the tree (names of all sizes and letters, not the first ones)."""
    every = sorted(str(p.relative_to(source))[: -len(".lua")] for p in source.rglob("*.lua")
                   if p.name != ".modulerc.lua" and not p.is_symlink())
    if count > len(every):
        raise SystemExit(f"{source} holds {len(every)} modules, fewer than {count}")
    return [every[i * len(every) // count] for i in range(count)]


def tree_of(module: str) -> str:
    return "cuda" if "CUDA" in module else "cpu"


def write_library(base: Path, modules: list[str]) -> Path:
    """A library.yaml (cpu + cuda, a default, three featured names) over an empty store."""
    names = sorted({m.split("/")[0] for m in modules})
    featured = [{"name": n} for n in names[:: max(1, len(names) // 3)][:3]]
    first = modules[0].split("/")
    config = {"root": str(base / "library"), "python": {"executable": sys.executable,
                                                        "version": "{}.{}".format(*sys.version_info[:2])},
              "hooks": str(REPO / "hooks" / "modlib_hooks.py"), "easyconfig_paths": [str(REPO / "easyconfigs")],
              "targets": {"cpu": {"kind": "cpu", "tree": "cpu", "easystacks": ["cpu.yaml"]},
                          "cuda": {"kind": "cuda", "tree": "cuda", "layers_over": "cpu", "easystacks": ["cuda.yaml"]}},
              "modules": {"defaults": {first[0]: first[1]}}, "featured": featured}
    (base / "easyconfigs").mkdir(parents=True, exist_ok=True)
    for target in ("cpu", "cuda"):  # the easystacks must exist; publishing does not read them
        (base / f"{target}.yaml").write_text("easyconfigs: []\n")
    path = base / "easyconfigs" / "library.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def store(root: Path, source: Path, module: str) -> None:
    """What builder/publish/live.py does for a finished node: its module file into the store."""
    tree = tree_of(module)
    dest = Layout(root).store(tree) / f"{module}.lua"
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.copyfile(source / f"{module}.lua", tmp)
    os.replace(tmp, dest)


def run_size(workdir: Path, source: Path, size: int, nodes: int, way: str) -> dict:
    modules = pick(source, size)
    later = modules[len(modules) // (2 * nodes)::len(modules) // nodes][:nodes]  # spread over the alphabet
    base = workdir / f"publish-{size}-{way}"
    shutil.rmtree(base, ignore_errors=True)
    settings = load_settings(write_library(base, modules), env={})
    for module in modules:
        if module not in later:
            store(settings.root, source, module)
    publish_view(settings)
    seconds = []
    for module in later:
        store(settings.root, source, module)
        t0 = time.perf_counter()
        publish_view(settings, full=way == "full")
        seconds.append(time.perf_counter() - t0)
    return {"size": size, "way": way, "modules": later, "seconds": seconds, "median_s": statistics.median(seconds),
            "live": str(settings.root / "live")}


def view_content(live: Path) -> dict:
    """What notebooks get from a view, with the generation-specific bits (paths, time stamps) taken out."""
    out = {}
    for tree in sorted(p.name for p in (live / "trees").iterdir()):
        text = (live / "trees" / tree / "cache" / "spiderT.lua").read_text()
        out[f"{tree}/spiderT"] = text.replace(str(live.parent), "ROOT")
        out[f"{tree}/catalogue"] = json.loads((live / "trees" / tree / "catalogue.json").read_text()
                                              .replace(str(live.parent), "ROOT"))
    for target in sorted(p.name for p in (live / "targets").iterdir()):
        index = json.loads((live / "targets" / target / "featured.json").read_text())
        index.pop("generated")
        out[f"{target}/featured"] = index
    return out


def compare(workdir: Path, source: Path, sizes: list[int], nodes: int) -> list[dict]:
    results = []
    for size in sizes:
        pair = [run_size(workdir, source, size, min(nodes, size // 2), way) for way in WAYS]
        if view_content(Path(pair[0]["live"])) != view_content(Path(pair[1]["live"])):
            raise SystemExit(f"{size} modules: the incremental view differs from the full one")
        results += pair
        print(f"{size:5d} modules: full {pair[0]['median_s']:.3f} s, incremental {pair[1]['median_s']:.3f} s "
              "per published node (median)", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/modlib-bench"))
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--nodes", type=int, default=5, help="nodes published one at a time per size")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    source = ensure_tree(args.workdir / "tree")
    results = compare(args.workdir, source, args.sizes, args.nodes)
    if args.json:
        args.json.write_text(json.dumps({"results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
