"""A cache of parsed easyconfigs, so that scheduled runs that find nothing new cost next to nothing.

An entry is keyed by the easyconfig's content and file name; the cache file itself by everything
else that can change a parse (EasyBuild's version, the hooks file's text, the robot path order, the
options that change parsing, the content of the files ``include-*`` options name, EasyBuild's
configuration files and ``EASYBUILD_*`` variables). Robot look-ups of dependencies are not cached:
they depend on which files exist, and EasyBuild redoes them cheaply. Every entry carries its MAC
under the cache folder's secret, over the cache file's name, the entry's key and the parse
(``cache_files.py``); one that does not match (a torn write, an edit by hand, an entry forged or
moved from another key by whoever can write the folder) is dropped and parsed again, never trusted.
Cache files are written whole and pruned to the most recently used.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from builder import ebadapter, jsonfile
from builder.cache_files import prune, read_entry, secret, sign, signed
from builder.plan.eb_inputs import easybuild_inputs

#: 2: entries carry a MAC (``mac``) instead of a plain digest.
FORMAT = 2


def _digest(data: object) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def entry_key(path: Path, sha256: str) -> str:
    """An entry's key: the easyconfig's file name and the sha256 of its content."""
    return f"{path.name}:{sha256}"


class ParseCache:
    def __init__(self, folder: Path | None, context: dict):
        name = f"parse-{_digest({'format': FORMAT, **context, 'configuration': easybuild_inputs()})[:24]}.json"
        self.secret = secret(folder) if folder else None
        self.path: Path | None = folder / name if folder and self.secret else None
        self.entries: dict[str, dict] = {}
        self.dirty = False
        if self.path is not None:
            self._load(self.path)

    def _signed_parts(self, key: str, parsed: object) -> tuple[bytes, ...]:
        """What an entry's MAC covers: the cache file (its context), the entry's key and the parse."""
        assert self.path is not None
        return self.path.name.encode(), key.encode(), json.dumps(parsed, sort_keys=True).encode()

    def _load(self, path: Path) -> None:
        try:
            stored = json.loads(read_entry(path))
        except (OSError, ValueError):
            return  # missing or unreadable as a whole: start empty
        assert self.secret is not None
        for key, entry in (stored.get("entries", {}) if isinstance(stored, dict) else {}).items():
            parsed = entry.get("parsed") if isinstance(entry, dict) else None
            if isinstance(parsed, dict) and signed(self.secret, entry.get("mac"), *self._signed_parts(key, parsed)):
                self.entries[key] = parsed
            else:
                self.dirty = True  # rewrite the file without the entry that failed its MAC

    def get(self, eb: ebadapter.Session, key: str, path: Path) -> ebadapter.ParsedEasyconfig | None:
        """The cached parse of ``path`` with its dependencies looked up again, or None (then parse it)."""
        data = self.entries.get(key)
        if data is None:
            return None
        try:
            return eb.from_data(data, path)  # a dependency not found is reported by the planner, as a fresh parse's is
        except ValueError:
            return None

    def put(self, key: str, parsed: ebadapter.ParsedEasyconfig) -> None:
        self.entries[key] = parsed.data()
        self.dirty = True

    def save(self) -> None:
        if self.path is None or not self.dirty:
            return
        assert self.secret is not None
        entries = {k: {"parsed": v, "mac": sign(self.secret, *self._signed_parts(k, v))}
                   for k, v in self.entries.items()}
        try:
            jsonfile.write(self.path, {"format": FORMAT, "entries": entries})
            prune(self.path.parent)
        except OSError:
            pass  # a cache that cannot be written costs the next run its speed, never its result
