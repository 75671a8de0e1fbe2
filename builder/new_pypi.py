"""`modlib new-pypi NAME==VERSION`: a site easyconfig for a package from PyPI, the library's most common ask.

Writing one by hand means finding the file's URL and sha256, the package's requirements, and which of
them the library already has. PyPI says all of it: its JSON API (``/pypi/NAME/json``, found beside the
configured simple index) lists the release's files with their sha256, and a wheel's own metadata
(PEP 658, ``<wheel URL>.metadata``) its requirements for exactly that version. The easyconfig installs
the pure-Python wheel (or the sdist where there is none) with ``PythonPackage`` on the toolchain the
demo's easyconfigs use; requirements published in the library become ``dependencies``, the others are
named for the admin to add first. The file is written in EasyBuild's robot layout and never over
another one: the admin reviews it and adds the printed line to an easystack.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from email.parser import HeaderParser
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from builder import ebadapter
from builder.errors import BadInput, RunFailed
from builder.read.config import Settings, Target

TIMEOUT = 30
#: The toolchain of the site's Python packages (the demo's Jinja2 and MarkupSafe): the system gcc.
TOOLCHAIN = ("GCCcore", "system")

EASYCONFIG = '''# Written by `modlib new-pypi {spec}` from PyPI: review it before adding it to an easystack.
# Python: no Python dependency, so PythonPackage uses the 'python' first on $PATH (the notebook's).
easyblock = 'PythonPackage'

name = '{name}'
version = '{version}'

homepage = '{homepage}'
description = """{description}"""

toolchain = {{'name': '{tc_name}', 'version': '{tc_version}'}}

source_urls = ['{source_url}']
sources = ['{source}']
checksums = ['{sha256}']
{dependencies}
# EasyBuild 5 defaults: use_pip = True, download_dep_fail = True (pip runs offline, --no-deps); EasyBuild
# also imports '{module}' (options = {{'modulename': ...}} when the package imports under another name)

# the default sanity paths need %(pyshortver)s, which has no value without a Python dependency
sanity_check_paths = {{
    'files': [],
    'dirs': ['lib'],
}}

# %(python)s: the library's Python (PythonPackage's template); the sanity check's PATH has no 'python'
sanity_check_commands = [
    "%(python)s -c 'import importlib.metadata as m; assert m.version(\\"{dist}\\") == \\"%(version)s\\"'",
]

moduleclass = 'lib'
'''


@dataclass
class NewEasyconfig:
    path: Path
    easystack_line: str
    found: list[str] = field(default_factory=list)  # requirements the library has: module names
    missing: list[str] = field(default_factory=list)  # requirements it lacks, as PyPI states them


def _get(url: str, what: str) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "modlib", "Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as resp:
            return resp.read()
    except urllib.error.HTTPError as err:
        if err.code == 404:
            raise BadInput(what, f"not on PyPI ({url}: 404)") from err
        raise RunFailed(f"{url}: HTTP {err.code}") from err
    except (urllib.error.URLError, OSError) as err:
        raise RunFailed(f"{url}: {err}") from err


def _spec(text: str) -> tuple[str, str]:
    name, sep, version = text.partition("==")
    try:
        Version(version)
    except InvalidVersion:
        sep = ""
    if not sep or not name.strip():
        raise BadInput(text, "expected NAME==VERSION, for example six==1.16.0")
    return name.strip(), version.strip()


def _pick(files: list[dict], spec: str) -> dict:
    """The release's pure-Python wheel, else its sdist: what installs the same on every node."""
    for f in files:
        if f["filename"].endswith(".whl") and not f.get("yanked"):
            tags = parse_wheel_filename(f["filename"])[3]
            if all(t.abi == "none" and t.platform == "any" for t in tags) and any(t.interpreter == "py3" for t in tags):
                return f
    sdists = [f for f in files if f["packagetype"] == "sdist" and not f.get("yanked")]
    if not sdists:
        raise BadInput(spec, "has no pure-Python wheel and no sdist on PyPI; write its easyconfig by hand")
    return sdists[0]


def _label_url(entry: str) -> tuple[str, str]:
    label, _, url = entry.partition(",")
    return label.strip().lower(), url.strip()


def _homepage(labelled: dict[str, str]) -> str:
    """The project's home among its labelled URLs (``Project-URL: Homepage, https://...``)."""
    for label in ("homepage", "home", "documentation", "source", "repository"):
        if labelled.get(label):
            return labelled[label]
    return next(iter(labelled.values()), "")


