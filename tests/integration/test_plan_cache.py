"""The whole-plan cache: answers without EasyBuild when nothing moved, and every kind of change falls
back to the planner, whose plan it must equal exactly."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from builder.cache_files import MAX_PER_KIND
from builder.errors import BadInput
from builder.plan import planner
from builder.read.config import load_settings
from tests.helpers import REPO, TEST_EASYCONFIGS, bundle_easyconfig, write_easystack

UPSTREAM = Path(sys.prefix) / "easybuild" / "easyconfigs"


@pytest.fixture()
def fresh_calls(monkeypatch):
    """How many plans the planner made (cache misses)."""
    calls = []
    made = planner.fresh_plan

    def counting(*args):
        calls.append(args)
        return made(*args)

    monkeypatch.setattr(planner, "fresh_plan", counting)
    return calls


def plans(config, env):
    """The plan as the commands get it (cache first) and the planner's own plan made now, as JSON; the
    nodes themselves (digests, module classes and options included) must be equal too."""
    settings = load_settings(config, env=env)
    targets = [settings.first_cpu_target()]
    cached, fresh = planner.make_plan(settings, targets), planner.fresh_plan(settings, targets, None)
    assert cached.nodes == fresh.nodes
    return cached.as_json(), fresh.as_json()


def cached_plan_changes(lib, fresh_calls, change) -> tuple[dict, dict, dict]:
    """The plan before ``change``, after it (through the cache), and the planner's fresh one after it;
    asserts that the change made the cache miss."""
    tmp, site, hooks, config, env = lib
    before, _ = plans(config, env)
    assert plans(config, env)[0] == before
    misses = len(fresh_calls)
    change(tmp, site, hooks)
    after, fresh = plans(config, env)
    assert len(fresh_calls) == misses + 2, "the change must make the cached plan miss"
    return before, after, fresh


def test_unchanged_inputs_answer_from_the_cache_as_the_planner_would(lib, fresh_calls):
    tmp, site, hooks, config, env = lib
    cold, fresh = plans(config, env)
    assert len(fresh_calls) == 2  # the miss, and the comparison
    warm, _ = plans(config, env)
    assert len(fresh_calls) == 3  # only the comparison: the warm plan came from the cache
    assert warm == cold == fresh
    assert len(list((tmp / "cache").glob("plan-*.json"))) == 1


#: What a cached plan must not import: EasyBuild (the point of the cache), and what only a miss, a table or
#: a changed library.yaml needs (each costs a warm ``modlib plan`` a tenth of its time or more).
HEAVY = ("easybuild", "jsonschema", "rich", "concurrent.futures")


def plan_in_subprocess(config, env) -> tuple[str, set[str]]:
    """``modlib plan --json`` in a process of its own, as admins run it: the plan, and which of the
    ``HEAVY`` packages it imported (a cache miss asks EasyBuild, a hit none of them)."""
    code = ("import sys, json; from builder.cli import main; "
            "main(['plan', '--json', '--config', sys.argv[1]], standalone_mode=False); "
            "print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code, str(config)], capture_output=True, text=True,
                         env={**os.environ, **env}, check=True).stdout
    plan, imported = out.rsplit("\n", 2)[0], json.loads(out.splitlines()[-1])
    return plan, {h for h in HEAVY for m in imported if m == h or m.startswith(f"{h}.")}


def test_cached_plan_imports_nothing_heavy(lib):
    tmp, site, hooks, config, env = lib
    cold, warm = plan_in_subprocess(config, env), plan_in_subprocess(config, env)
    assert "easybuild" in cold[1] and warm[1] == set()  # the cold plan asked EasyBuild, the warm one nothing heavy
    assert cold[0] == warm[0]


NAMING = "[config]\nmodule-naming-scheme = CategorizedModuleNamingScheme\n"


def user_config(tmp):
    (tmp / "xdg-home" / "easybuild").mkdir(parents=True)
    (tmp / "xdg-home" / "easybuild" / "config.cfg").write_text(NAMING)


def system_config(tmp):
    """In the second folder of $XDG_CONFIG_DIRS, as /etc/easybuild.d is read when /etc is one of them."""
    (tmp / "etc" / "easybuild.d").mkdir(parents=True)
    (tmp / "etc" / "easybuild.d" / "naming.cfg").write_text(NAMING)


def named_config(tmp):
    (tmp / "named.cfg").write_text(NAMING)


@pytest.mark.parametrize("change", [user_config, system_config, named_config])
def test_easybuild_configuration_file(lib, change):
    """EasyBuild reads its configuration files when configured; a file that appears or changes must
    make the cached plan (and the parse cache) miss, in every place EasyBuild looks."""
    tmp, site, hooks, config, env = lib
    (tmp / "named.cfg").write_text("[config]\n")  # EASYBUILD_CONFIGFILES must name files that exist
    env = {**env, "XDG_CONFIG_HOME": str(tmp / "xdg-home"), "XDG_CONFIG_DIRS": f"{tmp / 'xdg'}:{tmp / 'etc'}",
           "EASYBUILD_CONFIGFILES": str(tmp / "named.cfg")}
    before, _ = plan_in_subprocess(config, env)
    change(tmp)
    after, asked = plan_in_subprocess(config, env)
    assert "easybuild" in asked, "the configuration file must make the cached plan miss"
    assert "tools/app/1.0-GCCcore-system" in after and "tools/app/1.0-GCCcore-system" not in before
    assert plan_in_subprocess(config, env) == (after, set())


def test_easystack_line(lib, fresh_calls):
    def add_entry(tmp, site, hooks):
        shutil.copytree(TEST_EASYCONFIGS / "m", site / "m")
        write_easystack(tmp / "easyconfigs" / "cpu.yaml",
                        ["app-1.0-GCCcore-system.eb", "MarkupSafe-3.0.2-GCCcore-system.eb"])

    before, after, fresh = cached_plan_changes(lib, fresh_calls, add_entry)
    assert after == fresh != before
    assert "MarkupSafe/3.0.2-GCCcore-system" in {n["module"] for n in after["nodes"]}


def test_easyconfig_content_with_same_size_and_mtime(lib, fresh_calls):
    def same_size_same_mtime(tmp, site, hooks):
        ec = site / "a" / "app" / "app-1.0-GCCcore-system.eb"
        st = ec.stat()
        text = ec.read_text()
        ec.write_text(text.replace("moduleclass = 'tools'", "moduleclass = 'tool2'"))
        os.utime(ec, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert (ec.stat().st_size, ec.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)

    before, after, fresh = cached_plan_changes(lib, fresh_calls, same_size_same_mtime)
    assert after == fresh


def test_new_site_easyconfig_shadowing_another(lib, fresh_calls):
    def shadow(tmp, site, hooks):
        (site / "g" / "GCCcore").mkdir(parents=True)
        shutil.copy(REPO / ".venv/easybuild/easyconfigs/g/GCCcore/GCCcore-system.eb", site / "g" / "GCCcore")

    before, after, fresh = cached_plan_changes(lib, fresh_calls, shadow)
    assert after == fresh != before
    assert str(site_of(after, "GCCcore/system")).startswith(str(lib[1]))


def test_easyconfig_that_lost_to_an_earlier_file_of_its_module(lib, fresh_calls):
    """An entry's file gives app/1.0 first; a dependency on app 1.0 finds another file of that module,
    which is no node but is parsed and checked: an edit of it (listing unchanged) that the planner refuses
    must not be answered from the cache."""
    tmp, site, hooks, config, env = lib
    (site / "a" / "app" / "app-twin.eb").write_text(bundle_easyconfig("app", ""))
    loser = site / "a" / "app" / "app-1.0-GCCcore-system.eb"
    (site / "u" / "user").mkdir(parents=True)
    (site / "u" / "user" / "user-1.0-GCCcore-system.eb").write_text(
        bundle_easyconfig("user", "dependencies = [('app', '1.0')]"))
    write_easystack(tmp / "easyconfigs" / "cpu.yaml", ["app-twin.eb", "user-1.0-GCCcore-system.eb"])
    before, _ = plans(config, env)
    assert site_of(before, "app/1.0-GCCcore-system").endswith("app-twin.eb")
    loser.write_text(bundle_easyconfig("app", "dependencies = [('ghost', '9.9')]"))
    settings = load_settings(config, env=env)
    with pytest.raises(BadInput, match="ghost"):
        planner.make_plan(settings, [settings.first_cpu_target()])


def test_a_later_robot_paths_file_of_the_same_name_is_never_read(lib, fresh_calls):
    """The robot takes the first file by path, so an edit of a shadowed file (its folder's listing
    unchanged) changes nothing: the cached plan still answers, and equals the planner's."""
    tmp, site, hooks, config, env = lib
    later = tmp / "later"
    (later / "a" / "app").mkdir(parents=True)
    shadowed = later / "a" / "app" / "app-1.0-GCCcore-system.eb"
    shadowed.write_text(bundle_easyconfig("app", ""))
    settings = yaml.safe_load(config.read_text())
    config.write_text(yaml.safe_dump({**settings, "easyconfig_paths": [str(site), str(later)]}))
    before, _ = plans(config, env)
    shadowed.write_text(bundle_easyconfig("app", "dependencies = [('MarkupSafe', '3.0.2')]"))
    misses = len(fresh_calls)
    after, fresh = plans(config, env)
    assert len(fresh_calls) == misses + 1  # only the comparison: the cached plan answered
    assert after == fresh == before


