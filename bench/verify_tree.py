"""``modlib verify`` on a 1,000-module library: the EESSI tree of ``make_module_tree.py`` (real EasyBuild
module files, stub install folders), recorded as a publish records it and published as one generation.

The tree is shared with the notebook-side benchmark and never written: the library root here only links
to its ``modules`` and ``software`` folders. Compared with ``sha256sum -c`` over a list of the same files
(the plain tool for the job, which sees neither added files nor the live view); the quick check is
compared with the thorough one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from pathlib import Path

from bench.planning import REPO
from builder.commands.verify import select, store_modules, verify
from builder.layout import Layout
from builder.publish.integrity import read_entries, read_header, write_record

TREE = "cpu"


def ensure_tree(tree: Path) -> None:
    """The EESSI tree, made (about 6 minutes on 2 cores) or reused by make_module_tree.py in its own process."""
    subprocess.run([str(REPO / ".venv" / "bin" / "python"), str(REPO / "bench" / "make_module_tree.py"),
                    "--root", str(tree)], check=True, capture_output=True)


def library(tree: Path, root: Path) -> tuple[Layout, float]:
    """A library root over ``tree`` with every module recorded and linked into ``live``; the recording time."""
    shutil.rmtree(root, ignore_errors=True)
    (root / TREE).mkdir(parents=True)
    for folder in ("modules", "software"):
        (root / TREE / folder).symlink_to(tree / folder)
    layout = Layout(root)
    modules = store_modules(layout, TREE)
    t0 = time.perf_counter()
    for module in modules:
        install = layout.software(TREE) / module.replace("/.", "/")  # the tree is EasyBuild's own layout
        write_record(layout, TREE, module, install, layout.module_file(TREE, module))
    took = time.perf_counter() - t0
    generation = layout.views() / "g1"
    for module in modules:
        link = layout.view_tree(generation, TREE) / f"{module}.lua"
        link.parent.mkdir(parents=True, exist_ok=True)
        os.link(layout.module_file(TREE, module), link)
    layout.live().symlink_to(generation.relative_to(root))
    return layout, took


def checksum_list(layout: Layout, out: Path) -> int:
    """``sha256sum`` lines for every file the records hold (module files and prefixes); how many."""
    lines = []
    pattern = layout.integrity(TREE, "*")
    for record in sorted(pattern.parent.glob(pattern.name)):
        header = read_header(record) or {}
        lines.append(f"{header['module_file']['sha256']}  {header['module_file']['path']}")
        lines += [f"{e['sha256']}  {header['prefix']}/{e['path']}" for e in read_entries(record) if e["type"] == "file"]
    out.write_text("\n".join(lines) + "\n")
    return len(lines)


def timed_verify(layout: Layout) -> dict[str, float]:
    """Seconds of a thorough and a quick check of every module; an untouched tree must come out clean."""
    keys = select(layout, [TREE], [])
    timings = {}
    for mode, thorough in (("thorough", True), ("quick", False)):
        report = verify(layout, keys, thorough)
        if report.damaged():
            raise RuntimeError(f"verify found damage in an untouched tree: {report.damaged()[0]}")
        timings[mode] = report.seconds
    return timings


@contextlib.contextmanager
def behind_fuse(workdir: Path, layout: Layout, delay_ms: float):
    """The library's tree read through latencyfs (every call ``delay_ms`` late), as a network volume is;
    the records stay where they are, so the same check runs over the slow mount."""
    from bench import latencyfs  # needs fusepy and libfuse, as the notebook benchmark does

    with latencyfs.mounted(workdir / "tree", workdir / "verify-mnt", delay_ms):
        try:
            _point(layout, workdir / "verify-mnt")
            yield
        finally:
            _point(layout, workdir / "tree")


def _point(layout: Layout, tree: Path) -> None:
    for folder in ("modules", "software"):
        (layout.root / TREE / folder).unlink()
        (layout.root / TREE / folder).symlink_to(tree / folder)


def verify_rows(workdir: Path, fuse: bool) -> list[dict]:
    ensure_tree(workdir / "tree")
    layout, record_s = library(workdir / "tree", workdir / "verify-library")
    files = checksum_list(layout, workdir / "verify-sums.txt")
    timings = timed_verify(layout)
    t0 = time.perf_counter()
    subprocess.run(["sha256sum", "--quiet", "-c", str(workdir / "verify-sums.txt")], check=True)
    sums_s = time.perf_counter() - t0
    what = f"{len(store_modules(layout, TREE))} modules, {files} files"
    rows = [{"benchmark": f"verify, every byte ({what})", "modlib_s": timings["thorough"],
             "other": "sha256sum -c, same files", "other_s": sums_s, "target": "seconds"},
            {"benchmark": f"verify --quick, size and mtime ({what})", "modlib_s": timings["quick"],
             "other": "verify, every byte", "other_s": timings["thorough"], "target": ""},
            {"benchmark": f"record every install at publish ({what})", "modlib_s": record_s,
             "other": "verify, every byte", "other_s": timings["thorough"], "target": ""}]
    if fuse:
        with behind_fuse(workdir, layout, 1.0):
            slow = timed_verify(layout)
        rows += [{"benchmark": f"verify{flag}, FUSE +1 ms per call ({what})", "modlib_s": slow[mode],
                  "other": "same, local disk", "other_s": timings[mode], "target": ""}
                 for flag, mode in (("", "thorough"), (" --quick", "quick"))]
    return rows


if __name__ == "__main__":
    import sys

    from bench.run import table

    print(table(verify_rows(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/modlib-bench"), fuse=True)))
