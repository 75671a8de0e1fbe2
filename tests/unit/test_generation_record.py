"""Generation records and the upgrade rule: a library published before records existed is not damaged for
lacking them; from the first recorded generation on, a module without an integrity record is damage unless
that first record listed it."""

import os
from pathlib import Path

from builder.commands.verify import check, library_damage
from builder.layout import Layout
from builder.publish import generation_record


def _generation(layout: Layout, name: str, modules: list[str]) -> Path:
    gen = layout.views() / name
    for module in modules:
        path = layout.view_tree(gen, "cpu") / f"{module}.lua"
        path.parent.mkdir(parents=True, exist_ok=True)
        store = layout.module_file("cpu", module)
        if not store.exists():
            store.parent.mkdir(parents=True, exist_ok=True)
            store.write_text(f"-- {module}\n")
        os.link(store, path)
    (layout.view_target(gen, "cpu")).mkdir(parents=True)
    (layout.view_target(gen, "cpu") / "env.sh").write_text("export MODULEPATH=x\n")
    layout.view_marker(gen).touch()
    return gen


def _go_live(layout: Layout, gen: Path) -> None:
    tmp = layout.root / ".live-tmp"
    tmp.symlink_to(os.path.relpath(gen, layout.root))
    os.replace(tmp, layout.live())


def test_an_old_library_is_unrecorded_until_its_first_recorded_publish(tmp_path):
    layout = Layout(tmp_path / "root")
    old = _generation(layout, "20250101T000000.000000000-old", ["legacy/1"])
    _go_live(layout, old)
    assert check(layout, ("cpu", "legacy/1"), thorough=True).recorded is False
    assert library_damage(layout, ["cpu"], True, [old]) == []  # made before generation records: none needed

    new = _generation(layout, "20991231T000000.000000000-new", ["legacy/1"])
    generation_record.write(layout, new)  # the first recorded publish lists the legacy module
    _go_live(layout, new)
    assert (generation_record.read_header(layout, new) or {})["unrecorded"] == ["cpu/legacy/1"]
    assert check(layout, ("cpu", "legacy/1"), thorough=True).recorded is False
    assert library_damage(layout, ["cpu"], True, [new]) == []

    later = _generation(layout, "20991231T000001.000000000-later", ["legacy/1", "planted/1"])
    generation_record.write(layout, later)  # carried forward; a newcomer without a record is not legacy
    _go_live(layout, later)
    assert (generation_record.read_header(layout, later) or {})["unrecorded"] == ["cpu/legacy/1"]
    finding = check(layout, ("cpu", "planted/1"), thorough=True)
    assert finding.recorded and finding.problems[0].startswith("no integrity record")

    (layout.view_target(later, "cpu") / "env.sh").write_text("export PYTHONPATH=/evil\n")
    assert library_damage(layout, ["cpu"], True, [later]) == [
        f"1 entry of {later} altered: targets/cpu/env.sh"]
    generation_record.path(layout, later).unlink()
    assert library_damage(layout, ["cpu"], True, [later]) == [
        f"generation {later.name} has no record ({generation_record.path(layout, later)} is missing)"]
    assert check(layout, ("cpu", "legacy/1"), thorough=True).problems  # no record to list it: damage now
