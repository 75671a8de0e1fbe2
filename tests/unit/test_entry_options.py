"""Which options an easystack entry may carry: every one modlib plans is an option of EasyBuild 5.4.1,
and every other is bad input naming the easystack, the entry and the option."""

from pathlib import Path

import pytest
from easybuild.tools.options import EasyBuildOptions

from builder.errors import BadInput
from builder.plan import entry_options

PLANNED = sorted(entry_options.TWEAK | entry_options.RESOLVE | entry_options.BUILD | {entry_options.HIDDEN})
STACK = Path("/site/cpu.yaml")


def test_every_option_modlib_plans_is_one_of_easybuild(monkeypatch):
    monkeypatch.setattr("sys.argv", ["eb"])  # EasyBuild's option parser reads the process's own arguments too
    parser = EasyBuildOptions(go_args=["--robot"], go_useconfigfiles=False).parser
    assert [o for o in PLANNED if not parser.has_option(f"--{o}")] == []


@pytest.mark.parametrize("option, value, why", [
    ("from-pr", 12345, "network"), ("from-commit", "abc", "network"), ("include-easyblocks-from-pr", 1, "network"),
    ("module-naming-scheme", "HierarchicalMNS", "EasyBuildMNS"), ("use-existing-modules", True, "installed"),
    ("robot", "/some/folder", "robot-paths"),
    ("rebuild", True, "cannot plan"), ("no-such-option", 1, "cannot plan"),
])
def test_refused_options_name_stack_entry_and_option(option, value, why):
    with pytest.raises(BadInput) as err:
        entry_options.split(STACK, "SQLite-3.45.3-GCCcore-13.3.0.eb", {option: value})
    assert str(err.value).startswith(f"{STACK}: ")
    assert f"entry SQLite-3.45.3-GCCcore-13.3.0.eb: option '{option}'" in str(err.value) and why in str(err.value)


def test_hidden_is_the_entrys_own_and_the_rest_configures_its_session():
    opts = entry_options.split(STACK, "x.eb", {"hidden": True, "optarch": "GENERIC", "try-software-version": "2"})
    assert opts.hidden and opts.tweaks
    assert opts.session == (("optarch", "GENERIC"), ("try-software-version", "2"))
    assert opts.recorded() == (("hidden", True), ("optarch", "GENERIC"), ("try-software-version", "2"))
    assert entry_options.for_build(opts.recorded()) == {"optarch": "GENERIC"}
    with pytest.raises(BadInput, match="'hidden' must be true or false"):
        entry_options.split(STACK, "x.eb", {"hidden": "yes"})
