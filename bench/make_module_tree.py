"""Make a real EasyBuild-generated Lmod module tree (1000+ modules) without building any software.

The notebook-side benchmark needs a tree the size and shape of a real library: EasyBuild's own module
files, with their ``depends_on(...)`` lines, moduleclass symlink trees and ``prepend_path`` lines. Building
1102 packages takes days; ``eb --module-only`` over the same list takes about 18 minutes here, because
for every module it asks Lmod to ``list``, ``avail``, ``show`` and ``load`` the dependencies, on a tree
that grows as it goes. This script does what ``--module-only`` does, in-process and without Lmod:

1. Resolve every easystack entry and its dependencies (build ones included, as ``eb --robot`` does) with
   EasyBuild's parser, keyed by full module name (EasyBuild's ``resolve_dependencies`` is quadratic, see
   docs/research/easybuild-api.md section 2.4).
2. Optionally put stub files into each install dir (``bin/``, ``lib/``, ``include/``, ``share/man``,
   ``lib/pkgconfig``): EasyBuild only writes ``prepend_path`` for folders that exist and hold files,
   so without stubs the modules would lack the PATH/LD_LIBRARY_PATH/... lines real modules have.
3. For each module, instantiate its easyblock, give its toolchain the dependency list the prepare step
   would give it (without loading modules), and call ``make_module_step()``: EasyBuild's own module
   generation, hooks and symlinks included.

``--check-against DIR`` compares the generated files with a tree made by ``eb --module-only`` (run
with stubs off, since eb does not create them), to show the contents are the same.

The tree is cached: when ``<root>/bench-tree.json`` matches the request, nothing is done. Prints the number
of module files. Run with the venv's Python::

    .venv/bin/python bench/make_module_tree.py --root /tmp/modlib-bench/tree [--easystack FILE] [--jobs 2]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_EASYSTACK = REPO / "tests" / "data" / "eessi-2025.06.yml"
LMOD_CMD = "/usr/share/lmod/lmod/libexec/lmod"
MARKER = "bench-tree.json"
#: Stub files that make EasyBuild's existence checks find the folders a typical install has.
STUB_FILES = ("bin/stub", "lib/libstub.so", "include/stub.h", "share/man/man1/stub.1", "lib/pkgconfig/stub.pc")
#: Bump when the generation changes, so cached trees are remade.
GENERATOR_VERSION = 1


@dataclass(frozen=True)
class Node:
    """One module to generate: the easyconfig that makes it, and whether it is a hidden dependency."""

    module: str
    path: str
    hidden: bool


# -- configuration --------------------------------------------------------------------------------------


def eb_args(root: Path, tmpdir: Path) -> list[str]:
    """The options ``eb --module-only`` would run with; ``--force`` and ``--ignore-osdeps`` skip checks
    that need the real software, and the devel module (which would need Lmod) is not made."""
    from easybuild.framework.easyconfig.tools import get_paths_for

    robot_paths = get_paths_for(subdir="easyconfigs", robot_path=None) or [str(Path(sys.prefix) / "easybuild" / "easyconfigs")]
    return [
        "--robot", f"--robot-paths={':'.join(robot_paths)}", f"--installpath={root}",
        f"--tmpdir={tmpdir}", f"--buildpath={tmpdir / 'build'}", f"--repositorypath={tmpdir / 'repo'}",
        "--module-only", "--force", "--skip-sanity-check", "--ignore-osdeps", "--disable-generate-devel-module",
        "--allow-use-as-root-and-accept-consequences", "--allow-modules-tool-mismatch",
        "--disable-show-progress-bar", "--output-style=basic", "--disable-trace",
    ]


def configure(root: Path, tmpdir: Path) -> None:
    """Set EasyBuild's process-wide configuration once, quietly (it prints and rewrites os.environ)."""
    from easybuild.tools.options import set_up_configuration

    os.environ.setdefault("LMOD_CMD", LMOD_CMD)  # EasyBlock() asks for the modules tool; Lmod is never run
    os.environ.setdefault("EB_SCRIPT_PATH", str(Path(sys.prefix) / "bin" / "eb"))
    with contextlib.redirect_stdout(io.StringIO()):
        set_up_configuration(args=eb_args(root, tmpdir), silent=True, reconfigure=True)


