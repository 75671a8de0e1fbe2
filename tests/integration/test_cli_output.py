"""What the one exit point makes of a reader that goes away: ``modlib status | head`` ended in
"internal error: BrokenPipeError"."""

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import write_config, write_easystack


@pytest.mark.parametrize("command", [["status"], ["plan", "--json"]])
def test_a_closed_pipe_stops_quietly_as_sigpipe_would(tmp_path, command):
    (tmp_path / "easyconfigs").mkdir()
    stack = write_easystack(tmp_path / "easyconfigs" / "cpu.yaml", ["GCCcore-system.eb"])
    config = write_config(tmp_path, {"cpu": {"kind": "cpu", "tree": "cpu", "easystacks": [str(stack)]}})
    exe = Path(sys.executable).parent / "modlib"
    run = subprocess.Popen([str(exe), *command, "--config", str(config)], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    assert run.stdout is not None and run.stderr is not None
    run.stdout.close()  # the reader is gone before the first line is written
    stderr = run.stderr.read()
    assert run.wait(timeout=600) == 128 + signal.SIGPIPE, stderr
    assert stderr == ""
