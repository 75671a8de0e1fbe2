"""The catalogue page of the demo library, opened from the volume in Debian's headless Chromium.

The screenshot goes to a temporary folder; ``MODLIB_SCREENSHOT_DIR=docs`` refreshes docs/catalogue.png."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from builder.publish import lmod
from builder.publish.notebook_env import modulepath
from builder.read.config import load_settings
from tests.helpers import REPO, bundle_easyconfig, modlib, write_config, write_easystack

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture()
def page(browser, demo_library):
    """The cuda target's page (it lists the cpu tree too), with every console error and page error kept."""
    root, _, _ = demo_library
    tab = browser.new_page(viewport={"width": 1200, "height": 900})
    errors: list[str] = []
    tab.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.goto((root / "live" / "targets" / "cuda" / "catalogue.html").as_uri())
    yield tab, errors
    tab.close()


def shown(tab) -> list[str]:
    return tab.eval_on_selector_all("section.pkg:not([hidden])", "sections => sections.map(s => s.id)")


def test_the_page_lists_what_lmod_lists_with_marks_and_provenance(page, demo_library, tmp_path):
    tab, errors = page
    root, env, _ = demo_library
    settings = load_settings(REPO / "easyconfigs" / "library.yaml", env={**os.environ, **env})
    spider = lmod.spider_json(settings.lmod_prefix, modulepath(settings, "cuda"))
    assert sorted(shown(tab)) == sorted(p["package"] for p in spider)
    jinja = tab.locator("section#Jinja2")
    assert jinja.locator("tr:has(.default)").inner_text().startswith("3.1.6-GCCcore-system")
    assert jinja.locator("code").all_inner_texts() == [f"module load Jinja2/{v}-GCCcore-system"
                                                       for v in ("3.1.4", "3.1.5", "3.1.6")]
    assert "Jinja2-3.1.6-GCCcore-system.eb" in jinja.inner_text() and "by local" in jinja.inner_text()
    assert [s for s in shown(tab) if tab.locator(f"section#{s} .featured").count()] == ["EasyBuild", "Jinja2",
                                                                                         "saxpy", "TensorBoard"]
    assert [s for s in shown(tab) if tab.locator(f"section#{s} .gpu").count()] == ["CUDA", "saxpy"]
    tab.locator("section#TensorBoard summary").click()
    assert "numpy/" in tab.locator("section#TensorBoard .ext").inner_text()
    screenshots = Path(os.environ.get("MODLIB_SCREENSHOT_DIR", tmp_path))
    tab.screenshot(path=str(screenshots / "catalogue.png"), full_page=True)
    assert errors == []


def test_search_filters_by_name_description_and_python_package(page, demo_library):
    tab, errors = page
    settings = load_settings(REPO / "easyconfigs" / "library.yaml", env={**os.environ, **demo_library[1]})
    every = lmod.spider_json(settings.lmod_prefix, modulepath(settings, "cuda"))
    box = tab.locator("#search")
    box.fill("numpy")  # a Python package inside TensorBoard only
    assert shown(tab) == ["TensorBoard"]
    box.fill("templating")  # Jinja2's description
    assert shown(tab) == ["Jinja2"]
    box.fill("GPU capabilities")  # every word, anywhere: saxpy's description
    assert shown(tab) == ["saxpy"]
    box.fill("no-such-module")
    assert shown(tab) == [] and tab.locator("#none").is_visible()
    box.fill("")
    assert len(shown(tab)) == len(every)  # the cuda target: its own tree's and the cpu tree's
    tab.locator("nav a", has_text="cpu").click()
    assert "saxpy" not in shown(tab) and "Jinja2" in shown(tab)
    assert errors == []


HOSTILE_HOME = "javascript:alert(document.domain)"
HOSTILE_DESCRIPTION = 'x" onmouseover="alert(1)" data-x="<img src=x onerror=alert(2)><script>alert(3)</script>'


def test_a_hostile_homepage_and_description_are_text_not_script(browser, tmp_path):
    """An easyconfig's homepage reaches the page through Lmod: only http(s) becomes a link. Every link of the
    hostile module is clicked and its text hovered; no dialog opens, the title stays, nothing navigates."""
    site = tmp_path / "site"
    for name, extra in (("lure", f"homepage = {HOSTILE_HOME!r}\ndescription = {HOSTILE_DESCRIPTION!r}"),
                        ("plain", "")):
        (site / name[0] / name).mkdir(parents=True)
        (site / name[0] / name / f"{name}-1.0-GCCcore-system.eb").write_text(bundle_easyconfig(name, extra))
    stack = write_easystack(tmp_path / "cpu.yaml", ["lure-1.0-GCCcore-system.eb", "plain-1.0-GCCcore-system.eb"])
    config = write_config(tmp_path, {"cpu": {"kind": "cpu", "tree": "cpu", "easystacks": [str(stack)]}},
                          easyconfig_paths=[str(site)])
    built = modlib("build", "--config", str(config), env={"MODLIB_CACHE": str(tmp_path / "cache")})
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-2000:]

    tab = browser.new_page()
    dialogs: list[str] = []
    errors: list[str] = []
    tab.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)

    def dismissed(dialog):
        dialogs.append(dialog.message)
        dialog.dismiss()

    tab.on("dialog", dismissed)
    url = (tmp_path / "library" / "live" / "targets" / "cpu" / "catalogue.html").as_uri()
    tab.goto(url)
    title = tab.title()
    lure = tab.locator("section#lure")
    assert HOSTILE_HOME in lure.locator(".desc").inner_text()
    assert HOSTILE_DESCRIPTION in lure.locator(".desc").inner_text()
    for link in lure.locator("a").all():
        link.click()
    lure.locator(".desc").hover()
    lure.locator(".desc").click()
    assert (dialogs, tab.title(), tab.url) == ([], title, url)
    assert lure.locator("a").count() == 0
    assert tab.locator("section#plain a").get_attribute("href") == "https://example.org"
    tab.locator("#search").fill("onmouseover")  # the page's own script runs under its policy
    assert shown(tab) == ["lure"] and errors == []
    tab.close()
