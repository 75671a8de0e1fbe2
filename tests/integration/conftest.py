"""Fixtures shared by the planning caches' tests."""

import shutil

import pytest

from tests.helpers import REPO, bundle_easyconfig, write_config, write_easystack


@pytest.fixture()
def lib(tmp_path):
    site = tmp_path / "site"
    (site / "a" / "app").mkdir(parents=True)
    (site / "a" / "app" / "app-1.0-GCCcore-system.eb").write_text(bundle_easyconfig("app", ""))
    (tmp_path / "easyconfigs").mkdir()
    stack = write_easystack(tmp_path / "easyconfigs" / "cpu.yaml", ["app-1.0-GCCcore-system.eb"])
    hooks = tmp_path / "hooks.py"
    shutil.copy(REPO / "hooks" / "modlib_hooks.py", hooks)
    config = write_config(tmp_path, {"cpu": {"kind": "cpu", "tree": "cpu", "easystacks": [str(stack)]}},
                          easyconfig_paths=[str(site)], extra={"hooks": str(hooks)})
    env = {"MODLIB_CACHE": str(tmp_path / "cache"), "MODLIB_ROOT": str(tmp_path / "library")}
    return tmp_path, site, hooks, config, env
