"""Debian's Chromium, driven by Playwright, on a JupyterLab server of tests/e2e/notebook.py: what the
browser tests of both notebook images share."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from playwright.sync_api import Page, sync_playwright

from tests.e2e.notebook import Server

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
TIMEOUT_MS = 60_000


@contextmanager
def lab_page(server: Server) -> Iterator[Page]:
    """One page on the server's JupyterLab, once its launcher shows."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        context.set_default_timeout(TIMEOUT_MS)
        page = context.new_page()
        page.goto(f"{server.url}/lab?token={server.token}")
        page.locator(".jp-LauncherCard").first.wait_for()
        try:
            yield page
        finally:
            browser.close()


def open_notebook(page: Page, kernel: str) -> None:
    """A new notebook on the kernel the launcher shows as ``kernel``, once the page has heard from it:
    the notebook's indicator says idle before the kernel has started, and JupyterLab drops a cell run
    while its connection to the kernel is still being made (seen here: no request ever sent)."""
    with page.expect_websocket(lambda ws: "/api/kernels/" in ws.url) as opened:
        page.locator(f'.jp-LauncherCard[data-category="Notebook"][title="{kernel}"]:visible').click()
    opened.value.wait_for_event("framereceived", lambda frame: (b"kernel_info_reply" if isinstance(frame, bytes)
                                                                else "kernel_info_reply") in frame)
    page.locator('.jp-NotebookPanel:visible .jp-Notebook-ExecutionIndicator[data-status="idle"]').wait_for()


def new_launcher(page: Page) -> None:
    """A new Launcher tab: a notebook opened from one takes its place."""
    page.locator(".lm-TabBar-addButton:visible").first.click()
    page.locator(".jp-LauncherCard:visible").first.wait_for()


def run_cell(page: Page, code: str) -> str:
    """``code`` in the open notebook's last cell, run; what its output area shows once the run ended."""
    cells = page.locator(".jp-NotebookPanel:visible .jp-Notebook .jp-CodeCell")
    cell = cells.nth(cells.count() - 1)  # by number: running it adds a new last cell
    cell.locator(".cm-content").click()
    page.keyboard.insert_text(code)  # not typed: the editor would close brackets and indent on its own
    page.keyboard.press("Shift+Enter")
    cell.locator(".jp-InputPrompt").filter(has_text=re.compile(r"\[\d+\]")).wait_for()
    return "\n".join(cell.locator(".jp-OutputArea-output").all_inner_texts())


def restart_kernel(page: Page) -> None:
    """Kernel › Restart Kernel…, accepted; JupyterLab's restart request ends once the kernel answers again."""
    page.locator(".lm-MenuBar-itemLabel", has_text="Kernel").click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Restart Kernel…$")).click()
    with page.expect_response(lambda r: r.url.split("?")[0].endswith("/restart") and r.request.method == "POST"):
        page.locator(".jp-Dialog .jp-mod-accept").click()
    page.locator('.jp-NotebookPanel:visible .jp-Notebook-ExecutionIndicator[data-status="idle"]').wait_for()


def widen_side_panel(page: Page, by: int) -> None:
    """The left side panel dragged ``by`` pixels wider, by its handle."""
    handle = page.locator("#jp-main-split-panel > .lm-SplitPanel-handle").first.bounding_box()
    assert handle is not None
    x, y = handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + by, y, steps=5)
    page.mouse.up()
