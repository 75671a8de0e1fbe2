"""Session fixtures shared by the test suite."""

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def source_cache(tmp_path_factory) -> Path:
    """One download cache for the whole session; each library's <root>/sources links to it."""
    return tmp_path_factory.mktemp("sources")
