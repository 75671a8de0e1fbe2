"""The featured-modules index: what the notebook UI shows first, built from what is really published.

Lmod's own catalogue (``spider -o jsonSoftwarePage``) of the featured names in the new generation is
the source, so the index can only name modules that load. A featured entry that is not published, or that was built for
another Python than the notebook's, gives a warning and is left out: never a broken index.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

from builder.read.config import Featured, Settings

# EasyBuild writes either "lib/python3.11/site-packages" or pathJoin(root, "lib", "python3.11", "site-packages")
_PYTHON_DIR = re.compile(r"""lib["',\s/]+python(\d+\.\d+)["',\s/]+site-packages""")


@dataclass
class Featuring:
    index: dict
    links: dict[str, Path]  # featured-tree entry (Name/version.lua) -> module file in the generation
    launchers: dict[str, dict] = field(default_factory=dict)  # name -> its settings and the module it loads
    warnings: list[str] = field(default_factory=list)


def python_minor(module_text: str) -> str | None:
    """The Python minor version a module's packages were built for, from the site-packages it adds."""
    found = _PYTHON_DIR.search(module_text)
    return found.group(1) if found else None


def pick(package: dict, wanted: Featured) -> dict | None:
    """The version of a catalogue package an entry means: its own version, else Lmod's default, else the newest."""
    versions = package.get("versions", [])
    if wanted.version:
        return next((v for v in versions if wanted.version in (v["versionName"], v["full"])), None)
    default = [v for v in versions if v.get("markedDefault")]
    return default[0] if default else max(versions, key=lambda v: v.get("wV", ""), default=None)


def feature(settings: Settings, target: str, catalogue: list[dict], gpu_dirs: list[Path],
            moduleclass: Callable[[Path], str]) -> Featuring:
    """``moduleclass`` gives a module file's EasyBuild moduleclass, the category when the entry names none."""
    packages = {p["package"]: p for p in catalogue}
    out = Featuring(index={"target": target, "generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                           "modules": []}, links={})
    for wanted in (f for f in settings.featured if not f.targets or target in f.targets):
        package = packages.get(wanted.name) or {}
        version = pick(package, wanted) if package else None
        label = wanted.name + (f"/{wanted.version}" if wanted.version else "")
        if version is None:
            out.warnings.append(f"featured {label} is not published in target '{target}'")
            continue
        path = Path(version["path"])
        built_for = python_minor(path.read_text())
        if built_for and settings.python_version and built_for != settings.python_version:
            out.warnings.append(f"featured {version['full']} was built for Python {built_for}, the notebooks "
                                f"run {settings.python_version}: left out")
            continue
        out.index["modules"].append({
            "module": version["full"], "name": wanted.name, "version": version["versionName"],
            "description": (version.get("description") or package.get("description") or "").strip(),
            "homepage": package.get("url") or "", "category": wanted.category or moduleclass(path),
            "gpu": any(path.is_relative_to(d) for d in gpu_dirs), "load": f"module load {version['full']}"})
        out.links[version["full"] + ".lua"] = path
        if wanted.launcher:
            out.launchers[wanted.launcher] = {**asdict(settings.launchers[wanted.launcher]), "module": version["full"]}
    validate(out.index)
    return out


def validate(index: dict) -> None:
    """Checked at publish only: ``status`` imports this module, and jsonschema costs it 40 ms."""
    import jsonschema

    schema = json.loads(resources.files("builder.schemas").joinpath("featured.schema.json").read_text())
    jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(index)


def write(featuring: Featuring, folder: Path) -> None:
    """featured.json, the featured tree of links (`module use` of it lists only these), jupyter-lmod's config,
    the launchers."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "featured.json").write_text(json.dumps(featuring.index, indent=2, sort_keys=True) + "\n")
    for entry, target in featuring.links.items():
        link = folder / "featured" / entry
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(target, link.parent))
    # jupyter-lmod 5.3 takes a list per launcher and shows the tile when a loaded module's name, lowercased,
    # starts with one of them (a plain string fails its config validation)
    config = {"Lmod": {"launcher_pins": sorted(featuring.launchers),
                       "launcher_module_map": {name: [launcher["module"].lower()]
                                               for name, launcher in sorted(featuring.launchers.items())}}}
    (folder / "jupyter_server_config.json").write_text(json.dumps(config, indent=2) + "\n")
    # what the notebook image's hook gives jupyter-server-proxy: each launcher with the module it loads
    (folder / "launchers.json").write_text(json.dumps(featuring.launchers, indent=2, sort_keys=True) + "\n")


def reuse(previous: Path, folder: Path) -> None:
    """No featured name changed: the previous generation's index, links and jupyter config, unchanged."""
    for name in ("featured.json", "jupyter_server_config.json", "launchers.json"):
        os.link(previous / name, folder / name)
    if (previous / "featured").is_dir():
        shutil.copytree(previous / "featured", folder / "featured", symlinks=True)