# -- resolution -----------------------------------------------------------------------------------------


def easystack_names(easystack: Path) -> list[str]:
    """Easyconfig file names of an easystack (per-entry options are not supported here: none are used)."""
    from easybuild.framework.easystack import parse_easystack

    entries = parse_easystack(str(easystack)).ec_opt_tuples
    with_opts = [name for name, opts in entries if opts]
    if with_opts:
        raise SystemExit(f"easystack entries with options are not supported: {with_opts}")
    return [name for name, _ in entries]


def _dep_node(dep: dict) -> Node | None:
    """The node a dependency dict refers to; None for external modules, which EasyBuild never generates."""
    from easybuild.framework.easyconfig.easyconfig import ActiveMNS, robot_find_easyconfig
    from easybuild.tools.module_naming_scheme.utilities import det_full_ec_version

    if dep.get("external_module"):
        return None
    path = robot_find_easyconfig(dep["name"], det_full_ec_version(dep))
    if path is None:
        raise SystemExit(f"no easyconfig for dependency {dep['name']} {det_full_ec_version(dep)}")
    return Node(ActiveMNS().det_full_module_name(dep), path, bool(dep.get("hidden")))


def resolve(names: list[str]) -> dict[str, Node]:
    """All modules the entries need, as ``eb --robot`` would install them, keyed by full module name."""
    from easybuild.framework.easyconfig.easyconfig import process_easyconfig
    from easybuild.framework.easyconfig.tools import det_easyconfig_paths

    todo = [Node("", p, False) for p in det_easyconfig_paths(names)]
    nodes: dict[str, Node] = {}
    seen_specs: set[tuple[str, bool]] = set()
    while todo:
        node = todo.pop()
        if (node.path, node.hidden) in seen_specs:
            continue
        seen_specs.add((node.path, node.hidden))
        for parsed in process_easyconfig(node.path, hidden=node.hidden or None):
            nodes[parsed["full_mod_name"]] = Node(parsed["full_mod_name"], node.path, node.hidden)
            todo.extend(d for d in map(_dep_node, parsed["ec"].all_dependencies) if d and d.module not in nodes)
    return dict(sorted(nodes.items()))


# -- generation -----------------------------------------------------------------------------------------


