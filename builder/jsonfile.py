"""modlib's state on the volume as JSON files, and the files it stages there, written whole: readers on
other hosts see the old file or the new one, never half of one, and two writers (on any host) never share
a temporary file."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

from builder.errors import RunFailed


def write(path: Path, data: object, *, indent: int | None = None, sort_keys: bool = False) -> None:
    """``data`` as JSON at ``path``, by a rename of a temporary file beside it."""
    write_text(path, json.dumps(data, indent=indent, sort_keys=sort_keys))


def write_text(path: Path, text: str) -> None:
    """``text`` at ``path``, by a rename of a temporary file beside it."""
    write_bytes(path, text.encode())


def write_bytes(path: Path, data: bytes) -> None:
    """``data`` at ``path``, by a rename of a temporary file beside it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class Garbled(RunFailed):
    """A state file that is there but not what modlib wrote: torn, garbled, or JSON of another shape.
    ``str()`` names the file and the problem, one line; where nobody reports it as damage, the run fails
    with it (exit 1), never with a traceback."""

    def __init__(self, path: Path | str, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = Path(path)


def read_object(path: Path) -> dict | None:
    """The JSON object at ``path``, or None where there is no such file; Garbled where the file is not one
    (torn by a full disk, edited by hand, or a list where an object belongs)."""
    try:
        text = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        data = json.loads(text)
    except ValueError as err:
        raise Garbled(path, f"not valid JSON, torn or garbled ({err})") from None
    if not isinstance(data, dict):
        raise Garbled(path, f"holds a JSON {type(data).__name__}, not an object") from None
    return data


def read_first_line(path: Path, what: str) -> dict | None:
    """The JSON object on the first line of a JSON-lines record (its header), or None where there is no
    such file; Garbled where the line is torn or not an object: a record that is there but cannot be read
    is damage, never "no record"."""
    try:
        with open(path, "rb") as f:
            line = f.readline()
    except FileNotFoundError:
        return None
    try:
        header = json.loads(line)
    except ValueError as err:
        raise Garbled(path, f"{what} is torn or garbled ({err})") from None
    if not isinstance(header, dict):
        raise Garbled(path, f"{what} does not start with a JSON object")
    return header


def read(path: Path) -> Any:
    """The JSON at ``path``, or None where there is no such file or it is not JSON."""
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
