"""The notebook side in a real browser: Debian's Chromium, driven by Playwright, on a real JupyterLab.

The server is the notebook image's (tests/e2e/notebook.py): its Python environment, its startup hook,
uid 1000, the demo library read-only at its own path, the cpu target. What a data scientist does:
the Lmod panel lists the featured modules first and no GPU module; Jinja2/3.1.4 loads from the panel;
a notebook on each of the library's kernels imports its package from the library, on the library's
Python; the panel's loads and unloads reach a kernel's restart, and the running kernel says what changed;
jupyter-lmod's in-kernel API loads first on sys.path; the TensorBoard tile opens TensorBoard through
jupyter-server-proxy. MODLIB_SCREENSHOTS=docs saves the screenshots README shows (default: the test's
temporary folder).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from playwright.sync_api import Page

from builder.read.config import load_settings
from tests.e2e.browser import (
    TIMEOUT_MS,
    lab_page,
    new_launcher,
    open_notebook,
    restart_kernel,
    run_cell,
    widen_side_panel,
)
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
    widen_side_panel(page, 160)
    panel = page.locator("#module-jupyterlab").bounding_box()
    assert panel is not None
    page.screenshot(path=shots / "notebook-lmod-panel.png", clip={**panel, "height": 420})


def _panel_button(page: Page, section: str, module: str, label: str) -> None:
    """The panel's Load or Unload button of ``module`` in ``section`` (avail or loaded), clicked; done when
    the loaded list shows the change (a dialog with Lmod's warnings, on a swap, is closed)."""
    _panel(page)
    page.fill("#modules", module.split("-")[0])
    item = page.locator(f"#module_{section}_list li", has_text=module)
    item.hover()
    item.locator("button", has_text=label).click()
    loaded = page.locator("#module_loaded_list .jp-Module-itemLabel", has_text=module)
    loaded.wait_for(state="visible" if label == "Load" else "detached")
    if page.locator(".jp-Dialog").is_visible():
        page.locator(".jp-Dialog .jp-mod-accept").click()
    page.fill("#modules", "")
    page.press("#modules", "Enter")  # the filter off again (the panel filters on key-up)


JINJA_WHERE = "import jinja2, sys; print('jinja2', jinja2.__version__, jinja2.__file__, sys.executable)"


def _imported(out: str, root: Path) -> str:
    """The version ``JINJA_WHERE`` printed, once its file and Python are checked to be the library's."""
    version, where, python = next(line.split()[1:] for line in out.splitlines() if line.startswith("jinja2 "))
    assert Path(where).is_relative_to(root / "cpu" / "software"), out
    assert Path(python).resolve().is_relative_to(root.resolve() / "cpu" / "software"), out
    return version


def test_a_notebook_on_each_kernel_imports_its_package_from_the_library(lab):
    """JupyterLab's venv has Jinja2 3.1.6 (JupyterLab depends on it): every kernel the library generated
    imports its own package from the library, on the library's Python."""
    page, root, _ = lab
    folder = root / "live" / "targets" / "cpu" / "jupyter" / "kernels"
    specs = [json.loads((k / "kernel.json").read_text()) for k in sorted(folder.iterdir())]
    assert len(specs) >= 4
    for spec in specs:
        new_launcher(page)
        open_notebook(page, spec["display_name"])
        package = spec["metadata"]["modlib"]["module"].split("/")[0].lower()
        package = "os" if package == "ipykernel" else package  # the library Python kernel: its standard library
        out = run_cell(page, f"import {package}, sys; print({package}.__file__, sys.executable)")
        for path in out.split()[-2:]:
            assert Path(path).resolve().is_relative_to(root.resolve() / "cpu" / "software"), (spec, out)
        if spec["display_name"] == "Python 3.11 · Jinja2 3.1.4":
            assert _imported(run_cell(page, JINJA_WHERE), root) == "3.1.4"


def test_panel_loads_reach_a_restart_and_a_running_kernel_says_what_changed(lab):
    """On the Jinja2 3.1.6 kernel: the panel loads 3.1.4, the next cell says so (and still has 3.1.6), the
    restart imports 3.1.4; the panel unloads it, the next cell says so, the restart imports 3.1.6 again."""
    page, root, shots = lab
    if page.locator("#module_loaded_list .jp-Module-itemLabel", has_text="Jinja2/").count():
        _panel_button(page, "loaded", "Jinja2/3.1.4-GCCcore-system", "Unload")
    new_launcher(page)
    open_notebook(page, "Python 3.11 · Jinja2 3.1.6")
    assert _imported(run_cell(page, JINJA_WHERE), root) == "3.1.6"
    _panel_button(page, "avail", "Jinja2/3.1.4-GCCcore-system", "Load")
    out = run_cell(page, JINJA_WHERE)
    assert "modlib: modules changed in the panel since this kernel started (loaded" in out, out
    assert "Jinja2/3.1.4-GCCcore-system" in out and _imported(out, root) == "3.1.6"
    page.screenshot(path=shots / "notebook-panel-change-notice.png")
    restart_kernel(page)
    assert _imported(run_cell(page, JINJA_WHERE), root) == "3.1.4"
    _panel_button(page, "loaded", "Jinja2/3.1.4-GCCcore-system", "Unload")
    out = run_cell(page, JINJA_WHERE)
    assert "(unloaded " in out and "Jinja2/3.1.4-GCCcore-system)" in out and _imported(out, root) == "3.1.4"
    restart_kernel(page)
    assert _imported(run_cell(page, JINJA_WHERE), root) == "3.1.6"


def test_the_panels_generated_code_loads_into_a_running_kernel_first_on_sys_path(lab):
    """A notebook runs on the library's Python kernel; the panel loads Jinja2/3.1.4, and the code its "Generate
    Python code" gives (jupyter-lmod's client: a forced purge, then a load of the panel's modules) runs in the
    notebook: jinja2 imports 3.1.4 from the library, and the kernel goes on importing its own packages (the
    purge unloaded its ipykernel module). In the Jinja2 3.1.6 kernel, ``module.load`` of 3.1.4 comes first."""
    page, root, shots = lab
    new_launcher(page)
    open_notebook(page, "Python 3.11 (library)")
    if not page.locator("#module_loaded_list .jp-Module-itemLabel", has_text="Jinja2/3.1.4").count():
        _panel_button(page, "avail", "Jinja2/3.1.4-GCCcore-system", "Load")
    page.click("#export-button")
    dialog = page.locator(".jp-Dialog-body")
    text = dialog.inner_text()
    code = text[text.index("import module"):]
    assert "await module.purge(force=True)" in code and "Jinja2/3.1.4-GCCcore-system" in code, text
    page.screenshot(path=shots / "notebook-generated-code.png")
    page.locator(".jp-Dialog .jp-mod-accept").click()
    assert _imported(run_cell(page, code + "\n" + JINJA_WHERE), root) == "3.1.4"
    assert run_cell(page, "import IPython.lib.demo, jedi; print('still a kernel')").strip() == "still a kernel"
    new_launcher(page)
    open_notebook(page, "Python 3.11 · Jinja2 3.1.6")
    out = run_cell(page, "import module\nawait module.load('Jinja2/3.1.4')\n" + JINJA_WHERE)
    assert _imported(out, root) == "3.1.4", out


def test_tensorboard_tile_opens_tensorboard_through_the_proxy(lab):
    page, _, shots = lab
    new_launcher(page)
    tile = page.locator('.jp-LauncherCard[data-category="Module library"][title^="TensorBoard"]:visible')
    tile.wait_for()
    page.locator('.jp-LauncherCard[data-category="Module library"][title^="Module catalogue"]:visible').wait_for()
    tile.scroll_into_view_if_needed()  # the library's category comes last
    page.screenshot(path=shots / "notebook-launcher.png")
    with page.context.expect_page() as opened:
        tile.click()
    tensorboard = opened.value
    tensorboard.wait_for_function("document.title === 'TensorBoard'", timeout=TIMEOUT_MS)
    assert tensorboard.url.endswith("/tensorboard/")
    tensorboard.locator("text=No dashboards are active").wait_for()  # TensorBoard's own app rendered

