"""Old build prefixes go only when nothing published names them, and only after the grace period."""

import json
from pathlib import Path

from builder.layout import Layout
from builder.publish import prefixes


def _prefix(layout: Layout, build: str, module: str = "X/1") -> Path:
    path = layout.install_dir(layout.prefix("cpu", build), module) / "lib"
    path.mkdir(parents=True)
    (path / "libx.so").write_bytes(b"\x7fELF ... RPATH=")
    return layout.prefix("cpu", build)


def test_a_prefix_goes_only_when_unreferenced_for_the_grace_period(tmp_path):
    layout = Layout(tmp_path)
    live, old, dep_of, gone = (_prefix(layout, b) for b in ("X-live", "X-old", "Y-dep", "X-gone"))
    store = layout.store("cpu")
    (store / "X").mkdir(parents=True)
    (store / "X" / "1.lua").write_text(f'local root = "{live}/X/1"\n')
    generation = tmp_path / "views" / "g1"
    (layout.view_tree(generation, "cpu") / "X").mkdir(parents=True)
    (layout.view_tree(generation, "cpu") / "X" / "1.lua").write_text(f'local root = "{old}/X/1"\n')
    layout.manifests("cpu").mkdir(parents=True)
    layout.manifest("cpu", "Z/1").write_text(json.dumps({"prefix": "", "references": [str(dep_of)]}))

    assert prefixes.collect(layout, ["cpu"], [generation], grace_seconds=3600, now=1000.0) == []
    assert json.loads(layout.unreferenced("cpu").read_text()) == {"X-gone": 1000.0}
    assert prefixes.collect(layout, ["cpu"], [generation], grace_seconds=3600, now=4000.0) == []
    assert prefixes.collect(layout, ["cpu"], [generation], grace_seconds=3600, now=4600.0) == [gone]
    assert live.is_dir() and old.is_dir() and dep_of.is_dir() and not gone.exists()
    # the generation that named `old` is gone: its grace starts now
    assert prefixes.collect(layout, ["cpu"], [], grace_seconds=3600, now=5000.0) == []
    assert prefixes.collect(layout, ["cpu"], [], grace_seconds=3600, now=8600.0) == [old]


def test_an_install_records_the_prefixes_its_files_name(tmp_path):
    layout = Layout(tmp_path)
    dep, own = _prefix(layout, "Y-dep", "Y/1"), _prefix(layout, "X-new")
    script = layout.install_dir(own, "X/1") / "bin" / "x"
    script.parent.mkdir()
    script.write_text(f"#!/bin/sh\nexec {dep}/Y/1/bin/y \"$@\"  # and {own}/X/1 itself\n")
    pattern = prefixes.prefix_pattern(layout, ["cpu"])
    assert prefixes.references(layout.install_dir(own, "X/1"), pattern, own) == [str(dep)]
