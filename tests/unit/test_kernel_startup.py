"""What kernels run before their first cell (builder/publish/kernel_startup.py): the notice of the panel's
changes, and the order jupyter-lmod's in-kernel loads leave sys.path in. A real kernel runs it in
tests/e2e/test_notebook_side.py and in the browser tests."""

from __future__ import annotations

import os
import sys

from builder.publish import kernel_startup as ks

JINJA, MARKUP, TOOL = "Jinja2/3.1.4-GCCcore-system", "MarkupSafe/2.1.5-GCCcore-system", "Tool/1.0"
WRONG_SITE = os.path.join("lib", "python" + sys.version[:3], "site-packages")  # what jupyter-lmod computes


def test_the_notice_names_what_was_loaded_and_unloaded_and_what_to_do():
    assert ks.change_notice(TOOL, TOOL, "") is None
    notice = ks.change_notice(TOOL, f"{JINJA}:{MARKUP}", "")
    assert notice is not None
    assert f"loaded {JINJA}, {MARKUP}; unloaded {TOOL}" in notice and "Restart Kernel" in notice


def test_the_notice_leaves_the_kernels_own_modules_out():
    """A restart keeps them: the Python the panel's Jinja2 needs is the kernel's already."""
    python = "Python/3.11.2-GCCcore-system"
    notice = ks.change_notice(python, f"{python}:{MARKUP}:{JINJA}", f"{python}:{TOOL}")
    assert notice is not None and f"(loaded {MARKUP}, {JINJA})" in notice
    assert f"unloaded {JINJA})" in (ks.change_notice(f"{python}:{JINJA}", "", python) or "")
    assert ks.change_notice(f"{TOOL}", f"{TOOL}:{python}", python) is None


def test_the_panel_is_read_before_each_cell_and_each_change_told_once(tmp_path):
    panel, said = tmp_path / "panel.modules", list[str]()
    before_cell = ks.watch_panel(str(panel), TOOL, "", said.append)
    before_cell(None)  # no file (yet): nothing to say
    panel.write_text(TOOL + "\n")
    before_cell(None)
    assert said == []
    panel.write_text(f"{TOOL}:{JINJA}\n")
    before_cell(None)
    before_cell(None)
    assert len(said) == 1 and f"loaded {JINJA}" in said[0]
    panel.write_text(TOOL + "\n")
    before_cell(None)
    assert said[1] == "modlib: the panel's modules are again those this kernel started with."
    panel.write_text(f"{TOOL}:{MARKUP}\n")  # a module the kernel has already: nothing to tell
    silent = ks.watch_panel(str(panel), TOOL, MARKUP, said.append)
    silent(None)
    assert len(said) == 2


def test_python_paths_follow_pythonpath_then_ebpythonprefixes():
    site = f"lib/python{sys.version_info[0]}.{sys.version_info[1]}/site-packages"
    env = {"PYTHONPATH": "/a/site:/b/site", "EBPYTHONPREFIXES": "/c"}
    assert ks.python_paths(env) == ["/a/site", "/b/site", f"/c/{site}"]
    assert ks.python_paths({}) == []


def test_a_load_puts_its_paths_first_and_takes_jupyter_lmods_appended_ones_away():
    cwd, stdlib, venv = os.getcwd(), "/usr/lib/python3.11", "/venv/lib/python3.11/site-packages"
    old, new = "/lib/jinja-old/site-packages", "/lib/jinja-new/site-packages"
    # jupyter-lmod removed the old path and appended the new one with a slash, and a python3.1 twin of a prefix's
    after_jupyter_lmod = [cwd, stdlib, venv, new + "/", f"/prefix/{WRONG_SITE}"]
    prefix_site = f"/prefix/lib/python{sys.version_info[0]}.{sys.version_info[1]}/site-packages"
    assert ks.paths_first(after_jupyter_lmod, [old], [new, prefix_site], WRONG_SITE) == [
        cwd, new, prefix_site, stdlib, venv]
    # an unload: its path leaves sys.path wherever it was
    assert ks.paths_first([cwd, old, stdlib], [old], [], WRONG_SITE) == [cwd, stdlib]


def test_packages_imported_before_a_load_are_named(tmp_path):
    loaded = tmp_path / "site"
    (loaded / "json").mkdir(parents=True)  # json is imported already, from the standard library
    (loaded / "not_imported_anywhere").mkdir()
    (loaded / "os.py").write_text("")
    (loaded / "_io").mkdir()  # private: not named
    assert ks.stale_imports([str(loaded), str(tmp_path / "missing")]) == ["json", "os"]