def site_of(plan_json: dict, module: str) -> str:
    return next(n["easyconfig"] for n in plan_json["nodes"] if n["module"] == module)


def test_hooks_change(lib, fresh_calls):
    def new_hook(tmp, site, hooks):
        hooks.write_text(hooks.read_text() + "\n\ndef parse_hook(ec, *args, **kwargs):\n"
                         "    if ec.name == 'app':\n        ec['dependencies'] = [('MarkupSafe', '3.0.2')]\n")
        shutil.copytree(TEST_EASYCONFIGS / "m", site / "m")

    before, after, fresh = cached_plan_changes(lib, fresh_calls, new_hook)
    assert after == fresh != before


@pytest.mark.parametrize("publish", [True, False])
def test_module_published_or_removed_by_another_run(lib, fresh_calls, publish):
    """``installed`` is never cached: the store is asked again on every hit, as the planner asks it."""
    tmp, site, hooks, config, env = lib
    settings = load_settings(config, env=env)
    module_file = settings.layout.module_file("cpu", "app/1.0-GCCcore-system")
    if not publish:
        module_file.parent.mkdir(parents=True)
        module_file.write_text("-- stored by another run\n")
    plans(config, env)
    if publish:
        module_file.parent.mkdir(parents=True)
        module_file.write_text("-- stored by another run\n")
    else:
        module_file.unlink()
    after, fresh = plans(config, env)
    assert after == fresh
    assert {n["module"]: n["installed"] for n in after["nodes"]}["app/1.0-GCCcore-system"] is publish


