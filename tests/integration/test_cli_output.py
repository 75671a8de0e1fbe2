"""What the CLI says where it said something else: a reader that goes away (``modlib status | head`` ended
in "internal error: BrokenPipeError"), a ``--where`` key eb does not know (it matched every module)."""

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import modlib, write_config, write_easystack


@pytest.fixture()
def config(tmp_path):
    (tmp_path / "easyconfigs").mkdir()
    stack = write_easystack(tmp_path / "easyconfigs" / "cpu.yaml", ["GCCcore-system.eb"])
    return write_config(tmp_path, {"cpu": {"kind": "cpu", "tree": "cpu", "easystacks": [str(stack)]}})


@pytest.mark.parametrize("command", [["status"], ["plan", "--json"]])
def test_a_closed_pipe_stops_quietly_as_sigpipe_would(config, command):
    exe = Path(sys.executable).parent / "modlib"
    run = subprocess.Popen([str(exe), *command, "--config", str(config)], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    assert run.stdout is not None and run.stderr is not None
    run.stdout.close()  # the reader is gone before the first line is written
    stderr = run.stderr.read()
    assert run.wait(timeout=600) == 128 + signal.SIGPIPE, stderr
    assert stderr == ""


def test_a_where_key_is_an_option_eb_knows(config):
    typo = modlib("status", "--config", str(config), "--where", "cuda-compute-capability=9.0")
    assert typo.returncode == 2 and typo.stderr == (
        "modlib: error: --where: 'cuda-compute-capability' is not an EasyBuild option; did you mean "
        "'cuda-compute-capabilities'?\n")
    known = modlib("status", "--config", str(config), "--where", "skip-test-step=true")
    assert known.returncode == 0 and known.stdout.startswith("0 published modules built with skip-test-step=true")
