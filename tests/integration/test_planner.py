"""Planning with real EasyBuild (parser, robot, module naming), no builds."""

import json

import pytest

from builder.plan.planner import make_plan
from builder.read.config import load_settings
from tests.helpers import REPO, modlib

DATA = REPO / "tests" / "data"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return load_settings(REPO / "easyconfigs" / "library.yaml",
                         env={"MODLIB_ROOT": str(tmp_path_factory.mktemp("empty-library"))})


def test_demo_plan_places_only_cuda_bound_nodes_in_the_cuda_tree(demo):
    plan = make_plan(demo, list(demo.targets.values()))
    where = {n.module: n.tree for n in plan.nodes}
    assert where["CUDA/13.2.2"] == "cuda" and where["saxpy/1.0-GCCcore-system-CUDA-13.2.2"] == "cuda"
    assert where["GCCcore/system"] == "cpu" and where["MarkupSafe/3.0.2-GCCcore-system"] == "cpu"
    # GCCcore/system is wanted by both targets but planned (and built) once
    assert [n.module for n in plan.nodes].count("GCCcore/system") == 1
    saxpy = plan.index[("cuda", "saxpy/1.0-GCCcore-system-CUDA-13.2.2")]
    assert set(saxpy.deps) == {("cuda", "CUDA/13.2.2"), ("cpu", "GCCcore/system")}
    assert not any(n.installed for n in plan.nodes)


def test_demo_plan_has_side_by_side_versions_and_a_three_deep_chain(demo):
    plan = make_plan(demo, [demo.target("cpu")])
    jinja = [n for n in plan.nodes if n.name == "Jinja2"]
    assert len(jinja) == 3
    chain = plan.index[("cpu", "Jinja2/3.1.4-GCCcore-system")]
    assert ("cpu", "MarkupSafe/3.0.2-GCCcore-system") in chain.deps
    assert ("cpu", "GCCcore/system") in plan.index[("cpu", "MarkupSafe/3.0.2-GCCcore-system")].deps


def test_installed_is_decided_from_module_files(demo):
    live = demo.root / "cpu" / "modules" / "all" / "GCCcore" / "system.lua"
    live.parent.mkdir(parents=True)
    live.write_text("-- published\n")
    try:
        plan = make_plan(demo, [demo.target("cpu")])
        assert plan.index[("cpu", "GCCcore/system")].installed
        assert not plan.index[("cpu", "MarkupSafe/3.0.2-GCCcore-system")].installed
    finally:
        live.unlink()


def test_eessi_plan_lists_exactly_what_eb_dry_run_robot_lists(tmp_path):
    """The 1102 modules EasyBuild 5.4.1's `eb --dry-run --robot` resolves for EESSI 2025.06 (tests/data)."""
    result = modlib("plan", "--config", str(REPO / "easyconfigs" / "library.yaml"), "--json",
                    "--easystack", str(DATA / "eessi-2025.06.yml"),
                    env={"MODLIB_ROOT": str(tmp_path)}, check=True)
    planned = [n["module"] for n in json.loads(result.stdout)["nodes"]]
    expected = {line.strip() for line in (DATA / "eessi-2025.06-eb-modules.txt").read_text().splitlines()
                if line.strip() and not line.startswith("#")}
    assert len(expected) == 1102
    assert len(planned) == len(set(planned)) == 1102
    assert set(planned) == expected