@pytest.mark.parametrize("damage", ["torn", "tampered", "forged"])
def test_torn_tampered_or_forged_entry_is_ignored(lib, fresh_calls, damage):
    """A forged entry's first line is its body's plain sha256, all that whoever can write the folder can
    compute: only the MAC under the folder's secret makes an entry count."""
    tmp, site, hooks, config, env = lib
    good, _ = plans(config, env)
    entry = next((tmp / "cache").glob("plan-*.json"))
    if damage == "torn":
        entry.write_text(entry.read_text()[:100])
    else:
        digest, body = entry.read_text().split("\n", 1)
        stored = json.loads(body)
        stored["nodes"][0][1] = "app/9.9-forged"  # the entry's digest no longer matches
        body = json.dumps(stored)
        if damage == "forged":
            digest = hashlib.sha256(body.encode()).hexdigest()
        entry.write_text(f"{digest}\n{body}")
    misses = len(fresh_calls)
    assert plans(config, env)[0] == good
    assert len(fresh_calls) == misses + 2


def test_new_easyconfig_in_an_entrys_own_robot_path(lib, fresh_calls):
    """An entry's ``robot-paths`` is watched like the site's: a file added there shadows for that entry."""
    tmp, site, hooks, config, env = lib
    own = tmp / "own"
    own.mkdir()
    (tmp / "easyconfigs" / "cpu.yaml").write_text(yaml.safe_dump({"easyconfigs": [
        {"app-1.0-GCCcore-system.eb": {"options": {"robot-paths": f"{own}:{site}:{UPSTREAM}"}}}]}))

    def shadow(tmp, site, hooks):
        shutil.copy(site / "a" / "app" / "app-1.0-GCCcore-system.eb", own)

    before, after, fresh = cached_plan_changes(lib, fresh_calls, shadow)
    assert after == fresh != before
    assert site_of(after, "app/1.0-GCCcore-system") == str(own / "app-1.0-GCCcore-system.eb")


