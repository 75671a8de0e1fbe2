"""Make a real EasyBuild-generated Lmod module tree (1000+ modules) without building any software.

The notebook-side benchmark needs a tree the size and shape of a real library: EasyBuild's own module
files, with their ``depends_on(...)`` lines, moduleclass symlink trees and ``prepend_path`` lines. Building
1102 packages takes days; ``eb --module-only --robot`` over the same list takes 22 minutes here (2 cores),
because for every module it asks Lmod to ``list``, ``avail``, ``show`` and ``load`` its dependencies on a
tree that grows as it goes (and without the stub files below it stops at LLVM). This script does what
``--module-only`` does, mostly in-process and without Lmod:

1. Resolve every easystack entry and its dependencies (build ones included, as ``eb --robot`` does) with
   EasyBuild's parser, keyed by full module name (EasyBuild's ``resolve_dependencies``, in
   easybuild/tools/robot.py, compares ``EasyConfig`` objects pairwise: docs/performance.md, "Lab notes").
2. Put stub files into each install dir (``tree_hooks.py``): EasyBuild only writes ``prepend_path`` for
   folders that exist and hold files, so without stubs the modules would lack the PATH,
   LD_LIBRARY_PATH, ... lines real modules have (``--no-stubs`` turns this off).
3. Fast path, for each module: instantiate its easyblock, set what the prepare step would have set
   without running Lmod (the toolchain's dependency list; ``$EBROOT<DEP>``/``$EBVERSION<DEP>`` of the
   dependency modules a load would bring in), and call EasyBuild's own ``make_module_step()``
   (module text, hooks, moduleclass symlinks, ``.modulerc.lua``).
4. Fallback: easyblocks that need more of the prepare step (e.g. PythonBundle asks the loaded Python for
   its site-packages folders) fail in the fast path; those go through a real
   ``eb --module-only --robot`` with the same options and hooks.

``--check-against DIR`` compares the generated files with a tree made entirely by ``eb --module-only``
(same options and hooks) to show that the contents are the same.

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
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from tree_hooks import STUB_FILES, write_stubs  # type: ignore[import-not-found]  # noqa: E402  (run as a script)

REPO = BENCH.parent
DEFAULT_EASYSTACK = REPO / "tests" / "data" / "eessi-2025.06.yml"
HOOKS = BENCH / "tree_hooks.py"
LMOD_CMD = "/usr/share/lmod/lmod/libexec/lmod"
MARKER = "bench-tree.json"
#: Bump when the generation changes, so cached trees are remade.
GENERATOR_VERSION = 3


@dataclass(frozen=True)
class Node:
    """One module to generate: its easyconfig, and the modules it needs (direct; runtime ones apart)."""

    module: str
    path: str
    hidden: bool
    deps: tuple[str, ...] = ()
    runtime_deps: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()  # what loading this module sets: $EBROOT<NAME>, $EBVERSION<NAME>


# -- configuration --------------------------------------------------------------------------------------


def robot_paths() -> list[str]:
    """EasyBuild's own easyconfigs (found through ``eb`` on PATH, else where pip puts them)."""
    from easybuild.framework.easyconfig.tools import get_paths_for

    os.environ.setdefault("EB_SCRIPT_PATH", str(Path(sys.prefix) / "bin" / "eb"))
    return get_paths_for(subdir="easyconfigs", robot_path=None) or [str(Path(sys.prefix) / "easybuild" / "easyconfigs")]


def eb_options(root: Path, tmpdir: Path, stubs: bool) -> list[str]:
    """The ``eb --module-only`` options, shared by the fast path and the fallback so both write the same.

    ``--force``/``--ignore-osdeps``/``--skip-sanity-check`` skip checks that need the real software; no
    devel module (it needs Lmod) and no backups of module files (a real install makes neither). The
    build path sits in the tree because buildenv modules name it (rpath wrappers): keeps them reproducible.
    """
    opts = [
        f"--robot-paths={':'.join(robot_paths())}", f"--installpath={root}",
        f"--tmpdir={tmpdir}", f"--buildpath={root / 'build'}", f"--repositorypath={tmpdir / 'repo'}",
        "--module-only", "--force", "--skip-sanity-check", "--ignore-osdeps", "--disable-generate-devel-module",
        "--disable-backup-modules", "--allow-use-as-root-and-accept-consequences", "--allow-modules-tool-mismatch",
        "--disable-show-progress-bar", "--output-style=basic",
    ]
    return opts + ([f"--hooks={HOOKS}"] if stubs else [])


