"""What a sandboxed tweak answers is hostile data: the runner writes only plain ``*.eb`` names into its
session's two tweak folders, each once, the listed easyconfig's alone in the first (which comes first in
the robot path), and only when the whole answer has that shape."""

import pytest

from builder.ebadapter.worker import _written

GOOD = {"spec": "x-2.0.eb", "files": [[0, "x-2.0.eb", "name = 'x'\n"], [1, "dep-1.0-GCCcore-14.2.0.eb", "d\n"]]}


def test_a_tweak_answer_is_written_into_the_sessions_folders_by_name(tmp_path):
    folders = (str(tmp_path / "tweaked"), str(tmp_path / "deps"))
    assert _written(GOOD, folders) == tmp_path / "tweaked" / "x-2.0.eb"
    assert (tmp_path / "tweaked" / "x-2.0.eb").read_text() == "name = 'x'\n"
    assert (tmp_path / "deps" / "dep-1.0-GCCcore-14.2.0.eb").read_text() == "d\n"


@pytest.mark.parametrize("answer", [
    {**GOOD, "files": [[0, "../x-2.0.eb", "escaped"]], "spec": "../x-2.0.eb"},
    {**GOOD, "files": [*GOOD["files"], [1, "sub/y.eb", "escaped"]]},
    {**GOOD, "files": [*GOOD["files"], [1, "..y.eb", "escaped"]]},
    {**GOOD, "files": [*GOOD["files"], [1, ".hidden.eb", "escaped"]]},
    {**GOOD, "files": [*GOOD["files"], [1, "hooks.py", "escaped"]]},
    {**GOOD, "files": [*GOOD["files"], [2, "y.eb", "escaped"]]},
    {**GOOD, "files": [*GOOD["files"], [True, "y.eb", "escaped"]]},
    {**GOOD, "files": [*GOOD["files"], [1, "y.eb", ["not", "text"]]]},
    {**GOOD, "files": [*GOOD["files"], [0, "x-2.0.eb", "again"]]},
    {**GOOD, "files": "x-2.0.eb"},
    {**GOOD, "spec": "y-2.0.eb"},
    {**GOOD, "spec": "dep-1.0-GCCcore-14.2.0.eb"},  # a dependency's folder, not the listed one's
    {**GOOD, "files": [*GOOD["files"], [0, "GCCcore-14.2.0.eb", "shadows the site's"]]},
    ["x-2.0.eb"],
], ids=lambda a: str(a)[-40:])
def test_a_tweak_answer_of_another_shape_writes_nothing(tmp_path, answer):
    folders = (str(tmp_path / "tweaked"), str(tmp_path / "deps"))
    with pytest.raises(ValueError):
        _written(answer, folders)
    assert list(tmp_path.rglob("*")) == []
