"""Publication: a new generation of the live view, swapped in with one symlink rename.

What a notebook sees (module files, spider cache, featured index, the files it sources) lives in
``<root>/views/<generation>``, and notebooks reach it only through ``<root>/live``. A publish builds
a complete new generation beside the old one (module files are hard links to the store, which is
only ever changed by renames, so old generations keep their bytes), then renames a new symlink over
``live``: readers see the old view or the new one, never a mix. A publish killed half-way leaves an
unreferenced folder that the next publish removes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from pathlib import Path

from builder.layout import Layout
from builder.publish import featured, lmod
from builder.publish.live import read_manifest
from builder.publish.notebook_env import env_sh, lmodrc, modulepath
from builder.read.config import Settings

#: Generations kept besides the live one, for shells that resolved ``live`` a moment before a swap.
KEEP_PREVIOUS = 2


def inputs_digest(settings: Settings) -> str:
    """Everything a view is made from: the config and the store's module files."""
    digest = hashlib.sha256(settings.config_file.read_bytes())
    for tree in sorted({t.tree for t in settings.targets.values()}):
        base = settings.layout.store(tree)
        for path in sorted(base.rglob("*")) if base.is_dir() else []:
            st = path.lstat()
            digest.update(f"{path.relative_to(settings.root)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def current_inputs(layout: Layout) -> str | None:
    try:
        return json.loads(layout.view_inputs(layout.live()).read_text())["digest"]
    except (OSError, ValueError, KeyError):
        return None


def _link_tree(src: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for path in sorted(src.rglob("*")) if src.is_dir() else []:
        target = dest / path.relative_to(src)
        if path.is_symlink():
            target.symlink_to(os.readlink(path))
        elif path.is_dir():
            target.mkdir(exist_ok=True)
        else:
            os.link(path, target)


def _modulerc(settings: Settings, gen: Path, trees: list[str]) -> list[str]:
    """Admins' defaults and retirements as Lmod .modulerc.lua files, in the tree that holds each module."""
    lines: dict[Path, list[str]] = {}
    wanted = [(f"{name}/{version}", f'module_version("{name}/{version}", "default")')
              for name, version in settings.defaults]
    wanted += [(module, f'hide_version("{module}")') for module in settings.hidden]
    warnings = []
    for module, line in wanted:
        homes = [settings.layout.view_tree(gen, t) for t in trees
                 if (settings.layout.view_tree(gen, t) / f"{module}.lua").is_file()]
        if not homes:
            warnings.append(f"modules: {module} is not published; its default/hidden setting waits for it")
        for home in homes:
            lines.setdefault(home / module.split("/")[0] / ".modulerc.lua", []).append(line)
    for path, content in lines.items():
        path.write_text("\n".join(content) + "\n")
    return warnings


def _moduleclass(settings: Settings, gen: Path, path: Path) -> str:
    """The EasyBuild moduleclass recorded when the module file at ``path`` (in ``gen``) was stored."""
    for tree in {t.tree for t in settings.targets.values()}:
        modules = settings.layout.view_tree(gen, tree)
        if path.is_relative_to(modules):
            module = str(path.relative_to(modules))[: -len(".lua")]
            return (read_manifest(settings.layout, tree, module) or {}).get("moduleclass", "")
    return ""


def _target_files(settings: Settings, gen: Path, name: str) -> list[str]:
    layout = settings.layout
    folder = layout.view_target(gen, name)
    paths = modulepath(settings, name, base=gen)
    live = layout.live()
    lmod.build_spider_cache(settings.lmod_prefix, paths, folder / "cache", seen_as=(f"{gen}/", f"{live}/"))
    (folder / "lmodrc.lua").write_text(lmodrc(lmod.default_lmodrc(settings.lmod_prefix),
                                              layout.view_target(live, name) / "cache"))
    (folder / "env.sh").write_text(env_sh(settings, name))
    gpu = [layout.view_tree(gen, t) for t in settings.layered_trees(settings.target(name))
           if settings.target_of_tree(t).kind == "cuda"]
    featuring = featured.feature(settings, name, lmod.spider_json(settings.lmod_prefix, paths), gpu,
                                 lambda path: _moduleclass(settings, gen, path))
    featured.write(featuring, folder)
    return featuring.warnings


def publish_view(settings: Settings) -> tuple[Path, list[str]]:
    """Make and swap in a new generation; returns it and the warnings for the admin."""
    layout = settings.layout
    gen = layout.views() / f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:8]}"
    trees = sorted({t.tree for t in settings.targets.values()})
    for tree in trees:
        _link_tree(layout.store(tree), layout.view_tree(gen, tree))
    warnings = _modulerc(settings, gen, trees)
    for name in settings.targets:
        warnings += _target_files(settings, gen, name)
    layout.view_inputs(gen).write_text(json.dumps({"digest": inputs_digest(settings)}) + "\n")
    _swap(layout, gen)
    _collect_garbage(layout, gen)
    return gen, warnings


def _swap(layout: Layout, gen: Path) -> None:
    tmp = layout.root / f".live-{uuid.uuid4().hex[:8]}"
    tmp.symlink_to(os.path.relpath(gen, layout.root))
    os.replace(tmp, layout.live())


def _collect_garbage(layout: Layout, current: Path) -> None:
    others = sorted((p for p in layout.views().iterdir() if p != current), reverse=True)
    for old in others[KEEP_PREVIOUS:]:
        shutil.rmtree(old, ignore_errors=True)