def _metadata(index: str, spec: str, chosen: dict, info: dict, version: str) -> tuple[str, str, list[str] | None]:
    """Summary, homepage and requirements of exactly this version: the wheel's metadata, else (an sdist)
    the JSON's info when it describes this version, else requirements unknown (None)."""
    if chosen["filename"].endswith(".whl"):
        headers = HeaderParser().parsestr(_get(chosen["url"] + ".metadata", spec).decode())
        labelled = dict(_label_url(u) for u in headers.get_all("Project-URL") or [])
        home = headers.get("Home-page") or _homepage(labelled) or f"{index}/project/{headers['Name']}/"
        return headers.get("Summary", ""), home, headers.get_all("Requires-Dist") or []
    labelled = {label.lower(): url for label, url in (info.get("project_urls") or {}).items()}
    home = info.get("home_page") or _homepage(labelled)
    requires = (info.get("requires_dist") or []) if info.get("version") == version else None
    return info.get("summary") or "", home or f"{index}/project/{info['name']}/", requires


def _published(settings: Settings, target: Target) -> dict[str, list[tuple[str, str]]]:
    """Published modules of the target's trees with the toolchain's suffix: canonical name -> (name, version)."""
    suffix = "-" + "-".join(TOOLCHAIN)
    out: dict[str, list[tuple[str, str]]] = {}
    for tree in settings.layered_trees(target):
        store = settings.layout.store(tree)
        for module_file in sorted(store.glob("*/*.lua")) if store.is_dir() else []:
            if module_file.stem.endswith(suffix):
                name = module_file.parent.name
                out.setdefault(canonicalize_name(name), []).append((name, module_file.stem.removesuffix(suffix)))
    return out


def _dependencies(requires: list[str], published: dict, python_version: str) -> tuple[list[tuple[str, str]],
                                                                                      list[str], list[str]]:
    """(EasyBuild dependencies, their module names, requirements the library lacks) for the notebook's Python."""
    deps, found, missing = [], [], []
    for text in requires:
        try:
            req = Requirement(text)
        except InvalidRequirement:
            missing.append(text)
            continue
        if req.marker and not req.marker.evaluate({"python_version": python_version, "extra": ""}):
            continue
        fits = [(n, v) for n, v in published.get(canonicalize_name(req.name), [])
                if req.specifier.contains(v, prereleases=True)]
        if fits:
            name, version = max(fits, key=lambda nv: _newest_first(nv[1]))
            deps.append((name, version))
            found.append(f"{name}/{version}-{'-'.join(TOOLCHAIN)}")
        else:
            missing.append(text)
    return deps, found, missing


def _newest_first(text: str) -> Version:
    """A published version as PyPI compares it (a version PyPI would not accept sorts first)."""
    try:
        return Version(text)
    except InvalidVersion:
        return Version("0")


def new_pypi(settings: Settings, spec: str, target: Target, out_dir: Path | None = None) -> NewEasyconfig:
    """Write the easyconfig for ``spec`` (NAME==VERSION) into the site's first easyconfig path (or ``out_dir``)."""
    wanted, version = _spec(spec)
    index = settings.pypi_simple.rstrip("/").removesuffix("/simple")
    project = json.loads(_get(f"{index}/pypi/{wanted}/json", spec))
    files = project.get("releases", {}).get(version)
    if not files:
        raise BadInput(spec, f"PyPI has no files of version {version} of {project['info']['name']}")
    chosen = _pick(files, spec)
    summary, homepage, requires = _metadata(index, spec, chosen, project["info"], version)
    name = project["info"]["name"]
    filename = ebadapter.easyconfig_filename(name, version, TOOLCHAIN)
    path = (out_dir or settings.easyconfig_paths[0]) / name[0].lower() / name / filename
    if path.exists():
        raise BadInput(path, "exists already; edit it, or remove it to write it again")
    deps, found, missing = _dependencies(requires or [], _published(settings, target), settings.python_version)
    if requires is None:
        missing.append("(unknown: PyPI has no metadata of this sdist's version; read its setup files)")
    url = chosen["url"]
    dep_lines = "".join(f"    ('{n}', '{v}'),\n" for n, v in deps)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(EASYCONFIG.format(
        spec=spec, name=name, version=version, homepage=homepage,
        description=(summary or name).replace('"""', "'''").replace("\\", "\\\\"),
        tc_name=TOOLCHAIN[0], tc_version=TOOLCHAIN[1], source_url=url.rsplit("/", 1)[0] + "/",
        source=chosen["filename"].replace(version, "%(version)s"), sha256=chosen["digests"]["sha256"],
        dependencies=f"\ndependencies = [\n{dep_lines}]\n" if deps else "",
        module=name.lower().replace("-", "_"), dist=name))
    return NewEasyconfig(path=path, easystack_line=f"  - {filename}", found=found, missing=missing)
