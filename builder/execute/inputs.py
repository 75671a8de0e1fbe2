"""The site's inputs of a run, copied onto the library volume for build pods.

Build pods see the volume and their image, nothing else: the site easyconfigs and hooks that a
run was planned with are staged under ``<root>/.modlib/inputs/<digest>`` (content-addressed, so a
run never changes the inputs of Jobs already running), and the pods' robot path points there.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from builder import jsonfile
from builder.digests import read_sha256
from builder.errors import RunFailed
from builder.execute.command import easyconfig_argument, included_easyblocks, site_env, staged_file
from builder.plan.graph import Node
from builder.read.config import Settings


def _files(settings: Settings) -> list[tuple[str, Path]]:
    """(place in the staged folder, source file) for every input a build pod reads."""
    files = [(f"hooks/{settings.hooks.name}", settings.hooks)]
    for i, folder in enumerate(settings.easyconfig_paths):
        files += [(f"easyconfigs/{i}/{p.relative_to(folder)}", p) for p in sorted(folder.rglob("*")) if p.is_file()]
    return files


def _digest(files: list[tuple[str, Path]]) -> str:
    digest = hashlib.sha256()
    for place, path in files:
        digest.update(f"{place}\0{read_sha256(path)}\n".encode())
    return digest.hexdigest()[:16]


def inputs_dir(settings: Settings) -> Path:
    return settings.layout.inputs(_digest(_files(settings)))


def _intact(folder: Path) -> bool:
    """A staged folder still holds exactly what its name is the digest of: anything that could write the
    volume (a build before isolation, a hand) may have changed it, and pods would run what it holds."""
    staged = sorted((str(p.relative_to(folder)), p) for p in folder.rglob("*") if p.is_file())
    return _digest(staged) == folder.name


def stage_inputs(settings: Settings) -> Path:
    """Copy the inputs once; a partly copied folder is never visible under its final name, and one that
    no longer matches its digest is replaced, never reused."""
    dest = inputs_dir(settings)
    if dest.is_dir():
        if _intact(dest):
            return dest
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".staging-", dir=dest.parent))
    for place, path in _files(settings):
        (tmp / place).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, tmp / place)
    tmp.chmod(0o755)
    try:
        os.rename(tmp, dest)
    except OSError:  # another run staged the same inputs first
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def pod_env(settings: Settings, inputs: Path) -> dict[str, str]:
    """A build pod's site part of the environment; the trailing ':' appends EasyBuild's own
    easyconfigs (those of the image) to the robot path. EasyBuild's locks go to the pod's emptyDir:
    the volume is read-only there outside the build's own folders, modlib already runs one build per
    node, and a SIGKILLed pod's lock must not fail the retry pod of its Job (which gets a fresh emptyDir)."""
    scratch = settings.kubernetes.scratch_path
    robot = [str(inputs / "easyconfigs" / str(i)) for i in range(len(settings.easyconfig_paths))]
    hooks = str(inputs / "hooks" / settings.hooks.name)
    return {**site_env(os.pathsep.join(robot) + os.pathsep, hooks, scratch, f"{scratch}/eb-locks"),
            "HOME": scratch, "TMPDIR": scratch, "LMOD_CMD": settings.kubernetes.lmod_cmd}


def stage_node_files(settings: Settings, nodes: list[Node]) -> None:
    """Copy what the nodes' builds name on the volume (easyconfigs that no robot path holds: tweaked ones,
    those of an entry's own robot path; included easyblocks) to where they name it, written whole, then
    renamed; an easyconfig that changed since it was planned is never built from."""
    for node in nodes:
        if easyconfig_argument(settings, node) != node.easyconfig.name:
            if read_sha256(node.easyconfig) != node.sha256:
                raise RunFailed(f"{node.easyconfig}: changed since it was planned; plan again")
            _stage(node.easyconfig, staged_file(settings.layout, node.easyconfig))
        for easyblock in included_easyblocks(node):
            _stage(easyblock, staged_file(settings.layout, easyblock))


def _stage(source: Path, dest: Path) -> None:
    if not dest.is_file():  # named by its content: one already there holds the same bytes
        jsonfile.write_bytes(dest, source.read_bytes())
