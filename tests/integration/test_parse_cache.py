"""The parsed-easyconfig cache: reused when nothing changed, never trusted when anything did."""

import hashlib
import json
import shutil

import pytest

from builder.plan.planner import fresh_plan
from builder.read.config import load_settings
from tests.helpers import REPO, TEST_EASYCONFIGS


def plan(config, env):
    """The planner below the whole-plan cache: these tests are about the parse cache."""
    settings = load_settings(config, env=env)
    return fresh_plan(settings, [settings.first_cpu_target()], None)


def cache_file(tmp_path):
    files = list((tmp_path / "cache").glob("parse-*.json"))
    assert len(files) == 1
    return files[0]


def deps_of(result, module):
    return {m for _, m in result.index[("cpu", module)].deps}


def test_warm_plan_equals_cold_plan(lib):
    tmp, site, hooks, config, env = lib
    cold = plan(config, env)
    assert len(json.loads(cache_file(tmp).read_text())["entries"]) == 2  # app and GCCcore/system
    assert plan(config, env).as_json() == cold.as_json()


def test_changed_easyconfig_is_parsed_again(lib):
    tmp, site, hooks, config, env = lib
    plan(config, env)
    ec = site / "a" / "app" / "app-1.0-GCCcore-system.eb"
    ec.write_text(ec.read_text() + "dependencies = [('MarkupSafe', '3.0.2')]\n")
    (site / "m" / "MarkupSafe").mkdir(parents=True)
    shutil.copy(TEST_EASYCONFIGS / "m/MarkupSafe/MarkupSafe-3.0.2-GCCcore-system.eb", site / "m" / "MarkupSafe")
    assert "MarkupSafe/3.0.2-GCCcore-system" in deps_of(plan(config, env), "app/1.0-GCCcore-system")


def test_new_site_easyconfig_shadowing_upstream_is_seen(lib):
    """Dependency look-ups are never cached: a site copy added later wins, as with eb --robot."""
    tmp, site, hooks, config, env = lib
    before = plan(config, env)
    assert str(before.index[("cpu", "GCCcore/system")].easyconfig).startswith(str(REPO / ".venv"))
    (site / "g" / "GCCcore").mkdir(parents=True)
    shutil.copy(REPO / ".venv/easybuild/easyconfigs/g/GCCcore/GCCcore-system.eb", site / "g" / "GCCcore")
    after = plan(config, env)
    assert after.index[("cpu", "GCCcore/system")].easyconfig == site / "g" / "GCCcore" / "GCCcore-system.eb"


def test_corrupt_entry_is_rejected_and_rebuilt(lib):
    tmp, site, hooks, config, env = lib
    good = plan(config, env).as_json()
    path = cache_file(tmp)
    stored = json.loads(path.read_text())
    key = next(k for k in stored["entries"] if k.startswith("app-"))
    stored["entries"][key]["parsed"]["module"] = "app/9.9-forged"  # digest no longer matches
    path.write_text(json.dumps(stored))
    assert plan(config, env).as_json() == good
    assert json.loads(path.read_text())["entries"][key]["parsed"]["module"] == "app/1.0-GCCcore-system"


@pytest.mark.parametrize("forgery", ["edited", "moved"])
def test_forged_entry_is_not_used(lib, forgery):
    """An entry edited with its plain sha256 recomputed, or a genuine entry moved under another easyconfig's
    key, is what whoever can write the folder can make: neither counts, and the file is parsed again."""
    tmp, site, hooks, config, env = lib
    good = plan(config, env).as_json()
    path = cache_file(tmp)
    stored = json.loads(path.read_text())
    app = next(k for k in stored["entries"] if k.startswith("app-"))
    other = next(k for k in stored["entries"] if k != app)
    if forgery == "edited":
        entry = stored["entries"][app]
        entry["parsed"]["module"] = "app/9.9-forged"
        plain = hashlib.sha256(json.dumps(entry["parsed"], sort_keys=True).encode()).hexdigest()
        entry.update({k: plain for k in ("digest", "mac")})
    else:
        stored["entries"][app] = stored["entries"][other]
    path.write_text(json.dumps(stored))
    assert plan(config, env).as_json() == good
    assert json.loads(path.read_text())["entries"][app]["parsed"]["module"] == "app/1.0-GCCcore-system"


def test_unreadable_cache_file_is_ignored(lib):
    tmp, site, hooks, config, env = lib
    good = plan(config, env).as_json()
    cache_file(tmp).write_text("{ torn wri")
    assert plan(config, env).as_json() == good


def test_hooks_change_selects_another_cache(lib):
    """A parse_hook can change dependencies, so the hooks file's text is part of the cache key."""
    tmp, site, hooks, config, env = lib
    plan(config, env)
    hooks.write_text(hooks.read_text() + "\n\ndef parse_hook(ec, *args, **kwargs):\n"
                     "    if ec.name == 'app':\n        ec['dependencies'] = [('MarkupSafe', '3.0.2')]\n")
    (site / "m" / "MarkupSafe").mkdir(parents=True)
    shutil.copy(TEST_EASYCONFIGS / "m/MarkupSafe/MarkupSafe-3.0.2-GCCcore-system.eb", site / "m" / "MarkupSafe")
    assert "MarkupSafe/3.0.2-GCCcore-system" in deps_of(plan(config, env), "app/1.0-GCCcore-system")
    assert len(list((tmp / "cache").glob("parse-*.json"))) == 2