def configure(root: Path, tmpdir: Path, stubs: bool) -> None:
    """Set EasyBuild's process-wide configuration once, quietly (it prints and rewrites os.environ)."""
    from easybuild.tools.options import set_up_configuration

    os.environ.setdefault("LMOD_CMD", LMOD_CMD)  # EasyBlock() wants a modules tool (fast path: only its version)
    with contextlib.redirect_stdout(io.StringIO()):
        set_up_configuration(args=["--robot"] + eb_options(root, tmpdir, stubs), silent=True, reconfigure=True)


# -- resolution -----------------------------------------------------------------------------------------


def easystack_names(easystack: Path) -> list[str]:
    """Easyconfig file names of an easystack (per-entry options are not supported here: none are used)."""
    from easybuild.framework.easystack import parse_easystack

    entries = parse_easystack(str(easystack)).ec_opt_tuples
    with_opts = [name for name, opts in entries if opts]
    if with_opts:
        raise SystemExit(f"easystack entries with options are not supported: {with_opts}")
    return [name for name, _ in entries]


def _dep_ref(dep: dict) -> tuple[str, str, bool, bool] | None:
    """(module, easyconfig, hidden, build_only) of a dependency dict; None for external modules."""
    from easybuild.framework.easyconfig.easyconfig import ActiveMNS, robot_find_easyconfig
    from easybuild.tools.module_naming_scheme.utilities import det_full_ec_version

    if dep.get("external_module"):
        return None
    path = robot_find_easyconfig(dep["name"], det_full_ec_version(dep))
    if path is None:
        raise SystemExit(f"no easyconfig for dependency {dep['name']} {det_full_ec_version(dep)}")
    return ActiveMNS().det_full_module_name(dep), path, bool(dep.get("hidden")), bool(dep.get("build_only"))


def _load_env(ec) -> tuple[tuple[str, str], ...]:
    """$EBROOT<NAME> and $EBVERSION<NAME> as EasyBuild's module for ``ec`` sets them on load."""
    from easybuild.framework.easyconfig.easyconfig import ActiveMNS
    from easybuild.tools.config import install_path
    from easybuild.tools.modules import get_software_root_env_var_name, get_software_version_env_var_name

    root = os.path.join(os.path.abspath(install_path("software")), ActiveMNS().det_install_subdir(ec))
    return ((get_software_root_env_var_name(ec.name), root),
            (get_software_version_env_var_name(ec.name), ec.version))


def _parse(path: str, hidden: bool) -> tuple[list[Node], list[tuple[str, bool]]]:
    """The nodes one easyconfig file makes (one per multi_deps variant), and its dependencies' specs."""
    from easybuild.framework.easyconfig.easyconfig import process_easyconfig

    nodes, specs = [], []
    for parsed in process_easyconfig(path, hidden=hidden or None):
        refs = [r for r in map(_dep_ref, parsed["ec"].all_dependencies) if r]
        nodes.append(Node(parsed["full_mod_name"], path, hidden, tuple(r[0] for r in refs),
                          tuple(r[0] for r in refs if not r[3]), _load_env(parsed["ec"])))
        specs += [(r[1], r[2]) for r in refs]
    return nodes, specs


def resolve(names: list[str]) -> dict[str, Node]:
    """All modules the entries need, as ``eb --robot`` would install them, keyed by full module name."""
    from easybuild.framework.easyconfig.tools import det_easyconfig_paths

    todo = [(p, False) for p in det_easyconfig_paths(names)]
    nodes: dict[str, Node] = {}
    seen: set[tuple[str, bool]] = set()
    while todo:
        spec = todo.pop()
        if spec not in seen:
            seen.add(spec)
            parsed, dep_specs = _parse(*spec)
            nodes.update((node.module, node) for node in parsed)
            todo.extend(dep_specs)
    return dict(sorted(nodes.items()))


def loaded_with(node: Node, nodes: dict[str, Node]) -> list[Node]:
    """The modules the prepare step loads for ``node``: its dependencies, plus what their depends_on loads."""
    seen: dict[str, Node] = {}
    todo = list(node.deps)
    while todo:
        name = todo.pop()
        if name not in seen and name in nodes:
            seen[name] = nodes[name]
            todo.extend(nodes[name].runtime_deps)
    return list(seen.values())


# -- generation: fast path ------------------------------------------------------------------------------


