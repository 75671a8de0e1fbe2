"""Invariant 1: bad input gives one clear message naming the file, exit code 2, and changes nothing published."""

import hashlib
from pathlib import Path

import pytest

from tests.helpers import modlib, write_config, write_easystack

OFFLINE = {"MODLIB_PYPI_SIMPLE": "http://127.0.0.1:9/simple"}  # nothing listens on port 9: no network

TARBALL_EC = """easyblock = 'Tarball'
name = '{name}'
version = '1.0'
homepage = 'https://example.org'
description = 'bad-input fixture'
toolchain = SYSTEM
source_urls = ['{url}']
sources = ['{name}-1.0.tar.gz']
checksums = ['{sha}']
moduleclass = 'tools'
"""

DEP_EC = """easyblock = 'Bundle'
name = '{name}'
version = '1.0'
homepage = 'https://example.org'
description = 'bad-input fixture'
toolchain = SYSTEM
dependencies = [('{dep}', '1.0')]
moduleclass = 'tools'
"""


def site_ec(site: Path, name: str, text: str) -> None:
    folder = site / name[0].lower() / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}-1.0.eb").write_text(text)


@pytest.fixture()
def repo(tmp_path):
    site = tmp_path / "site"
    site_ec(site, "nosource", TARBALL_EC.format(name="nosource", url="http://127.0.0.1:9/", sha="0" * 64))
    site_ec(site, "badsum", TARBALL_EC.format(name="badsum", url="http://127.0.0.1:9/", sha="1" * 64))
    (site / "sources" / "b" / "badsum").mkdir(parents=True)
    (site / "sources" / "b" / "badsum" / "badsum-1.0.tar.gz").write_bytes(b"the real bytes")
    site_ec(site, "cyca", DEP_EC.format(name="cyca", dep="cycb"))
    site_ec(site, "cycb", DEP_EC.format(name="cycb", dep="cyca"))
    site_ec(site, "broken", "name = 'broken'\nversion = '1.0'\ntoolchain = SYSTEM (\n")
    (tmp_path / "easyconfigs").mkdir()
    stack = write_easystack(tmp_path / "easyconfigs" / "cpu.yaml", ["GCCcore-system.eb"])
    config = write_config(tmp_path, {"cpu": {"kind": "cpu", "tree": "cpu", "easystacks": [str(stack)]}},
                          easyconfig_paths=[str(site)])
    live = tmp_path / "library" / "cpu" / "modules" / "all" / "GCCcore" / "system.lua"
    live.parent.mkdir(parents=True)
    live.write_text("-- published before the bad run\n")
    (tmp_path / "library" / ".modlib").mkdir()  # the library's own state: a root modlib made
    return tmp_path, config


def snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and "sources" not in p.parts}


def run_bad(repo, *args, stack_entries=None):
    tmp, config = repo
    if stack_entries is not None:
        write_easystack(tmp / "easyconfigs" / "cpu.yaml", stack_entries)
    before = snapshot(tmp / "library")
    result = modlib(*args, "--config", str(config), env=OFFLINE)
    assert result.returncode == 2, result.stdout + result.stderr
    assert snapshot(tmp / "library") == before
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("modlib: error:")]
    assert len(errors) == 1 and result.stderr.rstrip("\n").endswith(errors[0]), result.stderr  # one line, last
    return errors[0]


def test_malformed_config_yaml(repo):
    repo[1].write_text("root: [library\n")
    assert "library.yaml: malformed YAML" in run_bad(repo, "plan")


@pytest.mark.parametrize("text, expected", [
    ("easyconfigs:\n  - [unclosed\n", "cpu.yaml: malformed YAML (line 3, column 1): expected ',' or ']', but got"),
    ("easyconfigs:\n  GCCcore-system.eb\n", "cpu.yaml: invalid easystack: Found str value for 'easyconfigs', "
                                           "should be list."),
    ("software:\n  foo: 1\n", "cpu.yaml: invalid easystack: Top-level key 'easyconfigs' missing")],
    ids=["yaml", "not-a-list", "no-easyconfigs"])
def test_a_broken_easystack_is_one_line(repo, text, expected):
    """PyYAML's and EasyBuild's own messages span lines (a "<unicode string>", an example easystack)."""
    (repo[0] / "easyconfigs" / "cpu.yaml").write_text(text)
    message = run_bad(repo, "build")
    assert expected in message, message


def test_an_option_easybuild_rejects_gives_its_reason(repo):
    """eb's own reason, and only the admin's option: it said "rejects the options ['--skip-test-step=0',
    '--hooks=…']: 2" (optparse's exit code, and modlib's own --hooks)."""
    message = run_bad(repo, "plan", stack_entries=[{"GCCcore-system.eb": {"options": {"skip-test-step": 0}}}])
    assert message.endswith("entry GCCcore-system.eb: EasyBuild rejects the options --skip-test-step=0: "
                            "--skip-test-step option does not take a value"), message


