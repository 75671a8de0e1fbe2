"""This notebook session's modules as data, for the pods it starts (Dask workers, pipeline steps).

Every publish copies this file (standard library only) to ``<root>/live/python/modlib_session.py``, and
env.sh names it in ``MODLIB_SESSION_PY``. A kernel runs it without putting anything on ``sys.path`` (an
import of a folder on sys.path would shadow packages of the same name for everything after it)::

    import os, runpy
    modlib_session = runpy.run_path(os.environ["MODLIB_SESSION_PY"])
    modlib_session["session"]()      # {"root", "mount", "target", "modules", "not_from_library", "pod_patch"}
    modlib_session["pod_patch"]()    # {"volumes", "volumeMounts", "command"}

Both ask ``modlib-exec --print-session`` (``<root>/live/bin/``, builder/publish/session.py) with this
process's environment, which holds what kernel.sh and in-kernel loads made it (MODLIB_TARGET,
LOADEDMODULES, _LMFILES_): one implementation, the terminal's, and none of it guessed here. It runs in
kernels, not in modlib, so it uses subprocess itself rather than builder/proc.py.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

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
