"""Bring your own image, in a real browser: a JupyterLab image that knows nothing of modlib gets the
library's kernels, its Python packages and its `module` from the mount, one profile line and JUPYTER_PATH.

The image is Debian trixie with its own Python 3.13 and JupyterLab from PyPI, no Lmod (tests/e2e/byo_image.py),
run with what z2jh-values-byo-image.yaml gives a stock image; Debian's Chromium drives it through
Playwright. Its launcher lists the library's kernels beside the image's own; a notebook on the library's
"Jinja2 3.1.4" kernel imports 3.1.4 from the library on the library's Python (the image's venv has Jinja2
3.1.6, JupyterLab's); a JupyterLab terminal, a login shell, loads Jinja2/3.1.4 with the library's Lmod and
its `python` imports 3.1.4 from the library. MODLIB_SCREENSHOTS=docs saves the screenshots README shows.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.error
from pathlib import Path

import pytest
from playwright.sync_api import Page

from tests.e2e.browser import TIMEOUT_MS, lab_page, open_notebook, run_cell
from tests.e2e.byo_image import byo_jupyter_lab, make_root
from tests.e2e.notebook import Server

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="mmdebstrap, namespaces, chroot need root (test machines are)"),
    pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="Debian's chromium missing: `make test-tools`"),
    pytest.mark.skipif(shutil.which("mmdebstrap") is None, reason="mmdebstrap missing: `make test-tools` installs it"),
]
JINJA2_KERNEL = "Python 3.11 · Jinja2 3.1.4"


@pytest.fixture(scope="module")
def byo_lab(demo_library, tmp_path_factory):
    """The image's root file system (made once for the module), its server and one browser page on it."""
    root, _, _ = demo_library
    shots = Path(os.environ.get("MODLIB_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    start = time.monotonic()
    rootfs = make_root(tmp_path_factory.mktemp("byo-image"))
    made = time.monotonic()
    print(f"\nbring-your-own image root file system: mmdebstrap trixie + install.sh in {made - start:.0f} s")
    with byo_jupyter_lab(rootfs, root) as server, lab_page(server) as page:
        news = page.locator(".Toastify__toast", has_text="official Jupyter news")  # a stock JupyterLab asks once
        news.get_by_role("button", name="No", exact=True).click()
        news.wait_for(state="detached")
        yield page, server, root, shots
    print(f"\nbring-your-own image browser tests: server, browser and all steps in {time.monotonic() - made:.1f} s")


def _library_kernels(root: Path) -> set[str]:
    folder = root / "live" / "targets" / "cpu" / "jupyter" / "kernels"
    return {json.loads(spec.read_text())["display_name"] for spec in folder.glob("*/kernel.json")}


def test_launcher_lists_the_library_kernels(byo_lab):
    page, _, root, shots = byo_lab
    cards = page.locator('.jp-LauncherCard[data-category="Notebook"]')
    cards.filter(has_text="Jinja2 3.1.4").wait_for()
    listed = set(cards.evaluate_all("cards => cards.map(card => card.title)"))
    library = _library_kernels(root)
    assert {"Python 3.11 (library)", JINJA2_KERNEL} <= library
    assert listed == library | {"Python 3 (ipykernel)"}  # the image's own kernel, its Python 3.13, stays
    page.screenshot(path=shots / "byo-image-launcher.png")


def test_notebook_on_the_jinja2_kernel_imports_it_from_the_library(byo_lab):
    """The image's venv has Jinja2 3.1.6 (JupyterLab's) and Python 3.13: the kernel has neither."""
    page, _, root, _ = byo_lab
    open_notebook(page, JINJA2_KERNEL)
    output = run_cell(page, "import jinja2, sys; print(jinja2.__version__, jinja2.__file__, sys.executable)")
    version, where, python = output.split()
    assert version == "3.1.4"
    assert Path(where).is_relative_to(root / "cpu" / "software"), where
    assert Path(python).resolve().is_relative_to(root.resolve() / "cpu" / "software"), python


def _in_terminal(page: Page, server: Server, command: str, name: str) -> str:
    """``command`` typed into the open terminal, its output shown and returned: the shell writes it to ``name``
    in the home folder in one rename, read through the server's contents API once it is there."""
    page.keyboard.type(f"{command} > {name}.part 2>&1; mv {name}.part {name}; cat {name}\n")
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while True:
        try:
            return server.get(f"/api/contents/{name}?content=1&format=text")["content"]
        except urllib.error.HTTPError as error:
            if error.code != 404 or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _open_terminal(page: Page) -> None:
    """A new JupyterLab terminal from a new launcher, once its shell has written its prompt."""
    page.locator(".lm-TabBar-addButton:visible").first.click()
    with page.expect_websocket(lambda ws: "/terminals/websocket/" in ws.url) as opened:
        page.locator('.jp-LauncherCard[data-category="Other"][title="Start a new terminal session"]:visible').click()
    opened.value.wait_for_event("framereceived", lambda frame: "stdout" in str(frame))
    page.locator(".jp-Terminal .xterm").click()


def test_terminal_module_load_gives_the_library_package(byo_lab):
    """A terminal is a login shell: the profile line sources env.sh, which brings the library's Lmod (the image
    has none) and MODULEPATH; `python` is the library's, once a module loads it (trixie has no `python`)."""
    page, server, root, shots = byo_lab
    _open_terminal(page)
    image = _in_terminal(page, server, "{ python3 --version; ls /usr/share/lmod /usr/lib/python3.11; }", "image.txt")
    assert image.startswith("Python 3.13.") and image.count("No such file") == 2, image  # the image's, not the host's
    output = _in_terminal(page, server, "module load Jinja2/3.1.4 && python -c 'import jinja2, sys; "
                          "print(jinja2.__version__, jinja2.__file__, sys.executable)'", "jinja2.txt")
    version, where, python = output.split()
    assert version == "3.1.4"
    assert Path(where).is_relative_to(root / "cpu" / "software"), where
    assert Path(python).resolve().is_relative_to(root.resolve() / "cpu" / "software"), python
    page.keyboard.type("module list\n")
    page.wait_for_timeout(1000)  # xterm draws on a canvas: no text to wait for
    page.screenshot(path=shots / "byo-image-terminal.png")
