"""bench/import_graph.py: the package-level import graph CONTRIBUTING.md draws, read from the source."""

import re

from bench.import_graph import mermaid, module_edges
from tests.helpers import REPO


def test_relative_lazy_and_from_package_imports_make_edges_and_leaves_are_boxed(tmp_path):
    pkg = tmp_path / "builder"
    for folder in ("read", "plan"):
        (pkg / folder).mkdir(parents=True)
        (pkg / folder / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "errors.py").write_text("import os\n")
    (pkg / "read" / "config.py").write_text("from ..errors import BadInput\n")
    (pkg / "plan" / "planner.py").write_text("from builder.read import config\n\n\ndef late():\n"
                                             "    from . import graph\n    import builder.cli\n")
    (pkg / "plan" / "graph.py").write_text("")
    (pkg / "cli.py").write_text("from builder.plan.planner import late\n")
    edges = module_edges(pkg)
    assert edges == {("read", "errors"): {("builder.read.config", "builder.errors")},
                     ("plan", "read"): {("builder.plan.planner", "builder.read"),  # its __init__ runs too
                                        ("builder.plan.planner", "builder.read.config")},
                     ("plan", "cli"): {("builder.plan.planner", "builder.cli")},
                     ("cli", "plan"): {("builder.cli", "builder.plan.planner")}}
    # plan sits below execute in make lint's layers, not above read: an import of read is drawn solid
    assert mermaid(edges, pkg).splitlines() == [
        "flowchart LR", "    plan[[plan/]]", "    read[[read/]]", "    cli --> plan", "    plan --> cli",
        "    plan --> read", '    utilities["imported from anywhere: errors"]']


def test_contributing_draws_the_graph_of_the_code_as_it_is():
    text = (REPO / "CONTRIBUTING.md").read_text()
    drawn = re.search(r"```mermaid\n(.*?)\n```", text, re.S)
    assert drawn and drawn.group(1) == mermaid(module_edges()), \
        "CONTRIBUTING.md's diagram is stale: paste the output of `.venv/bin/python -m bench.import_graph`"
