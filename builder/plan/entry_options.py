"""Which ``eb`` options an easystack entry may carry, and how each one reaches the plan.

``eb --easystack`` re-configures EasyBuild for every entry with the command line plus the entry's
options, then resolves that entry with ``--robot``: every option applies to the entry and to all it
pulls in, except ``hidden`` (only the listed easyconfig is installed hidden). modlib plans an entry
the same way, in an EasyBuild session configured with its options (entries with equal options share
one), and refuses every option it cannot plan as ``eb`` would, rather than build something else than
it planned.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from builder.digests import file_sha256
from builder.ebadapter import build_options
from builder.errors import BadInput

#: Options EasyBuild's ``--try-*`` machinery turns into a tweaked easyconfig (``tweak()``).
TWEAK = frozenset({"try-toolchain", "try-toolchain-name", "try-toolchain-version", "try-software-version",
                   "try-update-deps", "try-ignore-versionsuffixes", "try-amend"})

#: Options that change what the robot resolves or how modules are named: the session is configured with them.
#: ``minimal-toolchains`` picks each dependency's toolchain by the easyconfigs the robot path holds, as planning
#: sees them (without ``use-existing-modules``, which looks at the modules installed where ``eb`` runs).
RESOLVE = frozenset({"filter-deps", "hide-deps", "module-naming-scheme", "robot-paths", "include-easyblocks",
                     "include-module-naming-schemes", "include-toolchains", "experimental", "minimal-toolchains",
                     "add-system-to-minimal-toolchains"})

#: Options that name Python files EasyBuild imports while it is configured (their content counts).
INCLUDE = ("include-easyblocks", "include-module-naming-schemes", "include-toolchains")

#: Options that change only how a build runs, never the plan; passed to every ``eb`` of the entry's nodes.
BUILD = frozenset({"optarch", "cuda-compute-capabilities", "cuda-sanity-check-accept-ptx-as-devcode",
                   "cuda-sanity-check-accept-missing-ptx", "cuda-sanity-check-error-on-failed-checks",
                   "cuda-sanity-check-strict", "amdgcn-capabilities", "parallel", "set-default-module",
                   "skip-test-step", "ignore-test-failure", "skip-extensions", "debug"})

#: ``robot: false`` (EESSI's replayed stacks): ``eb`` builds the listed easyconfig alone and needs its dependencies
#: installed; modlib's library is a closed graph, so it plans them as with ``robot: true``: the same modules
#: wherever ``eb`` would succeed (each dependency listed by an entry, or published), and where ``eb`` would stop
#: with "Missing modules for dependencies", the dependencies are planned and built first. Never a session option
#: (``--disable-robot`` would leave EasyBuild without a robot path to find dependencies in).
ROBOT = "robot"

#: Option handled per listed easyconfig (dependencies stay visible, as with ``eb --hidden --robot``).
HIDDEN = "hidden"

#: The naming scheme of modlib's trees (flat ``modules/all/<name>``, what Lmod's spider and the views read).
#: Another one would mix names in one tree (and CategorizedModuleNamingScheme loops in eb's own robot).
FLAT_NAMING_SCHEMES = frozenset({"EasyBuildMNS"})

#: Options never passed to a node's own ``eb``: the tweak is already in the planned easyconfig, the node
#: names its easyconfig file exactly (the robot path finds nothing at build time), hidden is the node's.
NOT_FOR_BUILD = TWEAK | {"robot-paths", HIDDEN}

_NETWORK = ("from-pr", "from-commit", "include-easyblocks-from-pr", "include-easyblocks-from-commit", "github",
            "upload-test-report", "new-pr", "update-pr", "review-pr", "sync-", "fetch", "download")


@dataclass(frozen=True)
class EntryOptions:
    """One entry's options, split by how they reach the plan; ``session`` configures its EasyBuild session."""

    session: tuple[tuple[str, object], ...]  # RESOLVE, BUILD and TWEAK options, sorted
    hidden: bool

    @property
    def tweaks(self) -> bool:
        return any(k in TWEAK for k, _ in self.session)

    def recorded(self) -> tuple[tuple[str, object], ...]:
        """The effective options a planned node records (hidden only on the listed easyconfig's node)."""
        return tuple(sorted([*self.session, *([(HIDDEN, True)] if self.hidden else [])]))


