"""The pods a notebook starts run as the notebook does: every publish writes ``live/bin/modlib-exec``, which
loads a target's modules and execs a command (refusing, exit 2, a target or module that is not published),
and gives a shell's session as JSON with the patch that makes a pod run the same; ``live/python/
modlib_session.py`` gives kernels the same through it. Real Lmod (the host's: this library holds none) and
real publishes; tests/e2e/test_session_pods.py runs the demo library's in a bare image and in a kernel."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from builder.publish import view
from builder.read.config import load_settings
from tests.helpers import LMOD_INIT, write_config, write_easystack
from tests.integration.test_incremental_publish import put

GREETING = 'setenv("GREETING", "hello from the library")'
SHOW = 'echo "$LOADEDMODULES|${GREETING:-}|$MODLIB_TARGET"'


@pytest.fixture()
def live(tmp_path) -> Path:
    """A published library of Greeting/1.0 (sets $GREETING), Tool/2.0 and Old/0.9 (retired: hidden)."""
    stack = str(write_easystack(tmp_path / "cpu.yaml", []))
    config = write_config(tmp_path, {"cpu": {"kind": "cpu", "tree": "cpu", "easystacks": [stack]}},
                          extra={"modules": {"hidden": ["Old/0.9"]}})
    settings = load_settings(config, env={"MODLIB_ROOT": str(tmp_path / "library")})
    put(settings.root, "cpu", "Greeting/1.0", extra=GREETING)
    put(settings.root, "cpu", "Tool/2.0")
    put(settings.root, "cpu", "Old/0.9")
    view.publish_view(settings)
    return settings.root / "live"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """As a container runs it: a bare environment, no Lmod initialised."""
    return subprocess.run(list(args), capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "HOME": "/tmp", **(env or {})})


def test_modlib_exec_loads_the_modules_in_order_and_execs_the_command(live):
    result = run(str(live / "bin" / "modlib-exec"), "--target", "cpu", "--modules", "Tool/2.0,Greeting/1.0",
                 "--", "bash", "-c", SHOW)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Tool/2.0:Greeting/1.0|hello from the library|cpu\n"
    retired = run(str(live / "bin" / "modlib-exec"), "--target", "cpu", "--modules", "Old/0.9", "--", "bash", "-c",
                  SHOW)  # hidden, still loadable by its full name: a session that had it loaded
    assert (retired.returncode, retired.stdout) == (0, "Old/0.9||cpu\n"), retired.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--target", "cpu", "--modules", "Greeting/1.0,Nope/1.0"],
     "module 'Nope/1.0' is not published for target 'cpu' in {root}"),
    (["--target", "gpu"], "target 'gpu' is not published in {root} (published: cpu)"),
    (["--target", "../cpu"], "target '../cpu' is not published in {root} (published: cpu)"),
    (["--modules", "Tool/2.0"], "--target is missing (usage: "),
])
def test_modlib_exec_refuses_what_is_not_published_before_running_anything(live, tmp_path, args, message):
    marker = tmp_path / "ran"
    result = run(str(live / "bin" / "modlib-exec"), *args, "--", "touch", str(marker))
    assert result.returncode == 2
    assert result.stderr.startswith("modlib-exec: " + message.format(root=live.parent)), result.stderr
    assert len(result.stderr.splitlines()) == 1 and not marker.exists()


def session_shell(live: Path, tail: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """A notebook terminal: env.sh, the image's Lmod, Tool then Greeting loaded, and a module of the
    image's own (X/1, outside the library) on top; then ``tail``."""
    other = live.parent.parent / "image-modules"
    (other / "X").mkdir(parents=True, exist_ok=True)
    (other / "X" / "1.lua").write_text('setenv("X", "1")\n')
    script = (f"source {live}/targets/cpu/env.sh && source {LMOD_INIT} && module load Tool/2.0 Greeting/1.0 && "
              f"module use {other} && module load X/1 && {tail}")
    return run("bash", "-c", script, env=env)


def test_print_session_gives_the_mount_target_modules_and_pod_patch(live):
    root = str(live.parent)
    result = session_shell(live, f"{live}/bin/modlib-exec --print-session", {"MODLIB_CLAIM": "modlib-library"})
    assert result.returncode == 0, result.stderr
    command = [f"{live}/bin/modlib-exec", "--target", "cpu", "--modules", "Tool/2.0,Greeting/1.0", "--"]
    assert json.loads(result.stdout) == {
        "root": root, "mount": {"claim": "modlib-library", "path": root, "read_only": True}, "target": "cpu",
        "modules": ["Tool/2.0", "Greeting/1.0"], "not_from_library": ["X/1"],
        "pod_patch": {
            "volumes": [{"name": "modlib-library",
                         "persistentVolumeClaim": {"claimName": "modlib-library", "readOnly": True}}],
            "volumeMounts": [{"name": "modlib-library", "mountPath": root, "readOnly": True}],
            "command": command}}
    replayed = run(*command, "bash", "-c", SHOW)  # a pod: nothing but the patch's command
    assert replayed.stdout == "Tool/2.0:Greeting/1.0|hello from the library|cpu\n", replayed.stderr


def test_without_a_claim_the_patch_names_a_placeholder_that_says_what_to_set(live):
    result = session_shell(live, f"{live}/bin/modlib-exec --print-session", {})
    session = json.loads(result.stdout)
    assert session["mount"]["claim"] is None
    claim = session["pod_patch"]["volumes"][0]["persistentVolumeClaim"]["claimName"]
    assert claim == "<MODLIB_CLAIM is unset: the library's read-only claim>"  # no claim can have that name


def test_print_session_outside_a_session_says_what_is_missing(live):
    result = run(str(live / "bin" / "modlib-exec"), "--print-session")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == f"modlib-exec: MODLIB_TARGET is unset: source {live}/targets/TARGET/env.sh first\n"


def test_the_python_module_gives_what_modlib_exec_prints(live):
    """Run as the README says, by runpy from the path env.sh exports, so nothing lands on sys.path."""
    code = ("import json, os, runpy, sys; before = list(sys.path); "
            "s = runpy.run_path(os.environ['MODLIB_SESSION_PY']); "
            "print(json.dumps([s['session'](), s['pod_patch'](), sys.path == before, "
            "'modlib_session' in sys.modules]))")
    result = session_shell(live, f"{live}/bin/modlib-exec --print-session && {sys.executable} -c \"{code}\"",
                           {"MODLIB_CLAIM": "modlib-library"})
    assert result.returncode == 0, result.stderr
    printed, from_python = result.stdout.splitlines()
    session, patch, same_path, imported = json.loads(from_python)
    assert session == json.loads(printed) and patch == session["pod_patch"]
    assert same_path and not imported
