"""The notebook side in a real browser: Debian's Chromium, driven by Playwright, on a real JupyterLab.

The server is the notebook image's (tests/e2e/notebook.py): its Python environment, its startup hook,
uid 1000, the demo library read-only at its own path, the cpu target. What a data scientist does:
the Lmod panel lists the featured modules first and no GPU module; Jinja2/3.1.4 loads from the panel;
a notebook on the library's "Jinja2 3.1.4" kernel imports that version from the library; the
TensorBoard tile opens TensorBoard through jupyter-server-proxy. MODLIB_SCREENSHOTS=docs saves the
screenshots README shows (default: the test's temporary folder).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from playwright.sync_api import Page

from builder.read.config import load_settings
from tests.e2e.browser import TIMEOUT_MS, lab_page, open_notebook, run_in_new_cell
from tests.e2e.notebook import jupyter_lab
from tests.helpers import REPO

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="mount namespaces and setpriv need root (test machines are root)"),
    pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="Debian's chromium missing: `make test-tools`"),
]

@pytest.fixture(scope="module")
def lab(demo_library, tmp_path_factory):
    """The server and one browser page on JupyterLab, for the module's tests in turn."""
    root, env, _ = demo_library
    configured = load_settings(REPO / "easyconfigs" / "library.yaml", env={**os.environ, **env}).python
    python = Path(configured) if configured else None
    shots = Path(os.environ.get("MODLIB_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    start = time.monotonic()
    with jupyter_lab(root, "cpu", python) as server, lab_page(server) as page:
        yield page, root, shots
    print(f"\nnotebook browser tests: server, browser and all steps in {time.monotonic() - start:.1f} s")


def _panel(page: Page) -> list[str]:
    """jupyter-lmod's panel, opened from its side bar tab (a second click would close it)."""
    if not page.locator("#module-jupyterlab").is_visible():
        page.click('.jp-SideBar.jp-mod-left li[data-id="module-jupyterlab"]')
    page.locator("#module_avail_list .jp-Module-itemLabel").first.wait_for()
    return page.locator("#module_avail_list .jp-Module-itemLabel").all_inner_texts()


def _modules(tree: Path) -> set[str]:
    files = (tree / "modules" / "all").glob("*/[!.]*.lua")  # not .modulerc.lua
    return {f"{f.parent.name}/{f.name.removesuffix('.lua')}" for f in files}


def _widen_side_panel(page: Page, by: int) -> None:
    handle = page.locator("#jp-main-split-panel > .lm-SplitPanel-handle").first.bounding_box()
    assert handle is not None
    x, y = handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + by, y, steps=5)
    page.mouse.up()


def test_lmod_panel_lists_featured_modules_first_and_no_gpu_module(lab):
    page, root, shots = lab
    listed = _panel(page)
    featured = json.loads((root / "live" / "targets" / "cpu" / "featured.json").read_text())["modules"]
    assert featured and listed[:len(featured)] == [m["module"] for m in featured]
    assert set(listed) == _modules(root / "live" / "trees" / "cpu")
    gpu = _modules(root / "live" / "trees" / "cuda")
    assert gpu and not gpu & set(listed), "a module of the cuda tree is listed on the cpu target"


def test_jinja2_loads_from_the_panel(lab):
    page, _, shots = lab
    _panel(page)
    page.fill("#modules", "Jinja2/3.1.4")
    item = page.locator("#module_avail_list li", has_text="Jinja2/3.1.4-GCCcore-system")
    item.hover()
    item.locator("button", has_text="Load").click()
    page.locator("#module_loaded_list .jp-Module-itemLabel", has_text="Jinja2/3.1.4-GCCcore-system").wait_for()
    loaded = page.locator("#module_loaded_list .jp-Module-itemLabel").all_inner_texts()
    assert "MarkupSafe/3.0.2-GCCcore-system" in loaded  # its dependency, loaded by Lmod with it
    page.fill("#modules", "")
    page.press("#modules", "Enter")  # the panel filters on key-up
    page.locator("#module_avail_list .jp-Module-itemLabel", has_text="TensorBoard").wait_for()
    _widen_side_panel(page, 160)
    panel = page.locator("#module-jupyterlab").bounding_box()
    assert panel is not None
    page.screenshot(path=shots / "notebook-lmod-panel.png", clip={**panel, "height": 260})


def test_notebook_on_the_jinja2_kernel_imports_it_from_the_library(lab):
    """JupyterLab's venv has Jinja2 3.1.6 (JupyterLab depends on it): the kernel imports the library's 3.1.4,
    on the library's Python (a library built for the image's Python: on that one)."""
    page, root, _ = lab
    open_notebook(page, "Python 3.11 · Jinja2 3.1.4")
    output = run_in_new_cell(page, "import jinja2, sys; print(jinja2.__version__, jinja2.__file__, sys.executable)")
    version, where, python = output.split()
    assert version == "3.1.4"
    assert Path(where).is_relative_to(root / "cpu" / "software")
    configured = load_settings(REPO / "easyconfigs" / "library.yaml", env={**os.environ, "MODLIB_ROOT": str(root)})
    if configured.python is None:
        assert Path(python).resolve().is_relative_to(root.resolve() / "cpu" / "software"), python
    else:
        assert Path(python) == Path(configured.python), python


def test_tensorboard_tile_opens_tensorboard_through_the_proxy(lab):
    page, _, shots = lab
    page.locator(".lm-TabBar-addButton:visible").first.click()  # a new Launcher: the notebook took the first
    tile = page.locator('.jp-LauncherCard[title^="TensorBoard"]')
    tile.wait_for()
    page.screenshot(path=shots / "notebook-launcher.png")
    with page.context.expect_page() as opened:
        tile.click()
    tensorboard = opened.value
    tensorboard.wait_for_function("document.title === 'TensorBoard'", timeout=TIMEOUT_MS)
    assert tensorboard.url.endswith("/tensorboard/")
    tensorboard.locator("text=No dashboards are active").wait_for()  # TensorBoard's own app rendered

