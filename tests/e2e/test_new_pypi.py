"""`modlib new-pypi` against the real PyPI: the easyconfig it writes builds with EasyBuild and imports via Lmod."""

from __future__ import annotations

import sys

import pytest

from tests.helpers import copy_site_easyconfigs, link_sources, lmod, modlib, write_config, write_easystack

pytestmark = pytest.mark.e2e
SIX = "six-1.16.0-GCCcore-system.eb"


def site_repo(tmp_path):
    """A copy of the site repository's easyconfigs with its own library.yaml (cpu target only)."""
    easyconfigs = copy_site_easyconfigs(tmp_path / "easyconfigs")
    stack = write_easystack(easyconfigs / "cpu.easystack.yaml", [])
    config = write_config(tmp_path, {"cpu": {"kind": "cpu", "tree": "cpu", "easystacks": [str(stack)]}},
                          easyconfig_paths=[str(easyconfigs)])
    return easyconfigs, stack, config


def test_a_pure_python_package_is_written_built_and_imported(tmp_path, source_cache):
    easyconfigs, stack, config = site_repo(tmp_path)
    root = tmp_path / "library"
    link_sources(root, source_cache)
    env = {"MODLIB_ROOT": str(root)}
    made = modlib("new-pypi", "--config", str(config), "six==1.16.0", env=env)
    assert made.returncode == 0, made.stderr
    written = easyconfigs / "s" / "six" / SIX
    assert made.stdout.splitlines()[0] == f"wrote {written}"
    assert made.stdout.splitlines()[-1] == f"  - {SIX}"
    text = written.read_text()
    assert "easyblock = 'PythonPackage'" in text and "toolchain = {'name': 'GCCcore', 'version': 'system'}" in text
    assert "'https://files.pythonhosted.org/packages/" in text
    assert "checksums = ['8abb2f1d86890a2dfb989f9a77cfcfd3e47c2a354b01111771326f8aa26e0254']" in text

    write_easystack(stack, [made.stdout.splitlines()[-1].strip().removeprefix("- ")])
    build = modlib("build", "--config", str(config), env=env)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-2000:]
    lines = modlib("env", "--config", str(config), "--target", "cpu", env=env, check=True).stdout
    used = lmod(f'eval "{lines}"\nmodule load six/1.16.0-GCCcore-system\n'
                f'{sys.executable} -c "import six; print(six.__version__, six.__file__)"')
    version, path = used.stdout.split()
    assert version == "1.16.0" and path.startswith(f"{root}/cpu/software/six-"), used.stdout + used.stderr

    again = modlib("new-pypi", "--config", str(config), "six==1.16.0", env=env)
    assert again.returncode == 2 and again.stderr == f"modlib: error: {written}: exists already; edit it, or " \
                                                    "remove it to write it again\n"
    assert written.read_text() == text


def test_requirements_the_library_has_become_dependencies(tmp_path, demo_library):
    """Flask 3.1.0 needs Jinja2>=3.1.2 (the demo publishes 3.1.4 to 3.1.6) and four packages it lacks."""
    root, env, _ = demo_library
    easyconfigs, _, config = site_repo(tmp_path)
    made = modlib("new-pypi", "--config", str(config), "Flask==3.1.0", env=env)
    assert made.returncode == 0, made.stderr
    assert "dependencies = [\n    ('Jinja2', '3.1.6'),\n]" in (easyconfigs / "f" / "Flask" /
                                                                 "Flask-3.1.0-GCCcore-system.eb").read_text()
    assert "  depends on Jinja2/3.1.6-GCCcore-system (published)" in made.stdout.splitlines()
    needs = [line.split(":")[0].strip() for line in made.stdout.splitlines() if line.startswith("  needs ")]
    assert needs == ["needs Werkzeug>=3.1", "needs itsdangerous>=2.2", "needs click>=8.1.3", "needs blinker>=1.9"]


def test_not_a_pinned_spec_or_not_on_pypi_is_bad_input(tmp_path):
    _, _, config = site_repo(tmp_path)
    for spec, problem in (("six", "six: expected NAME==VERSION, for example six==1.16.0"),
                          ("six==0.0.0.1", "six==0.0.0.1: PyPI has no files of version 0.0.0.1 of six")):
        result = modlib("new-pypi", "--config", str(config), spec)
        assert (result.returncode, result.stderr) == (2, f"modlib: error: {problem}\n")
