from pathlib import Path

from builder.publish.notebook_env import env_lines, lmodrc
from builder.read.config import load_settings
from tests.helpers import REPO


def settings(**extra):
    import dataclasses

    base = load_settings(REPO / "easyconfigs" / "library.yaml", env={"MODLIB_ROOT": "/srv/lib"})
    return dataclasses.replace(base, **extra)


def test_cuda_notebook_sees_cuda_tree_first_and_the_cache():
    assert env_lines(settings(), "cuda") == [
        "export MODULEPATH=/srv/lib/live/trees/cuda/modules/all:/srv/lib/live/trees/cpu/modules/all",
        "export LMOD_RC=/srv/lib/live/targets/cuda/lmodrc.lua",
        "export LMOD_CACHED_LOADS=yes",
        "export LMOD_SHORT_TIME=86400",
        "export MODLIB_TARGET=cuda",
    ]


def test_cpu_notebook_sees_only_the_cpu_tree_and_cached_loads_can_be_off():
    lines = env_lines(settings(cached_loads=False), "cpu")
    assert lines[0] == "export MODULEPATH=/srv/lib/live/trees/cpu/modules/all"
    assert "export LMOD_CACHED_LOADS=no" in lines


def test_lmodrc_keeps_lmods_properties_and_adds_the_cache():
    text = lmodrc('propT = { arch = {} }\n', Path("/srv/lib/live/targets/cpu/cache"))
    assert text.startswith("propT = { arch = {} }")
    assert '["dir"] = "/srv/lib/live/targets/cpu/cache"' in text
    assert '["timestamp"] = "/srv/lib/live/targets/cpu/cache/timestamp"' in text
