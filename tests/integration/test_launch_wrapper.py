"""The notebook image's launcher wrapper (k8s-jobs/notebook-image/modlib_launch.py) run as jupyter-server-proxy
runs it, without the proxy: a tool that answers is left alone and stopped with the wrapper; one that exits or
never answers gets the wrapper's page on its port, naming the command and the log's last lines.
(tests/e2e/test_notebook_launchers.py has the same through JupyterLab, its proxy and a browser.)"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.notebook import free_port
from tests.helpers import REPO

WRAPPER = REPO / "k8s-jobs" / "notebook-image" / "modlib_launch.py"


def _launch(tmp_path: Path, port: int, command: list[str], timeout: float = 10) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(WRAPPER), "--title", "Probe", "--port", str(port), "--timeout",
                             str(timeout), "--log", str(tmp_path / "logs" / "probe.log"), "--log-url",
                             "/lab/tree/logs/probe.log", "--", *command], stderr=subprocess.PIPE, text=True)


def _get(port: int, within: float) -> tuple[int, str, float]:
    """The first answer on ``port`` within ``within`` seconds: status, body and when it came."""
    start = time.monotonic()
    while time.monotonic() - start < within:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                return response.status, response.read().decode(), time.monotonic() - start
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode(), time.monotonic() - start
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"nothing answered on port {port} in {within} s")


def _stopped(wrapper: subprocess.Popen) -> None:
    wrapper.send_signal(signal.SIGTERM)
    assert wrapper.wait(timeout=10) == 0


def test_a_tool_that_exits_gets_the_page_with_its_output(tmp_path):
    port = free_port()
    command = [sys.executable, "-c", "import sys; print('reading /etc/probe.conf'); sys.exit('probe: <no> config')"]
    wrapper = _launch(tmp_path, port, command)
    try:
        status, body, seconds = _get(port, 10)
    finally:
        _stopped(wrapper)
    assert status == 503 and seconds < 5
    assert "<h1>Probe could not start</h1>" in body and "exited with status 1" in body
    assert "reading /etc/probe.conf\nprobe: &lt;no&gt; config</pre>" in body  # its output, escaped
    assert 'href="/lab/tree/logs/probe.log"' in body
    assert "probe: <no> config" in (tmp_path / "logs" / "probe.log").read_text()


def test_a_tool_that_never_answers_is_stopped_at_its_timeout(tmp_path):
    port = free_port()
    wrapper = _launch(tmp_path, port, ["sleep", "600.0417"], timeout=1)
    try:
        status, body, seconds = _get(port, 10)
    finally:
        _stopped(wrapper)
    assert status == 503 and "did not answer on its port within 1 s, and was stopped" in body
    assert subprocess.run(["pgrep", "-f", "^sleep 600.0417$"], capture_output=True).stdout == b""


def test_a_tool_that_answers_is_left_alone_and_stopped_with_the_wrapper(tmp_path):
    port = free_port()
    wrapper = _launch(tmp_path, port, [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)],
                      timeout=1)
    try:
        status, body, _ = _get(port, 10)
        time.sleep(1.5)  # past its timeout: answering, it is kept
        assert _get(port, 1)[0] == 200
    finally:
        _stopped(wrapper)
    assert status == 200 and "Directory listing" in body
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
