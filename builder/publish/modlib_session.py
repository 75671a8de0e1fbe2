"""This notebook session's modules as data, for the pods it starts (Dask workers, pipeline steps).

Every publish copies this file (standard library only) to ``<root>/live/python/modlib_session.py``, and
env.sh names it in ``MODLIB_SESSION_PY``. A kernel runs it without putting anything on ``sys.path`` (an
import of a folder on sys.path would shadow packages of the same name for everything after it)::

    import os, runpy
    modlib_session = runpy.run_path(os.environ["MODLIB_SESSION_PY"])
    modlib_session["session"]()      # {"root", "mount", "target", "modules", "not_from_library", "pod_patch"}
    modlib_session["pod_patch"]()    # {"volumes", "volumeMounts", "command"}
    modlib_session["patch_pod"](pod)  # a Pod manifest (or its spec) that runs with this session's modules
    modlib_session["check_workers"](client)  # a dask.distributed client: raise if a worker's modules differ

Both ask ``modlib-exec --print-session`` (``<root>/live/bin/``, builder/publish/session.py) with this
process's environment, which holds what kernel.sh and in-kernel loads made it (MODLIB_TARGET,
LOADEDMODULES, _LMFILES_): one implementation, the terminal's, and none of it guessed here. It runs in
kernels, not in modlib, so it uses subprocess itself rather than builder/proc.py.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
from pathlib import Path
from typing import Any

#: The launcher of the same generation (run through ``live`` when this file was).
MODLIB_EXEC = Path(__file__).parent.parent / "bin" / "modlib-exec"


def session() -> dict:
    """The library's mount, the target, the modules Lmod loaded (in load order) and the pod patch."""
    done = subprocess.run([str(MODLIB_EXEC), "--print-session"], capture_output=True, text=True,
                          env=dict(os.environ), check=False)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip() or f"{MODLIB_EXEC} --print-session failed ({done.returncode})")
    return json.loads(done.stdout)


def pod_patch() -> dict:
    """What makes a pod run as this session: ``volumes`` for the pod's spec, ``volumeMounts`` for each
    container, and ``command`` to put before each container's own command."""
    return session()["pod_patch"]


def patch_pod(pod: dict) -> dict:
    """A copy of ``pod`` (a Pod manifest, or the ``spec`` of one or of a pod template) whose containers run
    with this session's modules: the library's volume, mounted read-only in each container, and the
    launcher before each container's command. A container with ``args`` alone (the image's entrypoint
    runs them, as dask-kubernetes' pod templates have it) gets the launcher as its command: the args
    become what the launcher execs, so the image's entrypoint no longer runs."""
    patch = pod_patch()
    patched = copy.deepcopy(pod)
    spec = patched["spec"] if "spec" in patched else patched
    names = {volume["name"] for volume in patch["volumes"]}
    spec["volumes"] = [v for v in spec.get("volumes", []) if v["name"] not in names] + patch["volumes"]
    for container in spec["containers"]:
        mounts = [m for m in container.get("volumeMounts", []) if m["name"] not in names]
        container["volumeMounts"] = mounts + patch["volumeMounts"]
        container["command"] = patch["command"] + container.get("command", [])
    return patched


def mismatches(client: Any) -> dict[str, dict]:
    """The dask.distributed workers of ``client`` whose modules or target differ from this session's, by
    address: ``{"target", "missing", "extra"}`` (modules this session has loaded and the worker has not,
    and the reverse). A worker that imports another version than the notebook fails in ways that do not
    name the cause (unpickling errors, wrong results); this names it before work is sent. Each worker
    reports its own environment (one ``client.run`` of ``_environment`` there), what Lmod loaded in it."""
    mine = session()
    expected = set(mine["modules"]) | set(mine["not_from_library"])
    found = {}
    for address, (target, loaded) in client.run(_environment).items():
        theirs = set(filter(None, (loaded or "").split(":")))
        if theirs != expected or target != mine["target"]:
            found[address] = {"target": target, "missing": sorted(expected - theirs),
                              "extra": sorted(theirs - expected)}
    return found


def _environment() -> tuple[str | None, str | None]:
    """A worker's target and loaded modules, read together in one call (a worker that joins between two
    calls would answer one and not the other)."""
    return os.getenv("MODLIB_TARGET"), os.getenv("LOADEDMODULES")


def check_workers(client: Any) -> None:
    """Raise RuntimeError naming each worker of ``client`` that does not run this session's modules."""
    found = mismatches(client)
    if not found:
        return
    lines = [f"{address}: target {seen['target']!r}, missing {seen['missing']}, extra {seen['extra']}"
             for address, seen in sorted(found.items())]
    raise RuntimeError("Dask workers that do not run this session's modules:\n  " + "\n  ".join(lines))
