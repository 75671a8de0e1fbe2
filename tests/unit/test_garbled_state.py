"""Torn, garbled or list-shaped state files (integrity records, manifests, last.json, run.lock, the prefixes'
markers) are one line naming the file and the problem, never a traceback; build output that is a link or
a FIFO is never followed or read."""

import json
import os
import signal
import time

import pytest

from builder.commands.status import run_in_progress
from builder.errors import RunFailed
from builder.execute import records
from builder.execute.lock import holder_gone, read_holder
from builder.jsonfile import Garbled
from builder.layout import Layout
from builder.publish import prefixes
from builder.publish.integrity import read_entries, read_header, write_record
from builder.publish.live import read_manifest

TORN = [b'{"version": 1, "tree": "cpu", "modu', b"[1, 2]\n", b"", b"\x00\xff garbage"]


@pytest.fixture()
def layout(tmp_path):
    return Layout(tmp_path / "root")


@pytest.mark.parametrize("content", TORN)
def test_a_garbled_integrity_record_is_one_line_naming_it(layout, tmp_path, content):
    prefix = tmp_path / "prefix"
    prefix.mkdir()
    (tmp_path / "m.lua").write_text("-- m\n")
    record = write_record(layout, "cpu", "m/1", prefix, tmp_path / "m.lua")
    record.write_bytes(content)
    with pytest.raises(Garbled) as err:
        read_header(record)
    assert str(err.value).startswith(f"{record}: ") and "\n" not in str(err.value)
    assert isinstance(err.value, RunFailed)  # never an internal error where nobody reports it as damage


def test_a_torn_entry_line_is_one_line_naming_the_record(layout, tmp_path):
    prefix = tmp_path / "prefix"
    (prefix / "bin").mkdir(parents=True)
    (tmp_path / "m.lua").write_text("-- m\n")
    record = write_record(layout, "cpu", "m/1", prefix, tmp_path / "m.lua")
    for tail in ('{"path": "bin", "ty\n', '["bin"]\n', '{"path": "bin", "type": "file"}\n'):
        record.write_text(record.read_text().splitlines()[0] + "\n" + tail)
        with pytest.raises(Garbled, match=str(record)):
            read_entries(record)


@pytest.mark.parametrize("content", TORN)
def test_manifests_and_last_run_that_are_not_objects_are_one_line(layout, content):
    manifest = layout.manifest("cpu", "m/1")
    manifest.parent.mkdir(parents=True)
    manifest.write_bytes(content)
    with pytest.raises(Garbled, match=f"^{manifest}: "):
        read_manifest(layout, "cpu", "m/1")
    layout.last_run().parent.mkdir(parents=True)
    layout.last_run().write_bytes(content)
    with pytest.raises(Garbled, match=f"^{layout.last_run()}: "):
        records.read_last_run(layout)
    layout.last_run().write_text(json.dumps({"built": "everything"}))
    with pytest.raises(Garbled, match="not a run summary"):
        records.read_last_run(layout)


@pytest.mark.parametrize("content", [b"[1, 2]", b'{"pid": "x", "host": ["h"], "started": "yesterday"}',
                                     b'{"pid": [1], "process_start": {}}', b'{"hol'])
def test_a_garbled_run_lock_is_reported_and_judged_by_its_heartbeat(layout, content):
    lock = layout.run_lock()
    lock.parent.mkdir(parents=True)
    lock.write_bytes(content)
    holder = read_holder(lock)
    assert holder is not None and holder_gone(holder, time.time()) is False  # fresh: not taken over yet
    assert holder_gone(holder, time.time() + 3600) is True
    shown = run_in_progress(layout)
    assert shown is not None and shown["holder"] == f"an unreadable lock ({lock})" and shown["pid"] == "?"


def test_prefix_collection_survives_garbled_markers_and_names_a_garbled_manifest(layout):
    software = layout.software("cpu")
    (software / "X-1").mkdir(parents=True)
    layout.unreferenced("cpu").write_text("[1, 2]")
    assert prefixes.collect(layout, ["cpu"], [], grace_seconds=0) == [software / "X-1"]
    layout.manifests("cpu").mkdir(parents=True)
    layout.manifest("cpu", "m/1").write_text('{"prefix": ')
    with pytest.raises(Garbled, match=str(layout.manifest("cpu", "m/1"))):
        prefixes.collect(layout, ["cpu"], [], grace_seconds=0)


def test_links_fifos_and_files_in_software_are_removed_themselves(layout, tmp_path):
    software = layout.software("cpu")
    software.mkdir(parents=True)
    precious = tmp_path / "precious"
    (precious / "keep").mkdir(parents=True)
    (software / "link").symlink_to(precious)
    os.mkfifo(software / "fifo")
    removed = prefixes.collect(layout, ["cpu"], [], grace_seconds=0)
    assert sorted(p.name for p in removed) == ["fifo", "link"]
    assert (precious / "keep").is_dir() and not os.path.lexists(software / "link")


def _alarm(signum, frame):
    raise TimeoutError("blocked on build output")


def test_scanning_an_install_never_opens_a_fifo_or_follows_a_link(layout, tmp_path):
    own = layout.prefix("cpu", "X-new")
    install = layout.install_dir(own, "X/1")
    (install / "bin").mkdir(parents=True)
    dep = layout.prefix("cpu", "Y-dep")
    (install / "bin" / "x").write_bytes(b"\0" * (3 << 20) + f"exec {dep}/Y/1/bin/y".encode())  # past a chunk
    os.mkfifo(install / "pipe")
    outside = tmp_path / "outside"
    outside.write_text(f"{layout.prefix('cpu', 'Z-not-mine')}/lib\n")
    (install / "link").symlink_to(outside)
    (install / "lib").symlink_to(tmp_path)
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(10)
    try:
        found = prefixes.references(install, prefixes.prefix_pattern(layout, ["cpu"]), own)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert found == [str(dep)]


def test_a_failed_builds_log_tail_reads_only_the_end_of_a_huge_log(tmp_path):
    log = tmp_path / "build.log"
    with open(log, "wb") as f:
        f.truncate(8 << 30)  # sparse: 8 GiB of a build's output, no line end
        f.seek(0, 2)
        f.write(b"\nlast line\n")
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(10)
    try:
        assert records.tail(str(log), lines=1) == "last line\n"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
