"""A publish made from the live generation gives exactly the view a publish from scratch gives, and Lmod
really reads it: real Lmod (spider, serializer, `module`), module files written as EasyBuild writes them."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import pytest

from builder.layout import Layout
from builder.publish import featured, lmod, view
from builder.publish.notebook_env import modulepath
from builder.read.config import load_settings
from tests.helpers import lmod as lmod_shell
from tests.helpers import write_config, write_easystack

MODULE = '''help([==[

Description
===========
{name} {version}, a test module.


More information
================
 - Homepage: https://example.org/{name}
]==])

whatis([==[Description: {name} {version}, a test module.]==])
whatis([==[Homepage: https://example.org/{name}]==])
whatis([==[URL: https://example.org/{name}]==])

local root = "/opt/test/{name}/{version}"

conflict("{name}")
{extra}
prepend_path("PATH", pathJoin(root, "bin"))
setenv("EBROOT{upper}", root)
setenv("EBVERSION{upper}", "{version}")
'''


def put(root: Path, tree: str, module: str, extra: str = "", note: str = "") -> None:
    """Store a module file the way a finished node is stored: written beside, renamed in."""
    name, version = module.split("/")
    path = Layout(root).store(tree) / f"{module}.lua"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(MODULE.format(name=name, version=version, upper=name.upper().replace("-", "_"),
                                 extra=extra) + note)
    os.replace(tmp, path)


@pytest.fixture()
def library(tmp_path):
    (tmp_path / "easyconfigs").mkdir()
    stack = str(write_easystack(tmp_path / "easyconfigs" / "cpu.yaml", []))
    config = write_config(tmp_path, {
        "cpu": {"kind": "cpu", "tree": "cpu", "easystacks": [stack]},
        "cuda": {"kind": "cuda", "tree": "cuda", "layers_over": "cpu", "easystacks": [stack]},
    }, extra={"modules": {"defaults": {"zlib": "1.3.1-GCCcore-14.3.0"}, "hidden": ["zlib/1.2.13-GCCcore-12.3.0"]},
              "featured": [{"name": "Python"}, {"name": "saxpy", "targets": ["cuda"], "launcher": "saxpy"}],
              "notebook": {"launchers": {name: {"title": name, "command": [name, "--port", "{port}"]}
                                         for name in ("saxpy", "saxpy-notebook")}}})
    settings = load_settings(config, env={"MODLIB_ROOT": str(tmp_path / "library")})
    root = settings.root
    for module in ("zlib/1.2.13-GCCcore-12.3.0", "zlib/1.3.1-GCCcore-14.3.0", "Python/3.13.1-GCCcore-14.2.0",
                   "GCCcore/14.3.0", "Java/17.0.15"):
        put(root, "cpu", module)
    # EasyBuild's own .modulerc.lua (a version alias), in the store beside the module files
    (Layout(root).store("cpu") / "Java" / ".modulerc.lua").write_text('module_version("Java/17.0.15", "17")\n')
    put(root, "cuda", "saxpy/1.0-GCCcore-system-CUDA-13.2.2", extra='add_property("arch", "gpu")')
    return settings


#: modlib's own files in a generation, which name the generation or its time
BOOKKEEPING = ("publish.json", "inputs.json", "record.jsonl")


def seen(settings) -> dict:
    """Everything notebooks get from the live view, generation names aside."""
    live = settings.root / "live"
    gen = live.resolve()
    out = {}
    for path in sorted(gen.rglob("*")):
        rel = str(path.relative_to(gen))
        if path.is_symlink():
            out[rel] = os.readlink(path)
        elif path.is_file() and rel not in BOOKKEEPING and not rel.endswith(".luac_5.3"):
            text = path.read_text()
            if path.name == "featured.json":
                text = json.dumps({k: v for k, v in json.loads(text).items() if k != "generated"})
            if path.name == "catalogue.html":
                text = re.sub(r'<p class="meta" id="made">.*?</p>', "", text)
            out[rel] = text.replace(str(gen), "GEN")
    for target in settings.targets:
        env_sh = gen / "targets" / target / "env.sh"
        # plain avail and spider read the caches; terse avail walks the tree unless cached loads are on
        for command in ("avail", "-t avail", "-t spider", "-t --ignore_cache avail"):
            out[f"{target}: module {command}"] = lmod_shell(f"source {env_sh}; module {command} 2>&1").stdout
    return out


def publish_both_ways(settings) -> tuple[dict, dict]:
    view.publish_view(settings)
    incremental = seen(settings)
    view.publish_view(settings, full=True)
    return incremental, seen(settings)


CHANGES = {
    "a version added to a published name": lambda root: put(root, "cpu", "zlib/1.3.2-GCCcore-15.1.0"),
    "a new name": lambda root: put(root, "cpu", "Abseil/20250512.1-GCCcore-14.3.0"),
    "a new name in the cuda tree": lambda root: put(root, "cuda", "NCCL/2.27.7-GCCcore-14.3.0-CUDA-13.2.2",
                                                     extra='add_property("arch", "gpu")'),
    "a featured name gets a newer version": lambda root: put(root, "cpu", "Python/3.14.0-GCCcore-15.1.0"),
    "a module file replaced (rebuilt)": lambda root: put(root, "cpu", "GCCcore/14.3.0", note="-- rebuilt\n"),
    "a module taken back out": lambda root: (Layout(root).store("cpu") / "Java" / "17.0.15.lua").unlink(),
    "a name with an EasyBuild .modulerc.lua changes": lambda root: put(root, "cpu", "Java/21.0.8"),
}


@pytest.mark.parametrize("change", CHANGES)
def test_incremental_publish_equals_publish_from_scratch(library, change):
    view.publish_view(library)
    CHANGES[change](library.root)
    incremental, scratch = publish_both_ways(library)
    assert incremental == scratch


def test_a_run_of_publishes_stays_equal_to_one_from_scratch(library):
    """Publishes one after another, as a run makes them: generations recycled, names added and replaced."""
    view.publish_view(library)
    for change in CHANGES.values():
        change(library.root)
        view.publish_view(library)
    incremental = seen(library)
    view.publish_view(library, full=True)
    assert incremental == seen(library)
    assert len(list((library.root / "views").iterdir())) == view.KEEP_PREVIOUS + 1


@pytest.mark.parametrize("full", [False, True])
def test_each_tree_cache_is_what_lmods_spider_writes(library, full):
    view.publish_view(library)
    put(library.root, "cpu", "zlib/1.3.2-GCCcore-15.1.0")
    gen, _ = view.publish_view(library, full=full)
    layout = library.layout
    for tree in ("cpu", "cuda"):
        ours = layout.view_cache(gen, tree).joinpath("spiderT.lua").read_text()
        lmods = lmod.spider_output(library.lmod_prefix, "spiderT", [layout.view_tree(gen, tree)])
        assert ours == lmods.replace(str(layout.view_tree(gen, tree)), str(layout.view_tree(layout.live(), tree)))


@pytest.mark.parametrize("full", [False, True])
def test_each_trees_catalogue_data_is_what_lmods_software_page_says(library, full):
    """The catalogue's data comes from the spider-cache walk; Lmod's `spider -o jsonSoftwarePage` over the
    whole tree must say the same of every module (defaults and properties included)."""
    view.publish_view(library)
    put(library.root, "cpu", "zlib/1.3.2-GCCcore-15.1.0")
    put(library.root, "cuda", "NCCL/2.27.7-GCCcore-14.3.0-CUDA-13.2.2", extra='add_property("arch", "gpu")')
    gen, _ = view.publish_view(library, full=full)
    for tree in ("cpu", "cuda"):
        ours = json.loads(library.layout.view_catalogue_data(gen, tree).read_text())
        lmods = lmod.spider_json(library.lmod_prefix, [library.layout.view_tree(gen, tree)])
        assert {p["package"]: [(v["full"], bool(v.get("markedDefault")), "properties" in v,
                                (v.get("description") or "").strip()) for v in p["versions"]] for p in lmods} == {
            name: [(v["module"], v["default"], v["gpu"], v["description"]) for v in entry["versions"]]
            for name, entry in ours.items()}
    assert [v["module"] for v in ours["NCCL"]["versions"]] == ["NCCL/2.27.7-GCCcore-14.3.0-CUDA-13.2.2"]


def test_featured_index_is_what_the_whole_tree_catalogue_gives(library):
    view.publish_view(library)
    put(library.root, "cuda", "saxpy/1.1-GCCcore-system-CUDA-13.2.2", extra='add_property("arch", "gpu")')
    gen, _ = view.publish_view(library)
    paths = modulepath(library, "cuda", base=gen)
    catalogue = lmod.spider_json(library.lmod_prefix, paths)
    whole = featured.feature(library, "cuda", catalogue, [paths[0]], lambda path: "")
    ours = json.loads((gen / "targets" / "cuda" / "featured.json").read_text())
    assert [m["module"] for m in ours["modules"]] == ["Python/3.13.1-GCCcore-14.2.0",
                                                       "saxpy/1.1-GCCcore-system-CUDA-13.2.2"]
    assert ours["modules"] == whole.index["modules"]
    assert os.readlink(gen / "targets" / "cuda" / "featured" / "saxpy" / "1.1-GCCcore-system-CUDA-13.2.2.lua")


@pytest.mark.parametrize("cached_loads", [False, True])
def test_lmod_reads_every_tree_cache_and_walks_nothing(library, cached_loads):
    """``avail`` and ``spider`` come from the caches; terse ``avail`` (jupyter-lmod's panel runs
    ``$LMOD_CMD python --terse avail``) only with LMOD_CACHED_LOADS=yes: Lmod 8.6 walks the tree for it
    otherwise (Master.lua, ``use_cache = (not terse) or cached_loads ~= "no"``)."""
    library = dataclasses.replace(library, cached_loads=cached_loads)
    view.publish_view(library)
    put(library.root, "cpu", "Abseil/20250512.1-GCCcore-14.3.0")
    gen, _ = view.publish_view(library)
    env_sh = library.root / "live" / "targets" / "cuda" / "env.sh"
    debug = lmod_shell(f"source {env_sh}; module -D avail 2>&1").stdout
    live = library.root / "live"
    assert f"cacheFile found: {live}/trees/cuda/cache/spiderT" in debug
    assert f"cacheFile found: {live}/trees/cpu/cache/spiderT" in debug
    assert "buildSpiderT: false" in debug
    # a module file slipped into the generation behind the cache's back: only a walk finds it
    shutil.copy(library.layout.view_tree(gen, "cpu") / "Abseil" / "20250512.1-GCCcore-14.3.0.lua",
                library.layout.view_tree(gen, "cpu") / "Abseil" / "99.lua")
    assert "Abseil/99" not in lmod_shell(f"source {env_sh}; module avail 2>&1").stdout
    assert "Abseil/99" not in lmod_shell(f"source {env_sh}; module -t spider Abseil 2>&1").stdout
    terse = lmod_shell(f"source {env_sh}; module -t avail 2>&1").stdout
    assert ("Abseil/99" in terse) is not cached_loads
    assert "Abseil/99" in lmod_shell(f"source {env_sh}; module -t --ignore_cache avail 2>&1").stdout


def digest_tree(gen: Path) -> dict:
    return {str(p.relative_to(gen)): os.readlink(p) if p.is_symlink() else
            hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir" for p in sorted(gen.rglob("*"))}


def test_kept_generations_keep_their_bytes(library):
    kept: list[tuple[Path, dict]] = []
    for version in ("1.0", "1.1", "1.2", "1.3", "1.4"):
        put(library.root, "cpu", f"zlib/{version}", note=f"-- {version}\n")
        gen, _ = view.publish_view(library)
        kept = [*kept[-view.KEEP_PREVIOUS:], (gen, digest_tree(gen))]
    for gen, digest in kept:
        assert digest_tree(gen) == digest


def test_a_publish_killed_before_the_swap_leaves_live_and_the_next_one_right(library, monkeypatch):
    view.publish_view(library)
    live_before = os.readlink(library.root / "live")
    before = seen(library)
    put(library.root, "cpu", "zlib/1.3.2-GCCcore-15.1.0")
    with monkeypatch.context() as patch:
        def killed(root, gen):
            raise KeyboardInterrupt("killed")
        patch.setattr(view, "_swap", killed)
        with pytest.raises(KeyboardInterrupt):
            view.publish_view(library)
    assert os.readlink(library.root / "live") == live_before and seen(library) == before
    incremental, scratch = publish_both_ways(library)
    assert incremental == scratch and "zlib/1.3.2-GCCcore-15.1.0" in incremental["cpu: module -t avail"]


def test_library_yaml_edited_during_a_run_is_published_by_the_next_run(library):
    """A run publishes with the settings it read at its start: its generation must record those, or the
    next run would take the edited file as published already and never publish it."""
    view.publish_view(library)
    config = library.config_file
    text = config.read_text()
    assert "launcher: saxpy\n" in text
    config.write_text(text.replace("launcher: saxpy\n", "launcher: saxpy-notebook\n"))
    view.publish_view(library)  # the run that started before the edit
    state = json.loads(library.layout.view_state(library.layout.live().resolve()).read_text())
    assert state["config"] == library.config_sha256 != hashlib.sha256(config.read_bytes()).hexdigest()
    assert view.current_inputs(library.layout) == view.inputs_digest(library)
    edited = load_settings(config, env={"MODLIB_ROOT": str(library.root)})
    assert view.current_inputs(edited.layout) != view.inputs_digest(edited)  # so the next run publishes
    view.publish_view(edited)
    assert view.current_inputs(edited.layout) == view.inputs_digest(edited)
    launcher_files = (edited.root / "live" / "targets" / "cuda").glob("*.json")
    assert any("saxpy-notebook" in path.read_text() for path in launcher_files)
