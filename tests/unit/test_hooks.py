"""The site hooks' rules, tested as plain functions (the e2e build runs them inside eb)."""

import importlib.util

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
