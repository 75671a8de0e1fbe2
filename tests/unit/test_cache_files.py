"""The cache folder's upkeep: bounded, most recently used kept, and safe beside other processes that
write, read and prune the same folder (real processes, real files)."""

import hashlib
import json
import multiprocessing
import os
import random
import time
from pathlib import Path

import pytest

from builder import jsonfile
from builder.cache_files import SECRET, prune, read_entry, remove, secret, sign, signed

HOUR = 3600


def entry(folder, name, age_s, size=10):
    path = folder / name
    path.write_text("x" * size)
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


def test_prune_keeps_the_most_recently_used_of_each_kind(tmp_path):
    for i in range(20):
        entry(tmp_path, f"plan-{i:032x}.json", age_s=i * 60)
        entry(tmp_path, f"parse-{i:024x}.json", age_s=i * 60 + 30)
        entry(tmp_path, f"valid-{i:064x}.json", age_s=i * 60 + 45)
    other = [entry(tmp_path, "notes.txt", 10 * HOUR), entry(tmp_path, ".plan-00.json.1234abcd", 60),
             entry(tmp_path, ".parse-00.json.1234abcd", 60)]
    abandoned = [entry(tmp_path, ".plan-01.json.1234abcd", 2 * HOUR),
                 entry(tmp_path, ".valid-01.json.1234abcd", 2 * HOUR),
                 entry(tmp_path, ".prune-plan-01.json.5678abcd", 2 * HOUR)]
    prune(tmp_path, max_per_kind=5)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted([f"plan-{i:032x}.json" for i in range(5)] + [f"parse-{i:024x}.json" for i in range(5)]
                          + [f"valid-{i:064x}.json" for i in range(5)] + [p.name for p in other])
    assert not any(p.exists() for p in abandoned)


def test_prune_bounds_the_bytes_and_keeps_the_newest_entry(tmp_path):
    for i in range(6):
        entry(tmp_path, f"plan-{i:04x}.json", age_s=i * 60, size=1000)
    prune(tmp_path, max_bytes=3500)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"plan-{i:04x}.json" for i in range(3)]
    prune(tmp_path, max_bytes=10)
    assert [p.name for p in tmp_path.iterdir()] == ["plan-0000.json"]


def test_a_read_marks_an_entry_used_at_most_hourly(tmp_path):
    old, recent = entry(tmp_path, "plan-01.json", 2 * HOUR), entry(tmp_path, "plan-02.json", 600)
    recent_mtime = recent.stat().st_mtime
    assert read_entry(old) == read_entry(recent) == b"x" * 10
    assert time.time() - old.stat().st_mtime < 60
    assert recent.stat().st_mtime == recent_mtime
    entry(tmp_path, "plan-03.json", 60)
    prune(tmp_path, max_per_kind=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan-01.json", "plan-03.json"]


def test_an_entry_rewritten_after_it_was_judged_old_stays(tmp_path):
    path = entry(tmp_path, "plan-01.json", 2 * HOUR)
    judged = os.lstat(path)
    jsonfile.write(path, {"new": True})  # another run stores a fresh entry under the same name
    remove(path, judged)
    assert json.loads(path.read_text()) == {"new": True}
    remove(path, os.lstat(path))
    assert list(tmp_path.iterdir()) == []


def _digest(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()


def _race(folder: str, seed: int, rounds: int) -> tuple[int, int]:
    """Store, prune and read entries as concurrent runs do; every read is whole and self-consistent or
    a miss. Returns (hits, misses)."""
    rng, hits, misses = random.Random(seed), 0, 0
    for _ in range(rounds):
        body = f"{seed}-{rng.random()}" * rng.randint(1, 2000)
        jsonfile.write(Path(folder) / f"plan-{rng.randrange(6):032x}.json", {"body": body, "digest": _digest(body)})
        prune(Path(folder), max_per_kind=2)
        try:
            stored = json.loads(read_entry(Path(folder) / f"plan-{rng.randrange(6):032x}.json"))
        except FileNotFoundError:
            misses += 1
            continue
        assert stored["digest"] == _digest(stored["body"]), "a read saw a torn or mixed entry"
        hits += 1
    return hits, misses


def test_concurrent_stores_prunes_and_reads(tmp_path):
    with multiprocessing.get_context("fork").Pool(4) as pool:
        results = pool.starmap(_race, [(str(tmp_path), seed, 150) for seed in range(4)])
    assert sum(h for h, _ in results) > 0
    names = [p.name for p in tmp_path.iterdir()]
    assert len(names) <= 2 + 4 and all(n.startswith("plan-") for n in names), names  # no temp or private file left
    prune(tmp_path, max_per_kind=2)
    assert len(list(tmp_path.iterdir())) == 2


def _secret_in_new_process(folder: str) -> bytes | None:
    return secret(Path(folder))


def test_the_secret_is_made_once_whole_and_private(tmp_path):
    """Eight processes asking a fresh folder at once all get one secret: 32 random bytes, mode 0600."""
    folder = tmp_path / "cache"
    with multiprocessing.get_context("fork").Pool(8) as pool:
        got = pool.map(_secret_in_new_process, [str(folder)] * 8)
    made = folder / SECRET
    assert set(got) == {made.read_bytes()} and len(made.read_bytes()) == 32
    assert made.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in folder.iterdir()) == [SECRET]  # no private name left behind


def test_a_secret_others_could_read_or_a_link_is_not_used(tmp_path):
    """A secret that another user could read, or a link in its place, might be known to whoever planted it:
    signed entries are then neither read nor written."""
    good, readable, linked = (tmp_path / name for name in ("good", "readable", "linked"))
    for folder, mode in ((good, 0o600), (readable, 0o640)):
        folder.mkdir()
        (folder / SECRET).write_bytes(os.urandom(32))
        (folder / SECRET).chmod(mode)
    linked.mkdir()
    (linked / SECRET).symlink_to(good / SECRET)
    assert secret(good) == (good / SECRET).read_bytes()
    assert (secret(readable), secret(linked)) == (None, None)


def test_an_entry_signed_under_one_secret_or_for_other_parts_does_not_verify():
    one, other = os.urandom(32), os.urandom(32)
    mac = sign(one, b"parse-x.json", b"app.eb:abc", b"{}")
    assert signed(one, mac, b"parse-x.json", b"app.eb:abc", b"{}")
    assert not signed(other, mac, b"parse-x.json", b"app.eb:abc", b"{}")
    assert not signed(one, mac, b"parse-x.json", b"app.eb:abcd", b"{}")
    assert not signed(one, mac, b"parse-x.json", b"app.eb:ab", b"c{}")  # parts are length-prefixed
    assert not signed(one, hashlib.sha256(b"{}").hexdigest(), b"{}")


def test_a_fifo_or_link_under_an_entrys_name_is_a_miss_not_a_hang(tmp_path):
    """Whoever can write the folder can plant these: a reader that opened the FIFO would wait forever."""
    os.mkfifo(tmp_path / "plan-01.json")
    (tmp_path / "target").write_text("{}")
    (tmp_path / "parse-01.json").symlink_to(tmp_path / "target")
    for name in ("plan-01.json", "parse-01.json"):
        with pytest.raises(OSError):
            read_entry(tmp_path / name)
