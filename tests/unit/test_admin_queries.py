"""The admin's queries without a library: which module a typed name means, and --where conditions."""

import pytest

from builder.errors import BadInput
from builder.report.published import resolve
from builder.report.where import built_with, items, parse

KEYS = [("cpu", "Jinja2/3.1.4-GCCcore-system"), ("cpu", "Jinja2/3.1.5-GCCcore-system"),
        ("cpu", "GCCcore/system"), ("cuda", "saxpy/1.0-GCCcore-system-CUDA-13.2.2"),
        ("cpu", "tool/1.0"), ("cuda", "tool/1.0")]


@pytest.mark.parametrize("name, key", [
    ("Jinja2/3.1.4-GCCcore-system", KEYS[0]), ("Jinja2/3.1.5", KEYS[1]), ("saxpy", KEYS[3]),
    ("GCCcore", KEYS[2]), ("cuda/tool", KEYS[5]), ("cpu/tool/1.0", KEYS[4])])
def test_names_people_type_resolve_to_one_module(name, key):
    assert resolve(KEYS, name) == key


@pytest.mark.parametrize("name, problem", [
    ("Jinja2", "Jinja2: ambiguous, name one of: cpu/Jinja2/3.1.4-GCCcore-system, cpu/Jinja2/3.1.5-GCCcore-system"),
    ("tool/1.0", "tool/1.0: ambiguous, name one of: cpu/tool/1.0, cuda/tool/1.0"),
    ("Jinja2/3.1", "Jinja2/3.1: no such module in this library; did you mean Jinja2/3.1.4-GCCcore-system or "
                   "Jinja2/3.1.5-GCCcore-system"),
    ("cuda/Jinja2", "cuda/Jinja2: no such module in this library; did you mean cpu/Jinja2/3.1.4-GCCcore-system"),
    ("numpy", r"numpy: no such module in this library \(`modlib status --json` lists them\)$")])
def test_unknown_or_ambiguous_names_are_bad_input_naming_them_once(name, problem):
    """One line that names the module once (it said "modlib: modlib show: ..."), and the closest names."""
    with pytest.raises(BadInput, match=problem):
        resolve(KEYS, name)


#: What ``ebadapter.option_names()`` answers, in part (tests/integration/test_cli_output.py asks eb itself).
KNOWN = frozenset({"cuda-compute-capabilities", "optarch", "parallel"})


def test_where_conditions_and_values():
    cond = parse("cuda-compute-capabilities!=9.0", KNOWN)
    assert (cond.key, cond.equal, cond.value, str(cond)) == ("cuda-compute-capabilities", False, "9.0",
                                                            "cuda-compute-capabilities!=9.0")
    assert parse("optarch=GENERIC", KNOWN).equal and parse("easybuild-version=5.4.1", KNOWN).equal
    assert items(["8.0", "9.0"]) == ["8.0", "9.0"] and items("8.0, 9.0") == ["8.0", "9.0"] and items(None) == []
    assert items(True) == ["true"]
    for bad in ("cuda-compute-capabilities", "=9.0", "a b=c"):
        with pytest.raises(BadInput, match="expected KEY=VALUE"):
            parse(bad, KNOWN)


@pytest.mark.parametrize("text, problem", [
    ("cuda-compute-capability=9.0", "--where: 'cuda-compute-capability' is not an EasyBuild option; did you mean "
                                    "'cuda-compute-capabilities'?"),
    ("foo=bar", "--where: 'foo' is not an EasyBuild option (nor easybuild-version)")])
def test_where_keys_are_options_eb_knows(text, problem):
    """A typo matched every module (no build sets an unknown option) and foo=bar answered "0 published"."""
    with pytest.raises(BadInput) as err:
        parse(text, KNOWN)
    assert str(err.value) == problem


