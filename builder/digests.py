"""The sha256 of an input file, as the caches' keys, a merge request's diff, build records and ``show``
compare inputs by it. A file that cannot be read has no digest (None), which no recorded digest equals."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_sha256(path: Path | str) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None
