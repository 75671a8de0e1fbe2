"""The catalogue page: every published module of a target, as one self-contained HTML file in the view.

Users ask "is X in the library, which version, how do I load it, what is inside it", and admins
"what was it built from, when": the page answers both without a server (a notebook opens it from the
volume, a web server can serve ``live/`` as it is). It lives in the generation, so it changes in the
same atomic swap as the module files and can only list modules that load.

What it says of a module comes from Lmod's software page (what ``spider -o jsonSoftwarePage`` prints:
description, versions, the default, properties, the extensions a module ``provides``), made from the
very walk that updates the tree's spider cache (builder/publish/spider_cache.py), and from the
module's manifest and build record (easyconfig and its digest, when and where it was built). A
publish costs what changed: each tree keeps that data per name in ``catalogue.json``, and only the
changed names are walked and read from their records again; the page is then rendered from the
trees' data (no Lmod).
"""

from __future__ import annotations

import base64
import hashlib
import html
import os
import re
import time
from importlib import resources
from pathlib import Path
from string import Template

from builder import jsonfile
from builder.layout import Layout
from builder.publish.live import read_manifest
from builder.read.config import Settings
from builder.weblinks import http_url

_EB_VERSION = re.compile(r"Built with EasyBuild version (\S+)")


def _provenance(layout: Layout, tree: str, module: str, module_file: Path) -> dict:
    """The module's build in a few facts, from its manifest and the build record the manifest names."""
    manifest = read_manifest(layout, tree, module) or {}
    record = jsonfile.read(Path(manifest["record"])) if manifest.get("record") else None
    record = record or {}
    found = _EB_VERSION.search(module_file.read_text()) if module_file.is_file() else None
    start, end = record.get("start"), record.get("end")
    return {
        "easyconfig": Path(manifest.get("easyconfig", "")).name, "sha256": manifest.get("sha256", ""),
        "easybuild": found.group(1) if found else "",
        "built": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(end)) if end else "",
        "seconds": round(end - start) if start and end else None,
        "executor": record.get("executor", ""), "where": record.get("where", ""),
    }


def _entries(settings: Settings, tree: str, gen: Path, walk: Path, software: list[dict]) -> dict[str, dict]:
    """Lmod's software page of the names walked (``walk``: the tree in ``gen``, or links to some of its
    names), with each version's provenance."""
    modules, out = settings.layout.view_tree(gen, tree), {}
    for package in software:
        versions = [{"module": v["full"], "version": v["versionName"], "default": bool(v.get("markedDefault")),
                     "description": (v.get("description") or "").strip(),
                     "gpu": "gpu" in v.get("properties", {}).get("arch", {}),
                     "extensions": v.get("provides", []),
                     "provenance": _provenance(settings.layout, tree, v["full"],
                                               modules / Path(v["path"]).relative_to(walk))}
                    for v in package.get("versions", [])]
        out[package["package"]] = {"name": package["package"], "url": package.get("url") or "",
                                   "description": (package.get("description") or "").strip(), "versions": versions}
    return out


def reuse(layout: Layout, tree: str, previous: Path, gen: Path) -> None:
    """No name of the tree changed: the previous generation's data, as it is (a hard link, never rewritten)."""
    os.link(layout.view_catalogue_data(previous, tree), layout.view_catalogue_data(gen, tree))


def update_tree(settings: Settings, tree: str, gen: Path, walk: Path, software: list[dict],
                changed: tuple[Path, tuple[str, ...]] | None) -> None:
    """Write the tree's ``catalogue.json`` in ``gen`` from Lmod's software page of the names ``walk`` holds
    (builder/publish/spider_cache.py's walk). ``changed``: the previous generation and the names changed
    since, which are all that was walked; the others keep their entries. None: every name was walked."""
    layout = settings.layout
    old: dict[str, dict] = {}
    names: set[str] = set()
    if changed is not None:
        old, names = jsonfile.read(layout.view_catalogue_data(changed[0], tree)) or {}, set(changed[1])
    kept = {name: entry for name, entry in old.items() if name not in names}
    entries = {**kept, **_entries(settings, tree, gen, walk, software)}
    jsonfile.write(layout.view_catalogue_data(gen, tree), dict(sorted(entries.items())))


def _featured(settings: Settings, target: str) -> dict[str, str | None]:
    """Featured names of the target -> the version featured (None: whichever the index picks)."""
    return {f.name: f.version for f in settings.featured if not f.targets or target in f.targets}


