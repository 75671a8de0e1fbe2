"""Integrity records: what they hold, and what a quick and a thorough check each find."""

import os
import shutil
from pathlib import Path

import pytest

from builder.layout import Layout
from builder.publish.integrity import check_module_file, check_prefix, read_entries, read_header, write_record


@pytest.fixture()
def recorded(tmp_path):
    layout = Layout(tmp_path / "root")
    prefix = tmp_path / "root" / "cpu" / "software" / "tool" / "1.0"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "bin" / "tool").write_text("#!/bin/sh\necho one\n")
    (prefix / "lib").symlink_to("/nowhere/at/all")  # recorded as a link, never followed
    module = tmp_path / "tool.lua"
    module.write_text('whatis("tool")\n')
    record = write_record(layout, "cpu", "tool/1.0", prefix, module)
    store = layout.module_file("cpu", "tool/1.0")
    store.parent.mkdir(parents=True)
    os.replace(module, store)
    return record, prefix, store


def header_of(record) -> dict:
    header = read_header(record)
    assert header is not None
    return header


def problems(record, thorough=True):
    return check_prefix(Path(header_of(record)["prefix"]), read_entries(record), thorough)


def test_a_record_holds_the_prefix_links_and_the_module_file(recorded):
    record, prefix, store = recorded
    header = header_of(record)
    assert header["prefix"] == str(prefix) and header["module_file"]["path"] == str(store)
    assert {e["path"]: e["type"] for e in read_entries(record)} == {"bin": "dir", "bin/tool": "file", "lib": "link"}
    assert problems(record) == [] and check_module_file(header) is None


def test_deleted_added_and_altered_entries_are_named(recorded):
    record, prefix, store = recorded
    (prefix / "bin" / "tool").unlink()
    (prefix / "bin" / "other").write_text("x")
    (prefix / "lib").unlink()
    (prefix / "lib").symlink_to("/elsewhere")
    assert problems(record) == [f"1 entry of {prefix} deleted: bin/tool", f"1 entry of {prefix} altered: lib",
                                f"1 entry of {prefix} added: bin/other"]


def test_quick_trusts_an_unchanged_mtime_thorough_reads_every_byte(recorded):
    record, prefix, store = recorded
    tool = prefix / "bin" / "tool"
    before = tool.stat()
    tool.write_text("#!/bin/sh\necho two\n")  # same size
    os.utime(tool, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert problems(record, thorough=False) == []
    assert problems(record) == [f"1 entry of {prefix} altered: bin/tool"]
    os.utime(tool)
    assert problems(record, thorough=False) == [f"1 entry of {prefix} altered: bin/tool"]


def test_an_altered_module_file_is_found_in_place(recorded):
    record, prefix, store = recorded
    with open(store, "a") as f:
        f.write('setenv("EVIL", "1")\n')
    assert "was altered since publish" in (check_module_file(header_of(record)) or "")


@pytest.mark.parametrize("thorough", [False, True])
def test_folders_replaced_by_links_to_copies_are_never_followed(recorded, tmp_path, thorough):
    """A link to an identical copy is not the recorded folder: the link is altered, what was below it
    deleted; a prefix that became such a link has lost every entry."""
    record, prefix, store = recorded
    copy = tmp_path / "copy"
    shutil.copytree(prefix / "bin", copy / "bin", symlinks=True, copy_function=shutil.copy2)
    shutil.rmtree(prefix / "bin")
    (prefix / "bin").symlink_to(copy / "bin")
    assert problems(record, thorough) == [f"1 entry of {prefix} deleted: bin/tool",
                                          f"1 entry of {prefix} altered: bin"]
    shutil.rmtree(prefix)
    prefix.symlink_to(copy)
    assert problems(record, thorough) == [f"3 entries of {prefix} deleted: bin, bin/tool, lib"]