def write_stubs(installdir: str) -> None:
    """Stub files in the folders a typical install has, so EasyBuild writes the usual prepend_path lines."""
    for rel in STUB_FILES:
        path = Path(installdir, rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()


def generate_one(node: Node, stubs: bool) -> str:
    """Write one module file with EasyBuild's own ``make_module_step``; returns the module file path.

    ``toolchain.dependencies`` is what ``Toolchain.prepare(loadmod=False)`` would set (all dependencies,
    in order, build-only ones flagged); ``make_module_dep`` turns the runtime ones into ``depends_on``.
    """
    from easybuild.framework.easyblock import get_easyblock_instance
    from easybuild.framework.easyconfig.easyconfig import process_easyconfig

    parsed = next(p for p in process_easyconfig(node.path, hidden=node.hidden or None)
                  if p["full_mod_name"] == node.module)
    app = get_easyblock_instance(parsed)
    try:
        if stubs:
            write_stubs(app.installdir)
        app.toolchain.dependencies = app.cfg.dependencies()
        app.make_module_step()
        return app.mod_filepath
    finally:
        app.close_log()


def _generate_chunk(args: tuple[list[Node], bool]) -> list[tuple[str, str]]:
    """Worker: generate a share of the nodes; errors come back as (module, message), not as exceptions."""
    chunk, stubs = args
    failures = []
    for node in chunk:
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                generate_one(node, stubs)
        except Exception as err:  # noqa: BLE001 - report every failing module, keep going
            failures.append((node.module, f"{type(err).__name__}: {err}"))
    return failures


def generate_all(nodes: list[Node], stubs: bool, jobs: int) -> list[tuple[str, str]]:
    """Generate all nodes in ``jobs`` forked workers (EasyBuild's configuration is inherited by fork)."""
    chunks = [(nodes[i::jobs], stubs) for i in range(jobs)]
    if jobs == 1:
        return _generate_chunk(chunks[0])
    with multiprocessing.get_context("fork").Pool(jobs) as pool:
        return [failure for part in pool.map(_generate_chunk, chunks) for failure in part]


# -- bookkeeping ----------------------------------------------------------------------------------------


def module_files(root: Path) -> list[Path]:
    """The module files of the tree (the moduleclass folders beside ``all`` only hold symlinks to them)."""
    return sorted((root / "modules" / "all").rglob("*.lua"))


def request_key(easystack: Path, stubs: bool) -> dict:
    """What the tree depends on; a cached tree is reused only when all of it matches."""
    import easybuild.tools.version as ebver

    digest = hashlib.sha256(easystack.read_bytes()).hexdigest()
    return {"easystack_sha256": digest, "stubs": stubs, "easybuild": str(ebver.VERSION),
            "generator": GENERATOR_VERSION}


def cached_count(root: Path, key: dict) -> int | None:
    """Number of module files when the tree at ``root`` was made for the same request, else None."""
    marker = root / MARKER
    if not marker.is_file():
        return None
    recorded = json.loads(marker.read_text())
    return recorded["modules"] if recorded.get("key") == key else None


def compare_trees(ours: Path, reference: Path) -> list[str]:
    """Module files that differ from a reference tree (install paths normalised to the tree root)."""
    problems = []
    ref_files = {p.relative_to(reference) for p in module_files(reference)}
    our_files = {p.relative_to(ours) for p in module_files(ours)}
    problems += [f"only in reference: {p}" for p in sorted(ref_files - our_files)]
    problems += [f"only in ours: {p}" for p in sorted(our_files - ref_files)]
    for rel in sorted(ref_files & our_files):
        ref_txt = (reference / rel).read_text().replace(str(reference), "<root>")
        our_txt = (ours / rel).read_text().replace(str(ours), "<root>")
        if ref_txt != our_txt:
            problems.append(f"differs: {rel}")
    return problems


def build_tree(root: Path, easystack: Path, stubs: bool, jobs: int) -> tuple[int, list[tuple[str, str]]]:
    """Resolve and generate into a fresh ``root``; returns (module files, failures)."""
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="bench-eb-") as tmp:
        configure(root, Path(tmp))
        t0 = time.monotonic()
        nodes = resolve(easystack_names(easystack))
        print(f"resolved {len(nodes)} modules in {time.monotonic() - t0:.1f} s", flush=True)
        failures = generate_all(list(nodes.values()), stubs, jobs)
    return len(module_files(root)), failures


def ensure_tree(root: Path, easystack: Path, stubs: bool = True, jobs: int = 2, force: bool = False) -> int:
    """Make the tree unless a matching one exists; returns the number of module files."""
    root = root.resolve()
    key = request_key(easystack, stubs)
    count = None if force else cached_count(root, key)
    if count is not None:
        print(f"reusing {root}: {count} module files")
        return count
    t0 = time.monotonic()
    count, failures = build_tree(root, easystack, stubs, jobs)
    elapsed = time.monotonic() - t0
    for module, message in failures:
        print(f"FAILED {module}: {message}", file=sys.stderr)
    if failures:
        raise SystemExit(f"{len(failures)} modules failed; tree left incomplete at {root}")
    (root / MARKER).write_text(json.dumps({"key": key, "modules": count, "seconds": round(elapsed, 1)}, indent=1))
    print(f"made {count} module files under {root / 'modules' / 'all'} in {elapsed:.1f} s")
    return count


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, required=True, help="install path of the tree (modules/, software/)")
    parser.add_argument("--easystack", type=Path, default=DEFAULT_EASYSTACK)
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--no-stubs", dest="stubs", action="store_false",
                        help="no stub files in install dirs (what eb --module-only produces)")
    parser.add_argument("--force", action="store_true", help="remake even when a matching tree exists")
    parser.add_argument("--check-against", type=Path, help="a tree made by eb --module-only to compare with")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    ensure_tree(args.root, args.easystack, args.stubs, args.jobs, args.force)
    if args.check_against:
        problems = compare_trees(args.root.resolve(), args.check_against.resolve())
        print("\n".join(problems[:50]))
        print(f"compared with {args.check_against}: {len(problems)} differences")
        raise SystemExit(1 if problems else 0)


if __name__ == "__main__":
    main()