def _version_row(version: dict, gpu_tree: bool) -> str:
    prov = version["provenance"]
    marks = "".join(f'<span class="mark {cls}">{label}</span>' for cls, label, on in (
        ("default", "default", version["default"]), ("gpu", "GPU", version["gpu"] or gpu_tree)) if on)
    took = f", {prov['seconds']} s" if prov.get("seconds") is not None else ""
    where = f" on {html.escape(prov['where'])}" if prov.get("where") else ""
    provenance = (f'<span title="sha256 {html.escape(prov["sha256"])}">{html.escape(prov["easyconfig"])}</span>'
                  f' · built {html.escape(prov["built"] or "unknown")}{took} by {html.escape(prov["executor"] or "?")}'
                  f'{where} · EasyBuild {html.escape(prov["easybuild"] or "?")}')
    extensions = version["extensions"]
    inside = (f'<details><summary>{len(extensions)} extensions</summary><p class="ext">'
              + ", ".join(html.escape(e) for e in extensions) + "</p></details>") if extensions else ""
    return (f'<tr><td class="ver">{html.escape(version["version"])} {marks}</td>'
            f'<td><code>module load {html.escape(version["module"])}</code>{inside}</td>'
            f'<td class="prov">{provenance}</td></tr>')


def _link(url: str) -> str:
    """A module's homepage, from its easyconfig through Lmod: a link only when it is http(s) (a build's
    ``javascript:`` homepage ran script in the reader's browser), plain text otherwise."""
    shown = html.escape(url)
    return f' <a href="{shown}" rel="noopener noreferrer">{shown}</a>' if http_url(url) else f" <span>{shown}</span>"


def _package_section(package: dict, gpu_trees: set[str], featured: dict[str, str | None]) -> str:
    name = package["name"]
    words = [name, package["description"]] + [w for v in package["versions"]
                                               for w in [v["version"], *v["extensions"]]]
    star = '<span class="mark featured">featured</span>' if name in featured else ""
    link = _link(package["url"]) if package["url"] else ""
    rows = "".join(_version_row(v, v["tree"] in gpu_trees) for v in package["versions"])
    return (f'<section class="pkg" id="{html.escape(name)}" data-search="{html.escape(" ".join(words).lower())}">'
            f'<h2>{html.escape(name)} {star}</h2><p class="desc">{html.escape(package["description"])}{link}</p>'
            f'<table><tr><th>version</th><th>how to load</th><th>built from</th></tr>{rows}</table></section>')


def _policy(template: str) -> str:
    """The page's Content-Security-Policy: its own search script (by digest) and inline styles, nothing else
    runs or loads, so markup that escaping missed, or a ``javascript:`` URL, still runs no script."""
    script = template.split("<script>", 1)[1].split("</script>", 1)[0]
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    return f"default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-{digest}'"


def _packages(settings: Settings, target: str, gen: Path) -> tuple[dict[str, dict], set[str]]:
    """The packages of the target's trees (highest priority first), by name, each version with its tree;
    and the target's cuda trees."""
    layout = settings.layout
    trees = settings.layered_trees(settings.target(target))
    packages: dict[str, dict] = {}
    for tree in trees:
        for name, entry in (jsonfile.read(layout.view_catalogue_data(gen, tree)) or {}).items():
            merged = packages.setdefault(name, {**entry, "versions": []})
            merged["versions"] += [{**v, "tree": tree} for v in entry["versions"]]
    return packages, {t for t in trees if settings.target_of_tree(t).kind == "cuda"}


def panel_data(packages: dict[str, dict], gpu_trees: set[str]) -> dict:
    """What the notebook panel shows beside each module name (jupyter-lmod lists names only): its
    description and whether it is a GPU module."""
    return {"modules": {v["module"]: {"description": " ".join((v["description"] or p["description"]).split()),
                                      "gpu": v["gpu"] or v["tree"] in gpu_trees}
                        for p in packages.values() for v in p["versions"]}}


def page(settings: Settings, target: str, gen: Path, packages: dict[str, dict], gpu_trees: set[str]) -> str:
    """The target's catalogue: its packages by name."""
    featured = _featured(settings, target)
    sections = "".join(_package_section(packages[n], gpu_trees, featured) for n in sorted(packages, key=str.lower))
    switch = " ".join(f'<a href="../{html.escape(t)}/catalogue.html"{" class=here" if t == target else ""}>'
                      f"{html.escape(t)}</a>" for t in sorted(settings.targets))
    text = resources.files("builder.publish").joinpath("catalogue.html").read_text()
    return Template(text).substitute(
        policy=_policy(text), target=html.escape(target), switch=switch, sections=sections, count=len(packages),
        versions=sum(len(p["versions"]) for p in packages.values()), generation=html.escape(gen.name),
        generated=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))


def write_page(settings: Settings, target: str, gen: Path) -> None:
    """The catalogue page and the panel's data of the target, from the same merged packages."""
    packages, gpu_trees = _packages(settings, target, gen)
    settings.layout.view_catalogue(gen, target).write_text(page(settings, target, gen, packages, gpu_trees))
    jsonfile.write(settings.layout.view_panel_data(gen, target), panel_data(packages, gpu_trees))
