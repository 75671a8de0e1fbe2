"""`modlib remove`: take a module out of the library on purpose, the one way a published module leaves.

Dropping a module from the curated lists keeps it published (audits need the old tools); `remove`
unpublishes it: its module file leaves the store, a new generation without it goes live, and its
prefix expires after the grace period (builder/publish/prefixes.py), so kernels that loaded it keep
working meanwhile. A module that another published module loads is refused: removing it would break
the dependent.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from builder.commands.run import check_library
from builder.commands.verify import store_modules
from builder.errors import BadInput
from builder.execute.lock import RunLock
from builder.publish import prefixes
from builder.publish.live import retract_node_files
from builder.publish.view import generations, publish_view
from builder.read.config import Settings
from builder.report.published import resolve

#: How EasyBuild's Lua module files load their dependencies.
_LOADS = re.compile(r"""(?:depends_on|load)\(\s*["']([^"']+)["']""")


def dependents(settings: Settings, module: str) -> list[str]:
    """Published modules whose module files load ``module``."""
    layout = settings.layout
    return [f"{tree}/{name}" for tree in settings.trees() for name in store_modules(layout, tree)
            if module in _LOADS.findall(layout.module_file(tree, name).read_text(errors="replace"))]


def remove(settings: Settings, modules: list[str], report: Callable[[str], None]) -> None:
    """Unpublish ``modules`` under the run lock and publish the view without them. A name is taken as
    ``show`` and ``logs`` take it (full, short, bare software name, after its tree), and only ever matched
    against the store's names (never used as a path: ``../../x`` would name a file outside the library);
    every tree is searched for modules that load it."""
    layout = settings.layout
    check_library(settings)
    with RunLock(layout, holder="modlib remove", warn=report) as lock:
        stored = [(tree, module) for tree in settings.trees() for module in store_modules(layout, tree)]
        wanted = [resolve(stored, name) for name in modules]
        for _, module in wanted:
            users = [d for d in dependents(settings, module) if tuple(d.split("/", 1)) not in wanted]
            if users:
                raise BadInput(module, f"published modules load it: {', '.join(users)}; remove them first")
        for tree, module in wanted:
            lock.fence()
            retract_node_files(layout, tree, module)
            report(f"removed {tree}/{module} from the store; its prefix expires after "
                   f"{settings.grace_period_hours:g} h")
        lock.fence()
        gen, _ = publish_view(settings)
        report(f"published {gen.name}")
        # as at the end of a run: a prefix that the generations this publish let go named starts its grace
        # period now, so no later build takes it for a killed build's leftovers
        lock.fence()
        for gone in prefixes.collect(layout, settings.trees(), generations(layout), settings.grace_period_hours * 3600):
            report(f"removed {gone}: no published module named it for {settings.grace_period_hours:g} h")
