"""jupyter-lmod's panel with modlib's extension (k8s-jobs/notebook-image/panel), in a real browser on the demo
library: each row says what its module is (a second line and the tooltip, from the view's modules.json), the
featured modules have a heading, the cuda target's GPU modules a mark, and the rows work with the keyboard
(Tab reaches them, arrows move between them, Enter loads and unloads). MODLIB_SCREENSHOTS=docs saves the
cuda panel's screenshot README shows (default: the test's temporary folder).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from builder.read.config import load_settings
from tests.e2e.browser import lab_page, widen_side_panel
from tests.e2e.notebook import jupyter_lab
from tests.helpers import REPO

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="mount namespaces and setpriv need root (test machines are root)"),
    pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="Debian's chromium missing: `make test-tools`"),
]
ROWS = "#module_avail_list .jp-Module-item"


@pytest.fixture(scope="module", params=["cpu", "cuda"])
def panel(request, demo_library, tmp_path_factory):
    """The target's JupyterLab, its panel open."""
    root, env, _ = demo_library
    configured = load_settings(REPO / "easyconfigs" / "library.yaml", env={**os.environ, **env}).python
    shots = Path(os.environ.get("MODLIB_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    with jupyter_lab(root, request.param, Path(configured) if configured else None) as server, \
            lab_page(server) as page:
        page.click('.jp-SideBar.jp-mod-left li[data-id="module-jupyterlab"]')
        page.locator(f"{ROWS}[data-modlib]").first.wait_for()
        yield page, root / "live" / "targets" / request.param, request.param, shots


def _featured(target: Path) -> list[str]:
    return [m["module"] for m in json.loads((target / "featured.json").read_text())["modules"]]


def test_rows_say_what_each_module_is_and_the_featured_ones_are_grouped(panel):
    page, target, _, _ = panel
    about = json.loads((target / "modules.json").read_text())["modules"]
    featured = _featured(target)
    rows = page.locator(ROWS)
    assert rows.count() >= len(featured) > 0
    for i in range(rows.count()):
        row = rows.nth(i)
        name = row.locator(".jp-Module-itemLabel").inner_text()
        description = about[name]["description"]
        assert row.get_attribute("title") == (f"{name}\n\n{description}" if description else name)
        assert row.locator(".modlib-desc").all_inner_texts() == ([description] if description else [])
    headings = page.locator("#module_avail_list .modlib-group").all_inner_texts()
    assert [h.lower() for h in headings] == ["featured", "all modules"]
    first = page.locator("#module_avail_list > li").all()
    assert first[0].inner_text().lower() == "featured"
    assert [li.locator(".jp-Module-itemLabel").inner_text() for li in first[1:len(featured) + 1]] == featured


def test_gpu_modules_are_marked_on_the_cuda_target_only(panel):
    page, target, name, shots = panel
    about = json.loads((target / "modules.json").read_text())["modules"]
    marked = {r.locator(".jp-Module-itemLabel").inner_text() for r in page.locator(ROWS).all()
              if r.locator(".modlib-gpu").count()}
    assert marked == {m for m, a in about.items() if a["gpu"]}
    if name == "cpu":
        assert marked == set()
        return
    assert "saxpy/1.0-GCCcore-system-CUDA-13.2.2" in marked and "CUDA/13.2.2" in marked
    widen_side_panel(page, 160)
    page.locator(".modlib-gpu").first.scroll_into_view_if_needed()
    box = page.locator("#module-jupyterlab").bounding_box()
    assert box is not None
    page.screenshot(path=shots / "notebook-cuda-panel.png", clip={**box, "height": min(box["height"], 520)})


@pytest.mark.parametrize("panel", ["cpu"], indirect=True)  # the cuda panel runs the same code
def test_rows_work_with_the_keyboard(panel):
    """Tab from the filter box reaches the rows; the arrows move between them; Enter loads the focused row's
    module, whose row then has the focus in the loaded list; Enter there unloads it."""
    page, _, _, _ = panel
    page.fill("#modules", "Jinja2/3.1")
    page.press("#modules", "Enter")
    page.focus("#modules")
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.matches('#module_avail_list .jp-Module-item')"):
            break
    else:
        pytest.fail("Tab never reached a row of the list")
    names = page.locator(f"{ROWS} .jp-Module-itemLabel").all_inner_texts()
    focused = "document.activeElement.dataset.modlib"
    assert page.evaluate(focused) == names[0]
    page.keyboard.press("ArrowDown")
    assert page.evaluate(focused) == names[1]
    page.keyboard.press("Enter")
    loaded = page.locator(f'#module_loaded_list .jp-Module-item[data-modlib="{names[1]}"]')
    loaded.wait_for()
    page.wait_for_function("document.activeElement.matches('#module_loaded_list .jp-Module-item')")
    assert page.evaluate(focused) == names[1]
    page.keyboard.press("Enter")
    loaded.wait_for(state="detached")
    page.fill("#modules", "")
    page.press("#modules", "Enter")
