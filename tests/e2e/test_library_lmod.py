"""The library's own Lmod: a notebook image with only bash, coreutils and glibc gets its `module` command
from env.sh once the library holds Lmod (built with its Lua and luaposix), and the spider cache with it.

The image is played by ``bare_image`` (tests/helpers.py): this host read-only in a mount namespace,
without its Lmod, Lua or any Python.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.helpers import (
    LMOD_INIT,
    REPO,
    bare_image,
    bundle_easyconfig,
    link_sources,
    lmod,
    modlib,
    write_config,
    write_easystack,
)

pytestmark = pytest.mark.e2e

GREETING = bundle_easyconfig("Greeting", "modextravars = {'GREETING': 'hello from the library'}")
LMOD = "Lmod-8.7.60-GCCcore-system.eb"


@pytest.fixture(scope="module")
def library(tmp_path_factory, source_cache):
    """A library of Greeting (a bundle that sets $GREETING) and, after a second run, Lmod: the env.sh
    of each run, the root, and how long the second run took (the Lmod stack: Lua, luaposix, Lmod)."""
    repo = tmp_path_factory.mktemp("lmodrepo")
    (repo / "site" / "g" / "Greeting").mkdir(parents=True)
    (repo / "site" / "g" / "Greeting" / "Greeting-1.0-GCCcore-system.eb").write_text(GREETING)
    (repo / "easyconfigs").mkdir()
    stack = repo / "easyconfigs" / "cpu.yaml"
    config = write_config(repo, {"cpu": {"kind": "cpu", "tree": "cpu", "easystacks": [str(stack)], "parallel": 2}},
                          easyconfig_paths=[str(repo / "site"), str(REPO / "easyconfigs")])
    link_sources(repo / "library", source_cache)
    env_sh = repo / "library" / "live" / "targets" / "cpu" / "env.sh"
    runs = []
    for entries in (["GCCcore-system.eb", "Greeting-1.0-GCCcore-system.eb"],
                    ["GCCcore-system.eb", "Greeting-1.0-GCCcore-system.eb", LMOD]):
        write_easystack(stack, entries)
        start = time.monotonic()
        result = modlib("build", "--config", str(config), timeout=1200)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        runs.append((env_sh.read_text(), time.monotonic() - start))
    return {"root": repo / "library", "config": config, "without": runs[0][0], "with": runs[1][0],
            "seconds": runs[1][1]}


def test_without_lmod_in_the_library_env_sh_gives_no_module_command(library, tmp_path):
    assert "command -v module" not in library["without"]
    result = bare_image(f"{library['without']}\nmodule avail", tmp_path)
    assert result.returncode == 127 and "module: command not found" in result.stderr, result.stderr


def test_env_sh_gives_a_bare_image_the_librarys_lmod(library, tmp_path):
    root = library["root"]
    print(f"Lua, luaposix and Lmod built and published in {library['seconds']:.0f} s")
    script = f"""set -e
! command -v lua && ! command -v python3 && ! command -v python && test -z "$(ls -A /usr/share/lmod)"
source {root}/live/targets/cpu/env.sh
module avail 2>&1
module load Greeting
module -t list 2>&1
echo "GREETING=$GREETING"
echo "LMOD_CMD=$LMOD_CMD"
id -u
"""
    result = bare_image(script, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Greeting/1.0-GCCcore-system" in result.stdout and "Lmod/8.7.60-GCCcore-system" in result.stdout
    assert "GREETING=hello from the library" in result.stdout
    (lmod_cmd,) = [line.split("=", 1)[1] for line in result.stdout.splitlines() if line.startswith("LMOD_CMD=")]
    assert Path(lmod_cmd).is_relative_to(root / "cpu" / "software"), lmod_cmd
    assert result.stdout.splitlines()[-1] == "1000"  # a notebook user, not root


def test_modlib_env_prints_what_env_sh_holds(library):
    printed = modlib("env", "--target", "cpu", "--config", str(library["config"]), check=True).stdout
    assert "command -v module" in printed and printed == library["with"].split("\n", 1)[1]


def test_the_librarys_lmod_reads_the_spider_cache(library, tmp_path):
    root = library["root"]
    script = f"""source {root}/live/targets/cpu/env.sh
module -D spider Greeting 2>&1
"""
    result = bare_image(script, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"cacheFile found: {root}/live/trees/cpu/cache/spiderT" in result.stdout, result.stdout[-3000:]
    assert "buildSpiderT: false" in result.stdout
    assert "Greeting: Greeting/1.0-GCCcore-system" in result.stdout


def test_sh_users_get_the_librarys_lmod_too(library, tmp_path):
    """dash, Debian's /bin/sh: Lmod's init/sh."""
    script = f". {library['root']}/live/targets/cpu/env.sh && module load Greeting && echo \"$GREETING\""
    result = bare_image(script, tmp_path, shell=("sh",))
    assert result.returncode == 0 and result.stdout.strip() == "hello from the library", result.stdout + result.stderr


def test_an_image_with_its_own_lmod_keeps_it(library):
    result = lmod(f"source {library['root']}/live/targets/cpu/env.sh\nmodule load Greeting\n"
                  'echo "$LMOD_CMD $GREETING"')
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{Path(LMOD_INIT).parent.parent}/libexec/lmod hello from the library"
