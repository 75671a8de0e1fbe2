"""Every path under the library root, defined once.

The volume outlives any one version of modlib, and builders, pods and notebooks all find things on it
by path; a path spelled in two places drifts. Each entry below is the pattern and the one line of
docs/library-volume.md that describes it (``python -m builder.layout`` prints that block, and a test
checks the page against it), and the methods of ``Layout`` fill the patterns in.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Place:
    """One documented place: ``pattern`` relative to the root (or to a view), ``depth`` for the drawing."""

    pattern: str
    about: str
    depth: int = 0


LIVE = Place("live -> views/<generation>", "THE entry point for notebooks (one symlink)")
VIEWS = Place("views/<generation>/", "a complete, immutable snapshot of what notebooks see")
VIEW_MARKER = Place(".modlib-generation", "made first: marks the folder as modlib's (only such folders are removed)", 1)
VIEW_TREE = Place("trees/<tree>/modules/all/...", "module files (hard links into the store)", 1)
VIEW_MODULERC = Place("<Name>/.modulerc.lua", "defaults and retirements from library.yaml", 2)
VIEW_TREE_CACHE = Place("trees/<tree>/cache/", "the tree's Lmod spider cache (spiderT.lua and its compiled twin, "
                        "timestamp; index.json, mrc.json for the next publish)", 1)
VIEW_CATALOGUE_DATA = Place("trees/<tree>/catalogue.json", "what the catalogue page says of each name of the tree "
                            "(Lmod's spider, manifests, build records), kept for the next publish", 1)
VIEW_TARGET = Place("targets/<target>/", "per target: what a notebook of that target reads", 1)
VIEW_ENV = Place("env.sh", "what a notebook image sources", 2)
VIEW_LMODRC = Place("lmodrc.lua", "Lmod's default rc + the spider caches of the target's trees", 2)
VIEW_FEATURED = Place("featured.json", "featured-modules index (schema: builder/schemas/featured.schema.json)", 2)
VIEW_FEATURED_TREE = Place("featured/", "links to the featured module files (`module use` it alone)", 2)
VIEW_JUPYTER = Place("jupyter_server_config.json", "jupyter-lmod: launcher_pins, launcher_module_map", 2)
VIEW_LAUNCHERS = Place("launchers.json", "each launcher (library.yaml's notebook.launchers) with the module it "
                       "loads: the image's hook gives them to jupyter-server-proxy", 2)
VIEW_CATALOGUE = Place("catalogue.html", "the catalogue page: every module, how to load it, what it was built "
                       "from; a search box", 2)
VIEW_PANEL_DATA = Place("modules.json", "each module of the target: description, GPU mark (the panel extension "
                        "of the notebook image shows them)", 2)
VIEW_KERNELS = Place("jupyter/", "a Jupyter data folder, first on JUPYTER_PATH (env.sh)", 2)
VIEW_KERNEL_SH = Place("kernel.sh", "what kernels run with bash: Lmod's init, env.sh, module load, exec Python", 3)
VIEW_KERNEL_STARTUP = Place("kernel_startup.py", "what kernels run before the first cell: panel change notices, "
                            "jupyter-lmod's in-kernel loads first on sys.path", 3)
VIEW_KERNEL = Place("kernels/modlib-<kernel>/kernel.json", "one kernelspec per module with a kernel", 3)
VIEW_MODLIB_EXEC = Place("bin/modlib-exec", "runs a command with a target's modules loaded (bash only): what the pods "
                         "a notebook starts run; --print-session gives a session's modules as JSON", 1)
VIEW_SESSION_PY = Place("python/modlib_session.py", "session() and pod_patch() for kernels, from modlib-exec "
                        "(env.sh names it in MODLIB_SESSION_PY)", 1)
VIEW_STATE = Place("publish.json", "each stored file the generation holds, for the next publish to compare", 1)
VIEW_INPUTS = Place("inputs.json", "digest of what the generation was made from", 1)
VIEW_RECORD = Place("record.jsonl", "every file of the generation (sha256), written last, before the swap; "
                    "modlib verify checks it", 1)
SOFTWARE = Place("<tree>/software/<Name>-<build>/...", "installs, one fresh prefix per build (EasyBuild's "
                 "<Name>/<version> below it), never written once published")
UNREFERENCED = Place("<tree>/software/.unreferenced.json", "when each prefix nothing names was first found so")
STORE = Place("<tree>/modules/all/...", "the store: module files of finished builds (builds see this)")
STAGING = Place("<tree>/.staging/<module>/", "module files of a build in progress")
BUILD_PROCESS = Place("<tree>/.staging/<module>.process", "host, process group and start time of the node's local "
                      "build (none starts beside a live one)")
MANIFEST = Place("<tree>/.modlib/manifest/<module>.json", "easyconfig digest and moduleclass of each stored module")
INTEGRITY = Place("<tree>/.modlib/integrity/<module>.jsonl", "each install at publish: every file, sha256")
SOURCES = Place("sources/", "checksum-verified source cache (EasyBuild's sourcepath layout)")
META = Place(".modlib/", "modlib's own state")
RUN_LOCK = Place("run.lock", "the run lock: holder, host, process (its mtime is the heartbeat)", 1)
EB_LOCKS = Place("eb-locks/...", "local builds' EasyBuild install locks (build pods keep theirs in their emptyDir)", 1)
RECORDS = Place("records/<tree>/<module>/", "one build record (JSON) per node run, its log beside it", 1)
LAST_RUN = Place("runs/last.json", "summary of the last run", 1)
INPUTS = Place("inputs/<digest>/",
               "site easyconfigs and hooks of a run, staged for build pods; file-<digest>/ one file a node's eb names",
               1)
CACHE = Place("cache/", "parsed easyconfigs, whole plans, library.yaml contents that passed the schema, each "
              "signed with its 'secret' (mode 0600), and apt/ (lists of Debian's source packages), where MODLIB_CACHE "
              "points here (the CronJob)", 1)

#: In the order the documentation draws them; the indented ones sit under the entry before.
ENTRIES = (LIVE, VIEWS, VIEW_MARKER, VIEW_TREE, VIEW_MODULERC, VIEW_TREE_CACHE, VIEW_CATALOGUE_DATA, VIEW_TARGET,
           VIEW_ENV, VIEW_LMODRC, VIEW_FEATURED, VIEW_FEATURED_TREE, VIEW_JUPYTER, VIEW_LAUNCHERS,
           VIEW_CATALOGUE, VIEW_PANEL_DATA, VIEW_KERNELS,
           VIEW_KERNEL_SH, VIEW_KERNEL_STARTUP, VIEW_KERNEL, VIEW_MODLIB_EXEC, VIEW_SESSION_PY, VIEW_STATE, VIEW_INPUTS,
           VIEW_RECORD, SOFTWARE, UNREFERENCED, STORE, STAGING, BUILD_PROCESS, MANIFEST, INTEGRITY, SOURCES, META,
           RUN_LOCK, EB_LOCKS, RECORDS, LAST_RUN, INPUTS, CACHE)


def slug(module: str) -> str:
    """A module name as one path component (``Jinja2/3.1.4`` -> ``Jinja2--3.1.4``)."""
    return module.replace("/", "--")


def kernel_name(module: str) -> str:
    """A module's kernel as Jupyter names kernels (lower case, [a-z0-9._-]): ``jinja2--3.1.4``."""
    return re.sub(r"[^a-z0-9._-]", "_", slug(module).lower())


