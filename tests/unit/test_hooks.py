"""The site hooks' rules, tested as plain functions (the e2e build runs them inside eb)."""

import importlib.util
import os

import pytest
from easybuild.tools.build_log import EasyBuildError

from tests.helpers import REPO


@pytest.fixture(scope="module")
def hooks():
    spec = importlib.util.spec_from_file_location("modlib_hooks", REPO / "hooks" / "modlib_hooks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_install_inside_root_is_allowed(hooks, tmp_path):
    hooks.check_inside_root([tmp_path / "cpu" / "software" / "X" / "1"], str(tmp_path))


@pytest.mark.parametrize("path", ["/opt/elsewhere/X/1", "{root}/../escape/X/1", "{root}-sibling/X"])
def test_install_outside_root_is_refused(hooks, tmp_path, path):
    with pytest.raises(EasyBuildError, match="outside the library root"):
        hooks.check_inside_root([path.format(root=tmp_path)], str(tmp_path))


def test_no_root_is_refused(hooks):
    with pytest.raises(EasyBuildError, match="MODLIB_ROOT is not set"):
        hooks.check_inside_root(["/x"], None)


def test_cuda_build_needs_compute_capabilities(hooks):
    with pytest.raises(EasyBuildError, match="without compute capabilities"):
        hooks.check_cuda_capabilities("cuda", [])
    hooks.check_cuda_capabilities("cuda", ["8.0", "9.0"])
    hooks.check_cuda_capabilities("cpu", [])


def test_gpu_property_only_in_cuda_tree_and_only_once(hooks):
    tagged = hooks.tag_gpu("cuda", 'help([[x]])\n')
    assert tagged.endswith('add_property("arch", "gpu")\n')
    assert hooks.tag_gpu("cuda", tagged) == tagged
    assert hooks.tag_gpu("cpu", "help([[x]])\n") == "help([[x]])\n"


def test_hook_names_are_known_to_easybuild(hooks):
    from easybuild.tools.hooks import KNOWN_HOOKS

    names = [n for n in dir(hooks) if n.endswith("_hook")]
    assert names and all(n in KNOWN_HOOKS for n in names)


def script(path, text, mode=0o755):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def test_python_scripts_start_with_the_librarys_python(hooks, tmp_path):
    env_python = script(tmp_path / "bin" / "tool", "#!/usr/bin/env python\nprint('tool')\n")
    pip_python = script(tmp_path / "bin" / "other", "#!/build/host/bin/python3.11 -E\nimport x\n")
    shell = script(tmp_path / "bin" / "wrapper", "#!/bin/sh\nexec python3 -m x\n")
    extra = script(tmp_path / "libexec" / "helper.py", "#!/usr/bin/env python\n")
    binary = tmp_path / "bin" / "compiled"
    binary.write_bytes(b"\x7fELF\x02\x01\x01\x00python\n")
    (tmp_path / "bin" / "link").symlink_to("tool")
    changed = hooks.fix_python_shebangs(str(tmp_path), "libexec/*.py", "/opt/py/bin/python")
    assert sorted(changed) == sorted(str(p) for p in (env_python, pip_python, extra))
    assert env_python.read_text() == "#!/opt/py/bin/python\nprint('tool')\n"
    assert pip_python.read_text() == "#!/opt/py/bin/python\nimport x\n"
    assert shell.read_text() == "#!/bin/sh\nexec python3 -m x\n"
    assert binary.read_bytes() == b"\x7fELF\x02\x01\x01\x00python\n"
    assert hooks.fix_python_shebangs(str(tmp_path), None, "/opt/py/bin/python") == []


def test_the_notebook_images_python_must_be_found(hooks, tmp_path):
    """The migration path: MODLIB_PYTHON names the Python that scripts start with, and it must exist."""
    script(tmp_path / "python3", "#!/bin/sh\n")
    assert hooks.library_python("python3", path=str(tmp_path)) == str(tmp_path / "python3")
    assert hooks.library_python("/opt/py/bin/python") == "/opt/py/bin/python"
    with pytest.raises(EasyBuildError, match="MODLIB_PYTHON"):
        hooks.library_python("python3.99", path=str(tmp_path))


@pytest.mark.parametrize("value", [None, ""])
def test_a_library_with_its_own_python_leaves_shebangs_to_easybuild(hooks, value):
    """No MODLIB_PYTHON: the packages' Python dependency serves EasyBuild's '#!/usr/bin/env python'."""
    assert hooks.library_python(value) is None


def test_the_sanity_checks_path_has_no_python(hooks, tmp_path):
    with_python = tmp_path / "venv" / "bin"
    script(with_python / "python", "#!/bin/sh\n")
    script(tmp_path / "tools" / "python3", "#!/bin/sh\n")
    path = os.pathsep.join([str(with_python), str(tmp_path / "tools"), "/nonexistent"])
    assert hooks.without_python(path) == os.pathsep.join([str(tmp_path / "tools"), "/nonexistent"])