@pytest.mark.parametrize("entry, expected", [
    ("Nope-9.9.eb", ["cpu.yaml: unknown easyconfig 'Nope-9.9.eb'"]),
    ("broken-1.0.eb", ["broken-1.0.eb: cannot parse easyconfig", "'(' was never closed"]),
    ("cyca-1.0.eb", ["dependency cycle: ", "cyca-1.0.eb", "cycb-1.0.eb"]),
    ("nosource-1.0.eb", ["nosource-1.0.eb: source nosource-1.0.tar.gz cannot be obtained"]),
    ("badsum-1.0.eb", ["badsum-1.0.eb: source badsum-1.0.tar.gz", "checksum mismatch"]),
], ids=["unknown-easyconfig", "syntax-error", "dependency-cycle", "missing-source-offline", "wrong-checksum"])
def test_bad_easystack_entry(repo, entry, expected):
    message = run_bad(repo, "build", stack_entries=[entry])
    assert all(text in message for text in expected), message


def test_unknown_launcher_at_plan(repo):
    """A featured entry naming a launcher library.yaml does not define gave no tile and no warning anywhere."""
    tmp, config = repo
    config.write_text(config.read_text() + "featured:\n- name: MLflow\n  launcher: mlflow\n")
    message = run_bad(repo, "plan")
    assert "library.yaml: featured MLflow: unknown launcher 'mlflow' (notebook.launchers defines: none)" in message


def test_unknown_target(repo):
    assert "library.yaml: unknown target 'gpu' (targets: cpu)" in run_bad(repo, "build", "--target", "gpu")


@pytest.mark.parametrize("entry, expected", [
    ("/nowhere/foo-1.0.eb", ["cpu.yaml: easyconfig '/nowhere/foo-1.0.eb' not found"]),
    ({"GCCcore-system.eb": {"options": ["rebuild"]}}, ["cpu.yaml", "options"]),
], ids=["entry-is-a-missing-path", "options-as-a-list"])
def test_bad_easystack_structure(repo, entry, expected):
    message = run_bad(repo, "plan", stack_entries=[entry])
    assert all(text in message for text in expected), message


def test_hooks_file_that_does_not_import(repo):
    tmp, config = repo
    hooks = tmp / "hooks.py"
    hooks.write_text("import no_such_module_here\n")
    text = config.read_text()
    config.write_text("\n".join(f"hooks: {hooks}" if line.startswith("hooks:") else line
                                for line in text.splitlines()) + "\n")
    message = run_bad(repo, "plan")
    assert f"{hooks}: the hooks file cannot be loaded" in message and "no_such_module_here" in message


def test_library_root_that_is_not_a_folder(repo, tmp_path):
    root = tmp_path / "not-a-folder"
    root.write_text("")
    result = modlib("build", "--config", str(repo[1]), env={**OFFLINE, "MODLIB_ROOT": str(root)})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == f"modlib: error: {root}: the library root is not a folder"


def test_failures_during_a_run_are_not_bad_input(repo, tmp_path):
    """A run that cannot write its root fails (exit 1) with one message naming the path; it is not
    the admin's input that is wrong. /proc refuses new folders even to root."""
    result = modlib("build", "--config", str(repo[1]), env={**OFFLINE, "MODLIB_ROOT": "/proc/modlib-library"})
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("modlib: error: /proc/modlib-library"), result.stderr


def test_debug_shows_the_traceback_at_the_one_exit_point(repo):
    result = modlib("--debug", "build", "--config", str(repo[1]), "--target", "gpu", env=OFFLINE)
    assert result.returncode == 2
    assert "Traceback" in result.stderr and "builder.errors.BadInput" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("modlib: error: ")


@pytest.mark.parametrize("content", [["notes.txt"], ["views/", "notes.txt"]], ids=["a-file", "a-views-folder"])
def test_a_root_with_foreign_content_is_refused_and_kept(repo, tmp_path, content):
    """modlib removes what it made under its root: a folder that is not a library is never taken for one."""
    root = tmp_path / "someone-elses"
    for name in content:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).mkdir() if name.endswith("/") else (root / name).write_text("keep me\n")
    before = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    result = modlib("build", "--config", str(repo[1]), env={**OFFLINE, "MODLIB_ROOT": str(root)})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{root}: the library root holds files modlib did not make" in result.stderr
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*")) == before


def test_the_file_systems_root_is_refused(repo):
    result = modlib("build", "--config", str(repo[1]), env={**OFFLINE, "MODLIB_ROOT": "/"})
    assert result.returncode == 2
    assert result.stderr.strip() == "modlib: error: /: the library root cannot be the file system's root"
