import json
import subprocess
from pathlib import Path

from builder.publish.notebook_env import env_lines, library_lmod, lmodrc
from builder.read.config import load_settings
from tests.helpers import REPO, write_config, write_easystack


def settings(**extra):
    import dataclasses

    base = load_settings(REPO / "easyconfigs" / "library.yaml", env={"MODLIB_ROOT": "/srv/lib"})
    return dataclasses.replace(base, **extra)


def test_cuda_notebook_sees_cuda_tree_first_and_the_cache():
    assert env_lines(settings(), "cuda") == [
        "export MODULEPATH=/srv/lib/live/trees/cuda/modules/all:/srv/lib/live/trees/cpu/modules/all",
        "export LMOD_RC=/srv/lib/live/targets/cuda/lmodrc.lua",
        "export LMOD_CACHED_LOADS=no",
        "export LMOD_SHORT_TIME=86400",
        "export MODLIB_TARGET=cuda",
        "export MODLIB_SESSION_PY=/srv/lib/live/python/modlib_session.py",
        'export JUPYTER_PATH=/srv/lib/live/targets/cuda/jupyter"${JUPYTER_PATH:+:$JUPYTER_PATH}"',
    ]


def test_cpu_notebook_sees_only_the_cpu_tree_and_cached_loads_can_be_on():
    lines = env_lines(settings(cached_loads=True), "cpu")
    assert lines[0] == "export MODULEPATH=/srv/lib/live/trees/cpu/modules/all"
    assert "export LMOD_CACHED_LOADS=yes" in lines


def test_cached_loads_are_off_unless_library_yaml_turns_them_on(tmp_path):
    stack = write_easystack(tmp_path / "cpu.yaml", [])
    config = write_config(tmp_path, {"cpu": {"kind": "cpu", "tree": "cpu", "easystacks": [str(stack)]}})
    assert "export LMOD_CACHED_LOADS=no" in env_lines(load_settings(config, env={"MODLIB_ROOT": "/srv/lib"}), "cpu")


def test_jupyter_path_puts_the_library_kernels_before_the_images_own(tmp_path):
    line = env_lines(settings(), "cpu")[-1]
    out = subprocess.run(["bash", "-c", f"{line}\n{line}\necho $JUPYTER_PATH"], capture_output=True, text=True,
                         env={"JUPYTER_PATH": "/usr/local/share/jupyter"})
    assert out.stdout.split(":")[0] == "/srv/lib/live/targets/cpu/jupyter"
    assert out.stdout.strip().endswith(":/usr/local/share/jupyter")
    alone = subprocess.run(["bash", "-c", f"{line}\necho $JUPYTER_PATH"], capture_output=True, text=True, env={})
    assert alone.stdout.strip() == "/srv/lib/live/targets/cpu/jupyter"


def test_lmodrc_keeps_lmods_properties_and_adds_the_cache():
    text = lmodrc('propT = { arch = {} }\n', Path("/srv/lib/live/targets/cpu/cache"))
    assert text.startswith("propT = { arch = {} }")
    assert '["dir"] = "/srv/lib/live/targets/cpu/cache"' in text
    assert '["timestamp"] = "/srv/lib/live/targets/cpu/cache/timestamp"' in text


def _lmod(root: Path, tree: str, version: str) -> Path:
    """An Lmod module as a publish leaves it: its file in the live view, its manifest, its install's init."""
    module = f"Lmod/{version}"
    view = root / "live" / "trees" / tree / "modules" / "all" / f"{module}.lua"
    view.parent.mkdir(parents=True, exist_ok=True)
    view.write_text("")
    prefix = root / tree / "software" / f"Lmod-{version}"
    manifest = root / tree / ".modlib" / "manifest" / f"Lmod--{version}.json"
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps({"module": module, "prefix": str(prefix)}))
    init = prefix / module / "lmod" / "lmod" / "init"
    init.mkdir(parents=True)
    (init / "bash").write_text("")
    return init.parent


def test_env_sh_initialises_the_librarys_newest_lmod_unless_an_admin_chose_one(tmp_path):
    chosen = settings(root=tmp_path, hidden=())
    assert not any("command -v module" in line for line in env_lines(chosen, "cpu"))  # no Lmod in the library
    older = _lmod(tmp_path, "cpu", "8.7.9-GCCcore-system")
    newer = _lmod(tmp_path, "cpu", "8.7.60-GCCcore-system")
    assert library_lmod(chosen, "cpu") == newer
    assert library_lmod(chosen, "cuda") == newer  # the cuda target layers over the cpu tree
    assert library_lmod(settings(root=tmp_path, hidden=("Lmod/8.7.60-GCCcore-system",)), "cpu") == older
    assert library_lmod(settings(root=tmp_path, defaults=(("Lmod", "8.7.9-GCCcore-system"),)), "cpu") == older
    assert f"  if [ -n \"${{BASH_VERSION:-}}\" ]; then . {newer}/init/bash" in env_lines(chosen, "cpu")


def test_an_lmod_without_a_manifest_or_whose_init_leads_out_of_its_install_is_not_used(tmp_path):
    chosen = settings(root=tmp_path, hidden=())
    package = _lmod(tmp_path, "cpu", "8.7.60-GCCcore-system")
    (package / "init" / "bash").unlink()
    (package / "init" / "bash").symlink_to("/etc/passwd")
    assert library_lmod(chosen, "cpu") is None
    _lmod(tmp_path, "cuda", "8.7.61-GCCcore-system")
    (tmp_path / "cuda" / ".modlib" / "manifest" / "Lmod--8.7.61-GCCcore-system.json").write_text("[garbled")
    assert library_lmod(chosen, "cuda") is None


def test_an_lmod_whose_manifest_names_a_prefix_outside_the_trees_software_is_not_used(tmp_path):
    _lmod(tmp_path, "cpu", "8.7.60-GCCcore-system")
    manifest = tmp_path / "cpu" / ".modlib" / "manifest" / "Lmod--8.7.60-GCCcore-system.json"
    elsewhere = tmp_path / "elsewhere" / "Lmod-x"
    (elsewhere / "Lmod" / "8.7.60-GCCcore-system" / "lmod" / "lmod" / "init").mkdir(parents=True)
    (elsewhere / "Lmod" / "8.7.60-GCCcore-system" / "lmod" / "lmod" / "init" / "bash").write_text("")
    manifest.write_text(json.dumps({"prefix": str(elsewhere)}))
    assert library_lmod(settings(root=tmp_path, hidden=()), "cpu") is None
