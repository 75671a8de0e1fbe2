"""What the source pre-fetch asks for, listed by EasyBuild's own easyblocks from real easyconfigs."""

from pathlib import Path

import pytest

from builder import ebadapter
from builder.plan.planner import robot_paths
from builder.read.config import load_settings
from tests.helpers import REPO


@pytest.fixture(scope="module")
def listed():
    settings = load_settings(REPO / "easyconfigs" / "library.yaml", env={})
    names = ["EasyBuild-5.4.0.eb", "Python-bundle-PyPI-2024.06-GCCcore-13.3.0.eb",
             "saxpy-1.0-GCCcore-system-CUDA-13.2.2.eb", "GCCcore-system.eb"]
    with ebadapter.configured(robot_paths(settings), settings.hooks, {}) as eb:
        return {n: eb.source_files(p) for n, p in zip(names, eb.locate(names, Path("test")), strict=True)}


def test_sources_with_per_source_checksums(listed):
    files = {f.filename: f for f in listed["EasyBuild-5.4.0.eb"]}
    assert set(files) == {"easybuild_framework-5.4.0.tar.gz", "easybuild_easyblocks-5.4.0.tar.gz",
                          "easybuild_easyconfigs-5.4.0.tar.gz"}
    fw = files["easybuild_framework-5.4.0.tar.gz"]
    assert fw.subdir == "e/EasyBuild" and len(fw.urls) == 3
    assert fw.urls[0].startswith("https://files.pythonhosted.org/packages/")
    assert fw.checksum == {"easybuild_framework-5.4.0.tar.gz":
                           "d06a9cd427faee1464136de1ebb25249fe5f3453974302c62d3a6313a2974d87"}


def test_extension_sources_are_listed_with_resolved_urls(listed):
    files = {f.filename: f for f in listed["Python-bundle-PyPI-2024.06-GCCcore-13.3.0.eb"]}
    execnet = files["execnet-2.1.1.tar.gz"]
    assert execnet.urls == ("https://pypi.python.org/packages/source/e/execnet/execnet-2.1.1.tar.gz",)
    assert isinstance(execnet.checksum, str) and len(execnet.checksum) == 64
    # crates are fetched where EasyBuild's Cargo support looks for them (their alt_location), the rest by name
    assert {f.subdir for f in files.values()} == {"p/Python-bundle-PyPI", "c/crates.io"}
    assert execnet.subdir == "p/Python-bundle-PyPI"
    assert files["windows_x86_64_gnu-0.48.0.tar.gz"].subdir == "c/crates.io"


def test_repository_sources_and_no_sources(listed):
    assert [f.filename for f in listed["saxpy-1.0-GCCcore-system-CUDA-13.2.2.eb"]] == ["saxpy.cu", "Makefile"]
    assert listed["GCCcore-system.eb"] == []


def test_the_easybuild_session_works_only_inside_its_block():
    """EasyBuild's configuration is process-wide: outside the block, parse() would blame the admin's
    easyconfig for a missing configuration; a second session at once would reconfigure the first."""
    settings = load_settings(REPO / "easyconfigs" / "library.yaml", env={})
    with ebadapter.configured(robot_paths(settings), settings.hooks, {}) as eb:
        (path,) = eb.locate(["GCCcore-system.eb"], Path("test"))
        assert eb.parse(path).module == "GCCcore/system"
        with pytest.raises(RuntimeError, match="already configured"):
            with ebadapter.configured(robot_paths(settings), settings.hooks, {}):
                pass
    with pytest.raises(RuntimeError, match="after its `with configured"):
        eb.parse(path)
