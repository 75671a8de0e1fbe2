"""Launchers in a real browser: library.yaml's notebook.launchers become tiles of their own category in
JupyterLab's launcher (the notebook image's hook, jupyter-server-proxy), beside the catalogue page's tile.

A small library of two featured modules, probe and idle, whose launchers cannot start: one exits at once with an error
(a real tool with a wrong option), one never answers on its port. Each tile's tab shows, well within 15 s
for the one that exits, a page naming the module, the command and the last lines of the tool's output; the
page links the tool's log, which opens in JupyterLab. The catalogue tile opens the target's catalogue page.
MODLIB_SCREENSHOTS=docs saves the screenshot README shows (default: the test's temporary folder).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
from playwright.sync_api import Page

from tests.e2e.browser import lab_page, new_launcher
from tests.e2e.notebook import jupyter_lab
from tests.helpers import bundle_easyconfig, modlib, write_config, write_easystack

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="mount namespaces and setpriv need root (test machines are root)"),
    pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="Debian's chromium missing: `make test-tools`"),
]

CATEGORY = "Module library"
LAUNCHERS = {
    # a real tool, started wrong: Python's http.server refuses the option and exits 2
    "broken": {"title": "Probe server", "command": ["python", "-m", "http.server", "--no-such-option", "{port}"]},
    "stuck": {"title": "Probe stuck", "command": ["sleep", "600"], "timeout": 3},
}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """The probe library, built; its server and one browser page on JupyterLab."""
    repo = tmp_path_factory.mktemp("launchers")
    site = repo / "site"
    for name in ("probe", "idle"):
        (site / name[0] / name).mkdir(parents=True)
        (site / name[0] / name / f"{name}-1.0-GCCcore-system.eb").write_text(bundle_easyconfig(name, ""))
    stack = write_easystack(repo / "cpu.yaml", ["probe-1.0-GCCcore-system.eb", "idle-1.0-GCCcore-system.eb"])
    config = write_config(repo, {"cpu": {"kind": "cpu", "tree": "cpu", "easystacks": [str(stack)]}},
                          easyconfig_paths=[str(site)],
                          extra={"notebook": {"launchers": LAUNCHERS, "kernels": []},
                                 "featured": [{"name": "probe", "launcher": "broken"},
                                              {"name": "idle", "launcher": "stuck"}]})
    built = modlib("build", "--config", str(config), env={"MODLIB_CACHE": str(repo / "cache")})
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-2000:]
    shots = Path(os.environ.get("MODLIB_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    with jupyter_lab(repo / "library", "cpu", Path(sys.executable)) as server, lab_page(server) as page:
        yield page, shots


def _open_tile(page: Page, title: str) -> tuple[Page, float]:
    """The tab the launcher's tile opens, once its page has loaded; the seconds from the click."""
    new_launcher(page)
    tile = page.locator(f'.jp-LauncherCard[data-category="{CATEGORY}"][title^="{title}"]:visible')
    with page.context.expect_page() as opened:
        start = time.monotonic()
        tile.click()
    tab = opened.value
    tab.wait_for_load_state()
    return tab, time.monotonic() - start


def test_tiles_have_a_category_of_their_own(lab):
    page, _ = lab
    new_launcher(page)
    tiles = page.locator(f'.jp-LauncherCard[data-category="{CATEGORY}"]:visible')
    tiles.first.wait_for()
    titles = sorted((t.get_attribute("title") or "").removesuffix(" [↗]") for t in tiles.all())  # a new tab's mark
    assert titles == ["Module catalogue", "Probe server", "Probe stuck"]
    assert page.locator(".jp-Launcher-sectionTitle:visible", has_text=CATEGORY).count() == 1


def test_a_tool_that_exits_shows_why_at_once_and_its_log_opens_in_jupyterlab(lab):
    page, shots = lab
    tab, seconds = _open_tile(page, "Probe server")
    heading = tab.locator("h1")
    assert heading.inner_text() == "Probe server could not start"
    print(f"\nfailing launcher: its page shown {seconds:.1f} s after the click")
    assert seconds < 15
    text = tab.locator("body").inner_text()
    assert "probe/1.0-GCCcore-system" in text and "python -m http.server --no-such-option" in text
    assert "exited with status 2" in text
    assert "unrecognized arguments: --no-such-option" in tab.locator("#tail").inner_text()
    tab.screenshot(path=shots / "notebook-launcher-error.png")
    with tab.context.expect_page() as opened:
        tab.locator("a", has_text="launcher-logs/broken.log").click()
    log = opened.value
    editor = log.locator(".jp-FileEditor .cm-content")
    editor.wait_for()
    assert "unrecognized arguments: --no-such-option" in editor.inner_text()
    log.close()
    tab.close()


def test_a_tool_that_never_answers_is_stopped_at_its_timeout(lab):
    page, _ = lab
    tab, seconds = _open_tile(page, "Probe stuck")
    assert tab.locator("h1").inner_text() == "Probe stuck could not start"
    assert "did not answer on its port within 3 s, and was stopped" in tab.locator("body").inner_text()
    assert 3 <= seconds < 15
    tab.close()


def test_the_catalogue_tile_opens_the_targets_catalogue(lab):
    page, _ = lab
    tab, _ = _open_tile(page, "Module catalogue")
    tab.locator("section#probe").wait_for()
    assert tab.url.endswith("/catalogue/cpu/catalogue.html")
    assert "module load probe/1.0-GCCcore-system" in tab.locator("section#probe").inner_text()
    tab.close()
