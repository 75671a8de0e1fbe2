"""The sha256 of an input file, as the caches' keys, a merge request's diff, build records and ``show``
compare inputs by it. A file that cannot be read has no digest (None), which no recorded digest equals.
modlib's own code is an input too: ``code_files`` finds the files a module's behaviour depends on."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

#: An import statement anywhere in a source file (a function's own imports too): ``from M import N, ...``
#: (parenthesised over lines or not) or ``import M, ...``.
_IMPORT = re.compile(r"^[ \t]*(?:from[ \t]+([\w.]+)[ \t]+import[ \t]+(\([^)]*\)|[^\n#]*)|import[ \t]+([^\n#]*))", re.M)


def file_sha256(path: Path | str) -> str | None:
    try:
        return read_sha256(path)
    except OSError:
        return None


def read_sha256(path: Path | str) -> str:
    """For a file that must be there (a planned easyconfig, a file staged for a build): OSError if not."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _imported(source: str) -> set[str]:
    """The builder modules a source file may import: ``from M import N`` names M and M.N (N may be a module
    or a name in M), ``import M`` names M. A name that is no module is dropped by ``code_files``."""
    names: set[str] = set()
    for origin, items, plain in _IMPORT.findall(source):
        listed = (items.strip("()") if origin else plain).replace("\n", " ").split(",")
        words = [item.split()[0] for item in listed if item.strip()]
        names |= {origin, *(f"{origin}.{word}" for word in words)} if origin else set(words)
    return {name for name in names if name == "builder" or name.startswith("builder.")}


def code_files(module: str) -> tuple[Path, ...]:
    """The source of builder ``module`` and of every builder module it imports at any depth, with the
    packages they sit in: what a cache or a generation made by that code depends on. Found from their
    import statements, not kept by hand, so that a new module counts as soon as ``module`` reaches it; read
    as text (``ast`` would cost a cached plan a tenth of its time)."""
    root = Path(__file__).resolve().parent.parent
    seen: set[str] = set()
    files: list[Path] = []
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        base = root.joinpath(*name.split("."))
        path = next((p for p in (base.with_suffix(".py"), base / "__init__.py") if p.is_file()), None)
        if path is not None:  # else a class or function imported from a module
            files.append(path)
            todo += [name.rpartition(".")[0], *_imported(path.read_text())]
    return tuple(sorted(files))
