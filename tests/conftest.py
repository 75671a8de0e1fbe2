"""Session fixtures shared by the test suite."""

import os
from pathlib import Path

import pytest

from tests.helpers import REPO, link_sources, modlib

#: Folders whose tests take seconds to minutes each: real EasyBuild builds (e2e) and parses (integration).
SLOW_FOLDERS = {"e2e", "integration"}
#: Fixtures that make a test slow wherever it is: the demo library is built once per session (minutes).
SLOW_FIXTURES = {"demo_library"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``slow`` what ``pytest -m "not slow"`` (the edit-test loop, CONTRIBUTING.md) leaves out: the
    folders and fixtures above, every ``e2e`` test, and what is marked ``slow`` by hand."""
    for item in items:
        if (item.path.parent.name in SLOW_FOLDERS or item.get_closest_marker("e2e")
                or SLOW_FIXTURES & set(getattr(item, "fixturenames", ()))):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def source_cache(tmp_path_factory) -> Path:
    """One download cache for the whole session; each library's <root>/sources links to it."""
    return tmp_path_factory.mktemp("sources")


@pytest.fixture(scope="session")
def demo_library(tmp_path_factory, source_cache):
    """The demo library (easyconfigs/library.yaml) built once for the session into a temporary root.
    MODLIB_TEST_DEMO_ROOT names a root to build into instead, where an earlier build is brought up to date
    rather than repeated: for reruns of the tests that only read it (CI leaves it unset)."""
    kept = os.environ.get("MODLIB_TEST_DEMO_ROOT")
    root = Path(kept) if kept else tmp_path_factory.mktemp("demo") / "library"
    if not kept:
        link_sources(root, source_cache)
    env = {"MODLIB_ROOT": str(root)}
    result = modlib("build", "--config", str(REPO / "easyconfigs" / "library.yaml"), env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return root, env, result


@pytest.fixture(scope="session", autouse=True)
def _readable_tmp_folders(tmp_path_factory):
    """pytest makes its folders 0700; a root runner's sandboxed builds and parses run as nobody, who must
    read the repositories and libraries tests keep there (as a site's must be readable to its build user)."""
    mktemp = tmp_path_factory.mktemp

    def readable(*args, **kwargs):
        folder = mktemp(*args, **kwargs)
        folder.chmod(0o755)
        return folder

    tmp_path_factory.mktemp = readable