def test_a_record_without_options_cannot_answer():
    assert built_with(None, "optarch") == (False, None)
    assert built_with({"exit_code": 0}, "optarch") == (False, None)  # written before records kept options
    assert built_with({"options": {}}, "optarch") == (True, None)  # built without it
    assert built_with({"options": {"optarch": "GENERIC"}}, "optarch") == (True, "GENERIC")
    assert built_with({"easybuild_version": "5.4.1"}, "easybuild-version") == (True, "5.4.1")


def test_ci_examples_post_the_plan_diff():
    import yaml

    from tests.helpers import REPO

    gitlab = yaml.safe_load((REPO / "docs" / "ci" / "gitlab-ci.yml").read_text())["modlib-plan"]
    assert gitlab["rules"][0]["if"] == '$CI_PIPELINE_SOURCE == "merge_request_event"'
    assert any("modlib plan --diff" in line for line in gitlab["script"])
    github = yaml.safe_load((REPO / "docs" / "ci" / "github-actions.yml").read_text())
    steps = github["jobs"]["plan"]["steps"]
    assert "modlib plan --diff" in steps[1]["run"] and "createComment" in steps[2]["with"]["script"]
    assert github["permissions"]["pull-requests"] == "write"


def test_a_module_recorded_before_provenance_fields_shows_them_as_not_recorded(tmp_path):
    """A library published by an older modlib: its record lacks EasyBuild's version, the hooks, the options
    and the sources, and it has no integrity record; show says so, --where lists it apart."""
    import json

    from builder.layout import Layout
    from builder.read.config import load_settings
    from builder.report.provenance import lines, provenance
    from builder.report.where import query
    from tests.helpers import write_config, write_easystack

    stack = write_easystack(tmp_path / "cpu.yaml", ["tool-1.0.eb"])
    config = write_config(tmp_path, {"cpu": {"kind": "cpu", "tree": "cpu", "easystacks": [str(stack)]}})
    settings = load_settings(config)
    layout = Layout(settings.root)
    easyconfig = tmp_path / "tool-1.0.eb"
    easyconfig.write_text("name = 'tool'\n")
    module_file = layout.module_file("cpu", "tool/1.0")
    module_file.parent.mkdir(parents=True)
    module_file.write_text("-- tool\n")
    log = layout.records("cpu", "tool/1.0") / "20250101T000000-1.log"
    log.parent.mkdir(parents=True)
    old = {"module": "tool/1.0", "tree": "cpu", "target": "cpu", "easyconfig": str(easyconfig), "sha256": "0" * 64,
           "command": ["eb"], "exit_code": 0, "start": 10.0, "end": 12.5, "log": str(log), "executor": "local",
           "where": "old-host (pid 1)", "host": "old-host"}
    log.with_suffix(".json").write_text(json.dumps(old))
    layout.manifest("cpu", "tool/1.0").parent.mkdir(parents=True)
    layout.manifest("cpu", "tool/1.0").write_text(json.dumps(
        {"module": "tool/1.0", "easyconfig": str(easyconfig), "sha256": "0" * 64,
         "record": str(log.with_suffix(".json")), "prefix": str(layout.prefix("cpu", "tool-0123")), "published": 13.0}))
    info = provenance(settings, ("cpu", "tool/1.0"))
    assert info["not_recorded"] == ["easybuild_version", "hooks_sha256", "options", "sources"]
    assert info["easyconfig"]["changed_since"] and info["build"]["seconds"] == 2.5
    assert info["integrity"] == {"state": "unrecorded", "problems": []}
    text = "\n".join(lines(info))
    assert "  EasyBuild       not recorded" in text and "  options         not recorded" in text
    assert "(the file has changed since: drifted)" in text and "local on old-host (pid 1)" in text
    found = query(settings, [parse("cuda-compute-capabilities!=9.0", KNOWN)])
    assert found["modules"] == [] and found["not_recorded"] == [{"tree": "cpu", "module": "tool/1.0", "values": {}}]