@contextlib.contextmanager
def dependency_env(node: Node, nodes: dict[str, Node]):
    """Set the $EBROOT*/$EBVERSION* that loading the dependency modules would set; restore afterwards."""
    saved = dict(os.environ)
    try:
        for dep in loaded_with(node, nodes):
            os.environ.update(dict(dep.env))
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def generate_one(node: Node, nodes: dict[str, Node], stubs: bool) -> str:
    """Write one module file with EasyBuild's own ``make_module_step``; returns the module file path.

    ``toolchain.dependencies`` is what ``Toolchain.prepare(loadmod=False)`` would set (all dependencies,
    in order, build-only ones flagged); ``make_module_dep`` turns the runtime ones into ``depends_on``.
    """
    from easybuild.framework.easyblock import get_easyblock_instance
    from easybuild.framework.easyconfig.easyconfig import process_easyconfig

    parsed = next(p for p in process_easyconfig(node.path, hidden=node.hidden or None)
                  if p["full_mod_name"] == node.module)
    with dependency_env(node, nodes):
        app = get_easyblock_instance(parsed)
        try:
            if stubs:
                write_stubs(app.installdir)
            app.post_init()
            app.update_config_template_run_step()
            app.toolchain.dependencies = app.cfg.dependencies()
            app.make_module_step()
            return app.mod_filepath
        finally:
            app.close_log()


def _generate_share(args: tuple[list[Node], dict[str, Node], bool]) -> list[Node]:
    """Worker: generate a share of the nodes; returns the ones the fast path cannot make."""
    share, nodes, stubs = args
    failed = []
    for node in share:
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                generate_one(node, nodes, stubs)
        except Exception:
            failed.append(node)
    return failed


def shares(nodes: dict[str, Node], jobs: int) -> list[list[Node]]:
    """Split by software name, so that one worker writes all of a name's ``.modulerc.lua`` (no races)."""
    by_name: dict[str, list[Node]] = defaultdict(list)
    for node in nodes.values():
        by_name[node.module.split("/")[0]].append(node)
    parts: list[list[Node]] = [[] for _ in range(jobs)]
    for name in sorted(by_name, key=lambda n: -len(by_name[n])):
        min(parts, key=len).extend(by_name[name])
    return parts


def generate_fast(nodes: dict[str, Node], stubs: bool, jobs: int) -> list[Node]:
    """Fast path in ``jobs`` forked workers (EasyBuild's configuration is inherited by fork)."""
    work = [(part, nodes, stubs) for part in shares(nodes, jobs)]
    if jobs == 1:
        return _generate_share(work[0])
    with multiprocessing.get_context("fork").Pool(jobs) as pool:
        return [node for part in pool.map(_generate_share, work) for node in part]


# -- generation: fallback -------------------------------------------------------------------------------


def generate_with_eb(failed: list[Node], root: Path, tmpdir: Path, stubs: bool, log: Path) -> None:
    """Real ``eb --module-only --robot`` for the nodes the fast path could not make (their deps exist)."""
    venv_bin = Path(sys.executable).parent  # eb finds its Python on PATH
    env = dict(os.environ, LMOD_CMD=LMOD_CMD, MODULEPATH=str(root / "modules" / "all"),
               PATH=f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}")
    cmd = [str(venv_bin / "eb"), *sorted({n.path for n in failed}), "--robot",
           *eb_options(root, tmpdir, stubs), "--keep-going"]
    with log.open("a") as out:
        subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, check=False)


def generate_fallback(failed: list[Node], root: Path, tmpdir: Path, stubs: bool,
                      passes: int = 3) -> None:
    """eb in passes: eb's robot orders only by a node's own dependencies, so a node whose dependency's
    module (made by the fast path) loads a module still to be made by eb fails; the next pass makes it."""
    log = root / "eb-fallback.log"
    todo = failed
    for _ in range(passes):
        generate_with_eb(todo, root, tmpdir, stubs, log)
        left = set(missing({n.module: n for n in todo}, root))
        todo = [n for n in todo if n.module in left]
        if not todo:
            return


# -- bookkeeping ----------------------------------------------------------------------------------------


def module_files(root: Path) -> list[Path]:
    """The module files of the tree, ``.modulerc.lua`` excluded (the moduleclass folders beside ``all``
    only hold symlinks to these)."""
    return sorted(p for p in (root / "modules" / "all").rglob("*.lua") if p.name != ".modulerc.lua")