def _refusal(option: str, value: object) -> str | None:
    """Why modlib refuses an option, or None when it plans it as ``eb`` does."""
    if any(option.startswith(net) for net in _NETWORK):
        return "it fetches from the network (GitHub) while planning; put the easyconfig in a site folder instead"
    if option == "module-naming-scheme" and str(value) not in FLAT_NAMING_SCHEMES:
        return f"modlib's trees use {', '.join(sorted(FLAT_NAMING_SCHEMES))}; {value} names modules otherwise"
    if option == ROBOT and not isinstance(value, bool):
        return "modlib plans robot: true or false only; name extra easyconfig folders with robot-paths"
    if option == "use-existing-modules":
        return "it picks dependencies' toolchains by the modules installed where eb runs; modlib plans from " \
               "easyconfigs (minimal-toolchains without it plans as eb does)"
    if option in TWEAK or option in RESOLVE or option in BUILD or option in (HIDDEN, ROBOT):
        return None
    return "modlib cannot plan it as `eb --robot` would (options it plans: " \
           f"{', '.join(sorted(TWEAK | RESOLVE | BUILD | {HIDDEN, ROBOT}))})"


def split(stack: Path, entry: str, options: dict) -> EntryOptions:
    """An entry's options, or BadInput naming the easystack, the entry and the first refused option."""
    for option, value in sorted(options.items()):
        why = _refusal(str(option), value)
        if why:
            raise BadInput(stack, f"entry {entry}: option '{option}' is not supported: {why}")
    hidden = options.get(HIDDEN, False)
    if not isinstance(hidden, bool):
        raise BadInput(stack, f"entry {entry}: option 'hidden' must be true or false, not {hidden!r}")
    check_build_options(options, f"{stack}: entry {entry}")
    return EntryOptions(session=tuple(sorted((str(k), frozen(v)) for k, v in options.items()
                                             if k not in (HIDDEN, ROBOT))), hidden=hidden)


def check_build_options(options: dict, origin: str) -> None:
    """BadInput naming ``origin`` and the option when ``eb`` would refuse a build-only option's value (planning
    never reads those, every build of the entry would fail on it)."""
    why = build_options.refusal(options)
    if why:
        raise BadInput(origin, why)


def frozen(value: object) -> object:
    """A YAML list as a tuple: a node (hashable, compared with its cached copy) holds no list."""
    return tuple(value) if isinstance(value, list) else value


def for_build(options: tuple[tuple[str, object], ...]) -> dict[str, object]:
    """A node's recorded options as its own ``eb`` takes them."""
    return {k: v for k, v in options if k not in NOT_FOR_BUILD}


def _listed_values(value: object, sep: str) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list | tuple) else [v for v in str(value).split(sep) if v]


def easyblock_files(value: object) -> list[Path]:
    """The files an ``include-easyblocks`` value names."""
    return _globbed(value)


def _globbed(value: object) -> list[Path]:
    """The files a comma-separated list of glob patterns names, as EasyBuild expands them
    (``expand_glob_paths``: ``~`` expanded, folders left out)."""
    return [Path(f) for pattern in _listed_values(value, ",")
            for f in sorted(glob.glob(os.path.expanduser(pattern))) if os.path.isfile(f)]


def included_files(options: Mapping[str, object]) -> list[Path]:
    """The Python files the ``include-*`` options name (easyblocks, toolchains, naming schemes): EasyBuild
    imports them while planning, so a plan and a parse depend on their content, not their paths."""
    return [f for option in INCLUDE for f in _globbed(options.get(option, ""))]


def included_digests(options: Mapping[str, object]) -> list[tuple[str, str | None]]:
    """Each included file with the sha256 of its content: what keys the caches of a plan that includes it."""
    return [(str(f), file_sha256(f)) for f in included_files(options)]


def named_inputs(stacks: list[Path]) -> tuple[list[Path], list[Path]]:
    """The folders (``robot-paths``) and files (``include-*``) that entries' options name: what a plan
    depends on besides modlib's own robot path. Read with YAML only when an easystack names either (a
    curated list without such options costs the plan cache nothing); a malformed one is left to the
    planner to report."""
    folders: list[Path] = []
    files: list[Path] = []
    for stack in stacks:
        try:
            text = stack.read_text()
            if "robot-paths" not in text and "include-" not in text:
                continue
            items = (yaml.safe_load(text) or {}).get("easyconfigs") or []
        except (OSError, yaml.YAMLError, AttributeError):
            continue
        for item in items:
            for spec in item.values() if isinstance(item, dict) else ():
                opts = spec.get("options") if isinstance(spec, dict) else None
                if isinstance(opts, dict):
                    folders += [Path(f) for f in _listed_values(opts.get("robot-paths", ""), os.pathsep)]
                    files += included_files(opts)
    return folders, files
