"""Why entries cannot be planned, all at once: an admin who fixes one missing dependency per run
learns of the next only then, and a missing dependency alone does not say which entry wanted it.

Each problem is a dependency ``eb --robot`` cannot resolve either (it reports them only after
resolving everything else, or loops to its iteration limit on a hidden one): no easyconfig in any
robot path, or an easyconfig that installs another module than the one asked for (``hidden = True``
in a dependency's easyconfig, a file whose name does not match its content). Every one is named with
the chain from its easystack entry, ``netCDF/… → HDF5/… → Python/3.x (…)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from builder import ebadapter


def chains(entries: list[Path], parsed: Mapping[Path, ebadapter.ParsedEasyconfig]) -> dict[Path, list[Path]]:
    """The shortest chain of easyconfigs from an entry (the earliest listed) to each parsed easyconfig."""
    chain = {path: [path] for path in entries}
    level = list(dict.fromkeys(entries))
    while level:
        following = []
        for path in level:
            for dep in parsed[path].deps:
                if dep.easyconfig is not None and dep.easyconfig not in chain:
                    chain[dep.easyconfig] = [*chain[path], dep.easyconfig]
                    following.append(dep.easyconfig)
        level = following
    return chain


def _problem(eb: ebadapter.Session, dep: ebadapter.Dependency,
             parsed: Mapping[Path, ebadapter.ParsedEasyconfig]) -> str | None:
    if dep.easyconfig is None:
        return "no easyconfig in any robot path" + eb.did_you_mean(f"{dep.name}-{dep.version}.eb", dep.name)
    module = parsed[dep.easyconfig].module
    if module == dep.module or (dep.hidden and eb.hidden_name(module) == dep.module):
        return None
    hint = " (it sets hidden = True: list it under hiddendependencies)" if eb.hidden_name(dep.module) == module \
        else ""
    return f"its easyconfig {dep.easyconfig} installs {module}{hint}"


def problems(eb: ebadapter.Session, entries: list[Path],
             parsed: Mapping[Path, ebadapter.ParsedEasyconfig]) -> list[str]:
    """Every dependency that cannot be planned, once each, with its chain from an entry."""
    found: dict[str, str] = {}
    for path, chain in chains(entries, parsed).items():
        for dep in parsed[path].deps:
            problem = None if dep.module in found else _problem(eb, dep, parsed)
            if problem:
                names = [parsed[p].module for p in chain]
                found[dep.module] = " → ".join([*names, dep.module]) + f" ({problem})"
    return list(found.values())