def missing(nodes: dict[str, Node], root: Path) -> list[str]:
    """Resolved modules that are neither a module file nor a ``module_version`` alias (``Java/17``) in the
    name's ``.modulerc.lua``, which is what EasyBuild's ModuleRC easyblock writes instead of a file."""
    def made(module: str) -> bool:
        modulerc = (root / "modules" / "all" / module).parent / ".modulerc.lua"
        alias = f'"{module.split("/", 1)[1]}")'
        return (root / "modules" / "all" / f"{module}.lua").is_file() or (
            modulerc.is_file() and alias in modulerc.read_text())

    return [m for m in nodes if not made(m)]


def request_key(easystack: Path, stubs: bool) -> dict:
    """What the tree depends on; a cached tree is reused only when all of it matches."""
    import easybuild.tools.version as ebver

    digest = hashlib.sha256(easystack.read_bytes()).hexdigest()
    return {"easystack_sha256": digest, "stubs": list(STUB_FILES) if stubs else [], "easybuild": str(ebver.VERSION),
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
    ref_files = {p.relative_to(reference) for p in (reference / "modules" / "all").rglob("*.lua")}
    our_files = {p.relative_to(ours) for p in (ours / "modules" / "all").rglob("*.lua")}
    problems += [f"only in reference: {p}" for p in sorted(ref_files - our_files)]
    problems += [f"only in ours: {p}" for p in sorted(our_files - ref_files)]
    for rel in sorted(ref_files & our_files):
        ref_txt = (reference / rel).read_text().replace(str(reference), "<root>")
        our_txt = (ours / rel).read_text().replace(str(ours), "<root>")
        if ref_txt != our_txt:
            problems.append(f"differs: {rel}")
    return problems


def build_tree(root: Path, easystack: Path, stubs: bool, jobs: int) -> dict:
    """Resolve and generate into a fresh ``root``; returns counts and timings for the marker file."""
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    stats: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench-eb-") as tmp:
        configure(root, Path(tmp), stubs)
        t0 = time.monotonic()
        nodes = resolve(easystack_names(easystack))
        stats.update(resolved=len(nodes), resolve_s=round(time.monotonic() - t0, 1))
        print(f"resolved {len(nodes)} modules in {stats['resolve_s']} s", flush=True)
        t0 = time.monotonic()
        failed = generate_fast(nodes, stubs, jobs)
        stats.update(fast_path=len(nodes) - len(failed), fast_s=round(time.monotonic() - t0, 1))
        print(f"fast path: {stats['fast_path']} modules in {stats['fast_s']} s; "
              f"{len(failed)} need eb --module-only", flush=True)
        t0 = time.monotonic()
        if failed:
            generate_fallback(failed, root, Path(tmp), stubs)
        stats.update(eb_fallback=sorted(n.module for n in failed), eb_s=round(time.monotonic() - t0, 1))
        print(f"eb --module-only: {len(failed)} modules in {stats['eb_s']} s (log: {root / 'eb-fallback.log'})")
    stats["missing"] = missing(nodes, root)
    stats["aliases"] = len(nodes) - len(module_files(root))  # ModuleRC modules: module_version, no file
    return stats


def ensure_tree(root: Path, easystack: Path, stubs: bool = True, jobs: int = 2, force: bool = False) -> int:
    """Make the tree unless a matching one exists; returns the number of module files."""
    root = root.resolve()
    key = request_key(easystack, stubs)
    count = None if force else cached_count(root, key)
    if count is not None:
        print(f"reusing {root}: {count} module files")
        return count
    t0 = time.monotonic()
    stats = build_tree(root, easystack, stubs, jobs)
    elapsed = round(time.monotonic() - t0, 1)
    if stats["missing"]:
        raise SystemExit(f"{len(stats['missing'])} modules were not made: {stats['missing'][:20]} (tree at {root})")
    count = len(module_files(root))
    (root / MARKER).write_text(json.dumps({"key": key, "modules": count, "seconds": elapsed, **stats}, indent=1))
    print(f"made {count} module files (+ {stats['aliases']} .modulerc.lua aliases) under "
          f"{root / 'modules' / 'all'} in {elapsed} s")
    return count


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, required=True, help="install path of the tree (modules/, software/)")
    parser.add_argument("--easystack", type=Path, default=DEFAULT_EASYSTACK)
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--no-stubs", dest="stubs", action="store_false", help="no stub files in install dirs")
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