def test_a_store_prunes_old_entries(lib, fresh_calls):
    """Entries of inputs long gone are removed when a plan is stored; the fresh entry answers."""
    tmp, site, hooks, config, env = lib
    cache = tmp / "cache"
    cache.mkdir()
    old = time.time() - 86400
    for i in range(MAX_PER_KIND + 4):
        for name in (f"plan-{i:032x}.json", f"parse-{i:024x}.json"):
            (cache / name).write_text("{}")
            os.utime(cache / name, (old - i, old - i))
    plans(config, env)
    assert len(list(cache.glob("plan-*.json"))) == len(list(cache.glob("parse-*.json"))) == MAX_PER_KIND
    assert not (cache / f"plan-{MAX_PER_KIND + 3:032x}.json").exists()
    misses = len(fresh_calls)
    plans(config, env)
    assert len(fresh_calls) == misses + 1  # only the comparison: the stored plan survived the pruning


#: In a copy of builder/: every builder module that importing the planner loads, and which of them (or of
#: the further files named) an edit (a comment appended) leaves the plan key unchanged for.
KEY_AFTER_EDITS = """
import json, sys
from pathlib import Path
import builder
from builder.plan import plan_cache, planner
from builder.read.config import load_settings

assert Path(builder.__file__).is_relative_to(sys.argv[2]), builder.__file__
imported = sorted(m.__file__ for n, m in list(sys.modules.items()) if n.split(".")[0] == "builder")
settings = load_settings(Path(sys.argv[1]))
targets = [settings.first_cpu_target()]
key = lambda: plan_cache.plan_key(settings, targets, None, planner.robot_paths(settings))
before, unchanged = key(), []
for path in imported + sys.argv[3:]:
    text = Path(path).read_text()
    Path(path).write_text(text + "\\n# an edit\\n")
    unchanged += [path] if key() == before else []
    Path(path).write_text(text)
print(json.dumps({"imported": imported, "unchanged": unchanged}))
"""