def _fill(entry: Place, **values: str) -> str:
    text = entry.pattern.split(" -> ")[0].strip().rstrip("/")
    for key, value in values.items():
        text = text.replace(f"<{key}>", value)
    return text


@dataclass(frozen=True)
class Layout:
    """The library root's paths; view paths take the view (``live`` or one generation) as ``base``."""

    root: Path

    def live(self) -> Path:
        return self.root / _fill(LIVE)

    def views(self) -> Path:
        return self.root / _fill(VIEWS).split("/")[0]

    def view_tree(self, base: Path, tree: str) -> Path:
        """Module files of a tree inside a view."""
        return base / _fill(VIEW_TREE, tree=tree).removesuffix("/...")

    def view_target(self, base: Path, target: str) -> Path:
        return base / _fill(VIEW_TARGET, target=target)

    def view_jupyter(self, base: Path, target: str) -> Path:
        """A target's Jupyter data folder (kernels) inside a view: env.sh puts it on JUPYTER_PATH."""
        return self.view_target(base, target) / _fill(VIEW_KERNELS)

    def view_kernel_sh(self, base: Path, target: str) -> Path:
        return self.view_jupyter(base, target) / _fill(VIEW_KERNEL_SH)

    def view_kernel_startup(self, base: Path, target: str) -> Path:
        return self.view_jupyter(base, target) / _fill(VIEW_KERNEL_STARTUP)

    def view_kernel(self, base: Path, target: str, module: str) -> Path:
        """The folder of a module's kernelspec (kernel.json in it) inside a view."""
        return self.view_jupyter(base, target) / _fill(VIEW_KERNEL, kernel=kernel_name(module)).removesuffix(
            "/kernel.json")

    def view_modlib_exec(self, base: Path) -> Path:
        """The launcher pods run: one per view, as a pod names its target (builder/publish/session.py)."""
        return base / _fill(VIEW_MODLIB_EXEC)

    def view_session_py(self, base: Path) -> Path:
        return base / _fill(VIEW_SESSION_PY)

    def view_cache(self, base: Path, tree: str) -> Path:
        """A tree's spider cache inside a view, beside its module files."""
        return base / _fill(VIEW_TREE_CACHE, tree=tree)

    def view_catalogue_data(self, base: Path, tree: str) -> Path:
        return base / _fill(VIEW_CATALOGUE_DATA, tree=tree)

    def view_catalogue(self, base: Path, target: str) -> Path:
        """A target's catalogue page inside a view."""
        return self.view_target(base, target) / _fill(VIEW_CATALOGUE)

    def view_panel_data(self, base: Path, target: str) -> Path:
        """What the notebook panel says of each module of a target, inside a view."""
        return self.view_target(base, target) / _fill(VIEW_PANEL_DATA)

    def view_state(self, base: Path) -> Path:
        return base / _fill(VIEW_STATE)

    def view_marker(self, base: Path) -> Path:
        return base / _fill(VIEW_MARKER)

    def view_inputs(self, base: Path) -> Path:
        return base / _fill(VIEW_INPUTS)

    def view_record(self, base: Path) -> Path:
        """A generation's record of every file it holds (builder/publish/generation_record.py)."""
        return base / _fill(VIEW_RECORD)

    def software(self, tree: str) -> Path:
        """The folder of a tree's build prefixes."""
        return self.root / _fill(SOFTWARE, tree=tree).split("/<")[0]

    def prefix(self, tree: str, build: str) -> Path:
        """One build's prefix (``--installpath-software``): EasyBuild installs into <Name>/<version> below it,
        and the module file names that path, so a rebuild gets a new prefix and never touches a published one."""
        return self.root / _fill(SOFTWARE, tree=tree).replace("<Name>-<build>", build).removesuffix("/...")

    def unreferenced(self, tree: str) -> Path:
        return self.root / _fill(UNREFERENCED, tree=tree)

    @staticmethod
    def install_dir(prefix: Path, module: str) -> Path:
        """EasyBuild's install folder of ``module`` under ``prefix``: a hidden module's has no dot."""
        return prefix / module.replace("/.", "/")

    def store(self, tree: str) -> Path:
        """A tree's store: module files of finished builds, as builds and planning see them."""
        return self.root / _fill(STORE, tree=tree).removesuffix("/...")

    def module_file(self, tree: str, module: str) -> Path:
        """Where a built module's file lives in the store; its presence is what "installed" means."""
        return self.store(tree) / f"{module}.lua"

    def installed(self, tree: str, modules: Iterable[str]) -> set[str]:
        """Those of ``modules`` whose file is in ``tree``'s store (``module_file``). A cached plan asks this
        of every node on every ``modlib plan``: strings and a stat each, as a Path per node cost a tenth
        of the whole command."""
        store = str(self.store(tree))
        return {module for module in modules if os.path.isfile(f"{store}/{module}.lua")}

    def staging(self, tree: str, module: str) -> Path:
        """Module files of one node are written here and made live only after the build succeeded."""
        return self.root / _fill(STAGING, tree=tree, module=slug(module))

    def build_process(self, tree: str, module: str) -> Path:
        """Which process group builds the node locally: a run must not start a build beside a live one."""
        return self.root / _fill(BUILD_PROCESS, tree=tree, module=slug(module))

    def manifest(self, tree: str, module: str) -> Path:
        return self.root / _fill(MANIFEST, tree=tree, module=slug(module))

    def manifests(self, tree: str) -> Path:
        return self.manifest(tree, "x").parent

    def integrity(self, tree: str, module: str) -> Path:
        """What a published install held: ``modlib verify`` and ``status`` compare the volume with it."""
        return self.root / _fill(INTEGRITY, tree=tree, module=slug(module))

    def sources(self) -> Path:
        return self.root / _fill(SOURCES)

    def meta(self) -> Path:
        return self.root / _fill(META)

    def run_lock(self) -> Path:
        return self.meta() / _fill(RUN_LOCK)

    def eb_locks(self) -> Path:
        return self.meta() / _fill(EB_LOCKS).removesuffix("/...")

    def eb_install_lock(self, install_dir: Path) -> Path:
        """EasyBuild's lock of one install dir: the dir's path with '/' as '_' (easyblock.py, run_all_steps)."""
        return self.eb_locks() / (str(install_dir).replace("/", "_") + ".lock")

    def records(self, tree: str, module: str) -> Path:
        return self.meta() / _fill(RECORDS, tree=tree, module=slug(module))

    def last_run(self) -> Path:
        return self.meta() / _fill(LAST_RUN)

    def inputs(self, digest: str) -> Path:
        return self.meta() / _fill(INPUTS, digest=digest)

    def cache(self) -> Path:
        return self.meta() / _fill(CACHE)


def _is_last(i: int) -> bool:
    """No later sibling: the next entry at the same depth comes only after the parent's subtree ended."""
    for later in ENTRIES[i + 1:]:
        if later.depth <= ENTRIES[i].depth:
            return later.depth < ENTRIES[i].depth
    return True


def drawing() -> str:
    """The layout as the tree drawing of docs/library-volume.md."""
    lines = ["<root>/".ljust(44) + "the volume, mounted at the same absolute path everywhere"]
    open_levels: list[bool] = []  # per depth: does the current ancestor there have siblings below it
    for i, entry in enumerate(ENTRIES):
        last = _is_last(i)
        del open_levels[entry.depth:]
        bars = "".join("│   " if more else "    " for more in open_levels)
        lines.append((bars + ("└── " if last else "├── ") + entry.pattern).ljust(43) + " " + entry.about)
        open_levels.append(not last)
    return "\n".join(lines)


if __name__ == "__main__":
    print(drawing())
