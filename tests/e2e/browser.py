"""Debian's Chromium, driven by Playwright, on a JupyterLab server of tests/e2e/notebook.py: what the
browser tests of both notebook images share."""

from __future__ import annotations

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
        page.locator(f'.jp-LauncherCard[data-category="Notebook"][title="{kernel}"]').click()
    opened.value.wait_for_event("framereceived", lambda frame: (b"kernel_info_reply" if isinstance(frame, bytes)
                                                                else "kernel_info_reply") in frame)
    page.locator('.jp-NotebookPanel .jp-Notebook-ExecutionIndicator[data-status="idle"]').wait_for()


def run_in_new_cell(page: Page, code: str) -> str:
    """``code`` typed into the open notebook's first cell and run: the text of its first output."""
    page.locator(".jp-NotebookPanel .jp-Cell .cm-content").first.click()
    page.keyboard.type(code)
    page.keyboard.press("Shift+Enter")
    output = page.locator(".jp-NotebookPanel .jp-OutputArea-output").first
    output.wait_for()
    return output.inner_text()
