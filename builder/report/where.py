"""``modlib status --where KEY=VALUE`` / ``KEY!=VALUE``: published modules by what they were built with.

The question sites ask after a GPU generation arrives ("which modules were built without compute
capability 9.0?") is answered from each published module's build record (the run that stored it, as
its manifest names it), not by grepping logs. KEY is an option ``eb`` knows, as library.yaml and the
easystacks spell it (``cuda-compute-capabilities``, ``optarch``), or ``easybuild-version``: any other key
is bad input (a typo matched every module). A list option (or a comma-separated value) equals VALUE when
VALUE is one of its items; an option the build did not set never equals anything. An option that
applies to no build of a module's tree (its target does not set it, nor did the build) is neither
with nor without: following "rebuild what lacks 9.0" must not rebuild the cpu tree. Modules whose
record predates recorded options are listed apart: what they were built with is not known.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from builder.errors import BadInput
from builder.execute import records
from builder.plan.graph import NodeKey
from builder.publish.live import read_manifest
from builder.read.config import Settings
from builder.report.published import published_keys

_CONDITION = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_-]*)(!=|=)(.*)$")
#: Keys answered from the record itself rather than from its options.
_RECORD_KEYS = {"easybuild-version": "easybuild_version"}


@dataclass(frozen=True)
class Condition:
    key: str
    equal: bool
    value: str

    def __str__(self) -> str:
        return f"{self.key}{'=' if self.equal else '!='}{self.value}"


def parse(text: str, known: frozenset[str]) -> Condition:
    """``known``: the keys there are (``eb``'s options, from ``ebadapter.option_names``)."""
    found = _CONDITION.match(text.strip())
    if not found:
        raise BadInput("--where", f"{text!r}: expected KEY=VALUE or KEY!=VALUE (an EasyBuild option, "
                                  "such as cuda-compute-capabilities!=9.0, or easybuild-version)")
    key, op, value = found.groups()
    if key not in known and key not in _RECORD_KEYS:
        close = difflib.get_close_matches(key, [*known, *_RECORD_KEYS], n=1)
        raise BadInput("--where", f"{key!r} is not an EasyBuild option"
                                  + (f"; did you mean {close[0]!r}?" if close else " (nor easybuild-version)"))
    return Condition(key, op == "=", value)


def conditions_of(texts: list[str]) -> list[Condition]:
    """``--where`` arguments as conditions, their keys checked against ``eb``'s own options."""
    from builder.ebadapter import option_names  # here: EasyBuild is imported for --where only

    known = option_names()
    return [parse(text, known) for text in texts]


def items(value: object) -> list[str]:
    """An option's value as the items it stands for: a list's, or a comma-separated string's."""
    if value is None:
        return []
    if isinstance(value, bool):
        return [str(value).lower()]
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return [v.strip() for v in str(value).split(",")]


def text(value: object) -> str:
    return ",".join(items(value)) if value is not None else "unset"


def built_with(record: dict | None, key: str) -> tuple[bool, object]:
    """Whether the record knows what ``key`` was for its build, and the value (None: not set)."""
    if record is None:
        return False, None
    if key in _RECORD_KEYS:
        value = record.get(_RECORD_KEYS[key])
        return bool(value), value or None
    if record.get("options") is None:
        return False, None
    return True, record["options"].get(key)


def query(settings: Settings, conditions: list[Condition]) -> dict:
    """Published modules meeting every condition, those whose records cannot say, and those for whose
    tree a condition's option does not apply."""
    matched, unknown, not_applicable = [], [], []
    set_by_tree = {t.tree: {k for k, _ in t.easybuild_options} for t in settings.targets.values()}
    for key in published_keys(settings.layout, settings.trees()):
        record = _record(settings, key)
        known = [(c, *built_with(record, c.key)) for c in conditions]
        entry = {"tree": key[0], "module": key[1], "values": {c.key: text(v) for c, ok, v in known if ok}}
        if not all(ok for _, ok, _ in known):
            unknown.append(entry)
        elif any(v is None and c.key not in _RECORD_KEYS and c.key not in set_by_tree.get(key[0], set())
                 for c, _, v in known):
            not_applicable.append(entry)
        elif all((c.value in items(v)) == c.equal for c, _, v in known):
            matched.append(entry)
    return {"where": [str(c) for c in conditions], "modules": matched, "not_recorded": unknown,
            "not_applicable": not_applicable}


def _record(settings: Settings, key: NodeKey) -> dict | None:
    manifest = read_manifest(settings.layout, *key)
    return records.read(manifest["record"]) if manifest and manifest.get("record") else None