def test_an_edit_of_any_module_the_planner_imports_makes_a_new_key(lib):
    """The code that decides what a plan holds is every builder module the planner imports, at any depth:
    each keys the cache, so that a module added under plan/ (or anywhere the planner reaches) never serves
    a plan its old code made. A module imported only inside a function counts too."""
    tmp, site, hooks, config, env = lib
    code = tmp / "code"
    shutil.copytree(REPO / "builder", code / "builder", ignore=shutil.ignore_patterns("__pycache__"))
    lazy = code / "builder" / "plan" / "lazy_rule.py"
    lazy.write_text("RULE = 1\n")
    with (code / "builder" / "plan" / "planner.py").open("a") as planner_file:
        planner_file.write("\n\ndef _rule():\n    from builder.plan import (\n        lazy_rule,\n    )\n"
                           "    return lazy_rule\n")
    out = subprocess.run([sys.executable, "-c", KEY_AFTER_EDITS, str(config), str(code), str(lazy)], cwd=code,
                         env={**os.environ, **env, "PYTHONPATH": str(code)}, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    assert {str(code / "builder" / "plan" / name) for name in ("planner.py", "parse_sandbox.py")} <= \
        set(result["imported"])
    assert result["unchanged"] == []


INCLUDED = {
    "include-easyblocks": ("siteapp.py", "from easybuild.easyblocks.generic.bundle import Bundle\n\n\n"
                                         "class EB_{name}(Bundle):\n    pass\n", "siteapp", ("EB_siteapp", "SYSTEM")),
    "include-toolchains": ("sitetc.py", "from easybuild.toolchains.compiler.systemcompiler import SystemCompiler\n\n\n"
                                        "class SiteTC(SystemCompiler):\n    NAME = '{name}'\n", "sitetc",
                           ("Bundle", "{'name': 'sitetc', 'version': '1.0'}")),
}


@pytest.mark.parametrize("level", ["entry", "target"])
@pytest.mark.parametrize("option", sorted(INCLUDED))
def test_an_edit_of_an_included_file_is_seen_by_a_warm_plan(lib, option, level):
    """The easyblock or toolchain that ``include-*`` names, at entry or target level, is read by content: an
    edit that makes EasyBuild refuse the easyconfig (its class renamed) makes the warm plan refuse it too,
    where the plan cache, and then the parse cache, answered by the file's path alone."""
    tmp, site, hooks, config, env = lib
    filename, code, name, (easyblock, toolchain) = INCLUDED[option]
    included = tmp / "included" / filename
    included.parent.mkdir()
    included.write_text(code.format(name=name))
    for folder in ("siteapp", "sitetc"):
        (site / "s" / folder).mkdir(parents=True)
    (site / "s" / "siteapp" / "siteapp-1.0.eb").write_text(
        f"easyblock = '{easyblock}'\nname = 'siteapp'\nversion = '1.0'\nhomepage = 'https://example.org'\n"
        f"description = 'fixture'\ntoolchain = {toolchain}\nmoduleclass = 'tools'\n")
    (site / "s" / "sitetc" / "sitetc-1.0.eb").write_text(
        "easyblock = 'Toolchain'\nname = 'sitetc'\nversion = '1.0'\nhomepage = 'https://example.org'\n"
        "description = 'fixture'\ntoolchain = SYSTEM\nmoduleclass = 'toolchain'\n")
    entry: object = "siteapp-1.0.eb"
    if level == "entry":
        entry = {"siteapp-1.0.eb": {"options": {option: str(included)}}}
    else:
        data = yaml.safe_load(config.read_text())
        data["targets"]["cpu"]["easybuild_options"] = {option: str(included)}
        config.write_text(yaml.safe_dump(data))
    (tmp / "easyconfigs" / "cpu.yaml").write_text(yaml.safe_dump({"easyconfigs": [entry]}))
    plan = [str(Path(sys.executable).parent / "modlib"), "plan", "--config", str(config), "--json"]
    for _ in range(2):  # cold, then from the caches
        result = subprocess.run(plan, capture_output=True, text=True, env={**os.environ, **env})
        assert result.returncode == 0, result.stderr
    assert "siteapp/1.0" in result.stdout
    included.write_text(code.format(name="renamed"))
    result = subprocess.run(plan, capture_output=True, text=True, env={**os.environ, **env})
    assert result.returncode == 2, result.stdout[-500:] + result.stderr
    assert "siteapp-1.0.eb" in result.stderr
