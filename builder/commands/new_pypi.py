"""`modlib new-pypi NAME==VERSION`: a site easyconfig for a package from PyPI, the library's most common ask.

Writing one by hand means finding the file's URL and sha256, the package's requirements, and which of
them the library already has. PyPI says all of it: its JSON API (``/pypi/NAME/json``, found beside the
configured simple index) lists the release's files with their sha256, and a wheel's own metadata
(PEP 658, ``<wheel URL>.metadata``) its requirements for exactly that version. The easyconfig installs
the pure-Python wheel (or the sdist where there is none) with ``PythonPackage`` on the toolchain the
demo's easyconfigs use; it depends on the library's Python module (the newest the target publishes, else
the one its plan builds) as EasyBuild's own easyconfigs do, and installs a file whose Requires-Python
admits that Python. Requirements published in the library become ``dependencies``, the others are named for
the admin to add first. A library built for a notebook image's Python (library.yaml's ``python:``, the
migration path) gets no Python dependency. The file is written in EasyBuild's robot layout and never over
another one: the admin reviews it and adds the printed line to an easystack.

The index is data, never code: the easyconfig is Python that the next ``plan`` runs, so a value from
the index is written only as a literal (``repr``) and only after it passed PyPI's own rules (PEP 508
names, versions, file names, sha256, http(s) URLs); the file's path is built from those checked
values and resolved inside the easyconfig path.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.parser import HeaderParser
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from builder import ebadapter
from builder.errors import BadInput, RunFailed
from builder.read.config import Settings, Target
from builder.weblinks import http_url

TIMEOUT = 30
#: The toolchain of the site's Python packages (the demo's Jinja2 and MarkupSafe): the system gcc.
TOOLCHAIN = ("GCCcore", "system")

EASYCONFIG = """# Written by `modlib new-pypi {spec}` from PyPI: review it before adding it to an easystack.
# Python: {python_note}
easyblock = 'PythonPackage'

name = {name!r}
version = {version!r}

homepage = {homepage!r}
description = {description!r}

toolchain = {{'name': {tc_name!r}, 'version': {tc_version!r}}}

source_urls = [{source_url!r}]
sources = [{source!r}]
checksums = [{sha256!r}]
{dependencies}
# EasyBuild 5 defaults: use_pip = True, download_dep_fail = True (pip runs offline, --no-deps); EasyBuild
# also imports {module!r} (options = {{'modulename': ...}} when the package imports under another name)
{sanity_paths}
sanity_check_commands = [
    {check!r},
]

moduleclass = 'lib'
"""
#: What an easyconfig without the Python dependency (the migration path) writes for its sanity check.
MIGRATION_SANITY = """
# the default sanity paths need %(pyshortver)s, which has no value without a Python dependency
sanity_check_paths = {
    'files': [],
    'dirs': ['lib'],
}

# %(python)s: the library's Python (PythonPackage's template); the sanity check's PATH has no 'python'
"""
#: The package's version, read from its own install: not one that another path on sys.path holds.
CHECK = ("{python} -c 'import importlib.metadata as m; d = m.distribution(\"{name}\"); "
         "assert d.version == \"%(version)s\", d.version; "
         "assert str(d.locate_file(\"\")).startswith(\"%(installdir)s/\"), d.locate_file(\"\")'")
#: PEP 508's project name, which PyPI enforces: letters, digits and ``._-`` inside, never ``/`` or ``..``.
_NAME = re.compile(r"^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])$", re.IGNORECASE)
#: A distribution's file name as PyPI accepts it (wheel or sdist): one path component.
_FILENAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+!-]*\.(whl|tar\.gz|tar\.bz2|tar\.xz|tgz|zip)$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass
class NewEasyconfig:
    path: Path
    easystack_line: str
    found: list[str] = field(default_factory=list)  # requirements the library has: module names
    missing: list[str] = field(default_factory=list)  # requirements it lacks, as PyPI states them
    ignored: list[str] = field(default_factory=list)  # homepages PyPI gave that are no http(s) URL
    python: str = ""  # the library's Python module it depends on, and where it was found; "": none


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


def _shown(value: object) -> str:
    """A value from the index as the error shows it: quoted, escaped, short (never raw bytes on a terminal)."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _spec(text: str) -> tuple[str, str]:
    name, sep, version = text.partition("==")
    name, version = name.strip(), version.strip()
    try:
        Version(version)
    except InvalidVersion:
        sep = ""
    if not sep or not _NAME.match(name):
        raise BadInput(text if text.isprintable() else _shown(text), "expected NAME==VERSION, for example six==1.16.0")
    return name, version


def _string(value: object, where: str, what: str) -> str:
    if not isinstance(value, str):
        raise BadInput(where, f"{what} is {_shown(value)}, not a string")
    return value


def _project_name(info: object, wanted: str, where: str) -> str:
    """The project's name as PyPI spells it: what the file and folder are named after."""
    name = _string(info.get("name") if isinstance(info, dict) else None, where, "info.name")
    if not _NAME.match(name) or canonicalize_name(name) != canonicalize_name(wanted):
        raise BadInput(where, f"info.name {_shown(name)} is not the name of project {wanted}")
    return name


@dataclass(frozen=True)
class _Dist:
    """The release file to install, each field as PyPI states it for a real distribution."""

    filename: str
    url: str
    sha256: str
    wheel: bool


def _checked(entry: dict, where: str, what: str, wheel: bool) -> _Dist:
    """The file's fields, checked; its URL resolved against the JSON's own (PyPI gives old files relative ones)."""
    name, stated = entry["filename"], _string(entry.get("url"), where, f"{what}.url")
    url = urllib.parse.urljoin(where, stated)
    digests = entry.get("digests")
    sha256 = _string(digests.get("sha256") if isinstance(digests, dict) else None, where, f"{what}.digests.sha256")
    if not _FILENAME.match(name):
        raise BadInput(where, f"{what}.filename {_shown(name)} is not a distribution's file name")
    if not http_url(url) or urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1]) != name:
        raise BadInput(where, f"{what}.url {_shown(stated)} is not an http(s) URL of {name}")
    if not _SHA256.match(sha256):
        raise BadInput(where, f"{what}.digests.sha256 {_shown(sha256)} is not a sha256")
    return _Dist(filename=name, url=url, sha256=sha256, wheel=wheel)


def _pure(filename: str) -> bool:
    try:
        tags = parse_wheel_filename(filename)[3]
    except InvalidWheelFilename:
        return False
    return all(t.abi == "none" and t.platform == "any" for t in tags) and any(t.interpreter == "py3" for t in tags)


def _runs_on(entry: dict, python: str) -> bool:
    """The file's Requires-Python admits the library's Python (one the index cannot state counts as none)."""
    stated = entry.get("requires_python")
    try:
        return not isinstance(stated, str) or SpecifierSet(stated).contains(python, prereleases=True)
    except InvalidSpecifier:
        return True


def _pick(files: object, spec: str, where: str, version: str, python: str) -> _Dist:
    """The release's pure-Python wheel, else its sdist, for the library's Python: what installs the same on
    every node. Only the file chosen is written into the easyconfig, so it alone must pass every check."""
    what = f"releases[{version!r}]"
    if not isinstance(files, list):
        raise BadInput(where, f"{what} is {_shown(files)}, not a list of files")
    wheels, sdists = [], []
    for i, entry in enumerate(files):
        if not isinstance(entry, dict):
            raise BadInput(where, f"{what}[{i}] is {_shown(entry)}, not a file")
        filename = _string(entry.get("filename"), where, f"{what}[{i}].filename")
        if entry.get("yanked") or not _runs_on(entry, python):
            continue
        if filename.endswith(".whl") and _pure(filename):
            wheels.append((i, entry))
        elif entry.get("packagetype") == "sdist":
            sdists.append((i, entry))
    if not wheels + sdists:
        raise BadInput(spec, f"has no pure-Python wheel and no sdist for Python {python} on PyPI; "
                             "write its easyconfig by hand")
    i, entry = (wheels + sdists)[0]
    return _checked(entry, where, f"{what}[{i}]", wheel=bool(wheels))


def _label_url(entry: str) -> tuple[str, str]:
    label, _, url = entry.partition(",")
    return label.strip().lower(), url.strip()


def _homepage(stated: list[tuple[str, object]], fallback: str, ignored: list[str]) -> str:
    """The first http(s) URL among the project's stated homes (the others go to ``ignored``), else its
    page on the index: a ``javascript:`` or ``UNKNOWN`` home is no link to write or publish."""
    for field_name, value in stated:
        if isinstance(value, str) and http_url(value):
            return value
        if value:
            ignored.append(f"{field_name} {_shown(value)}: not an http(s) URL")
    return fallback


def _labelled(urls: Mapping[str, object]) -> list[tuple[str, object]]:
    """The labelled URLs (``Project-URL: Homepage, https://...``) that can name a home, best first."""
    return [(f"Project-URL {label}", urls[label])
            for label in ("homepage", "home", "documentation", "source", "repository") if urls.get(label)]


def _metadata(index: str, spec: str, chosen: _Dist, info: dict, version: str,
              name: str) -> tuple[str, str, list[str] | None, list[str]]:
    """Summary, homepage, requirements of exactly this version, and homes ignored: the wheel's metadata,
    else (an sdist) the JSON's info when it describes this version, else requirements unknown (None)."""
    ignored: list[str] = []
    fallback = f"{index}/project/{name}/"
    if chosen.wheel:
        headers = HeaderParser().parsestr(_get(chosen.url + ".metadata", spec).decode("utf-8", "replace"))
        labelled = dict(_label_url(str(u)) for u in headers.get_all("Project-URL") or [])
        home = _homepage([("Home-page", headers.get("Home-page")), *_labelled(labelled)], fallback, ignored)
        requires = [str(r) for r in headers.get_all("Requires-Dist") or []]
        return str(headers.get("Summary", "")), home, requires, ignored
    urls = info.get("project_urls")
    labelled = {str(k).lower(): v for k, v in urls.items()} if isinstance(urls, dict) else {}
    home = _homepage([("info.home_page", info.get("home_page")), *_labelled(labelled)], fallback, ignored)
    requires = info.get("requires_dist") or []
    if info.get("version") != version or not isinstance(requires, list):
        return str(info.get("summary") or ""), home, None, ignored
    return str(info.get("summary") or ""), home, [str(r) for r in requires], ignored


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


def _dependencies(requires: list[str], published: dict, python: str) -> tuple[list[tuple[str, str]],
                                                                           list[str], list[str]]:
    """(EasyBuild dependencies, their module names, requirements the library lacks) for the library's Python."""
    deps, found, missing = [], [], []
    markers = {"python_version": ".".join(python.split(".")[:2]), "extra": ""}
    if python.count(".") == 2:  # the library's module; python.version (the migration path) names a minor only
        markers["python_full_version"] = python
    for text in requires:
        try:
            req = Requirement(text)
        except InvalidRequirement:
            missing.append(_shown(text))
            continue
        if req.marker and not req.marker.evaluate(markers):
            continue
        fits = [(n, v) for n, v in published.get(canonicalize_name(req.name), [])
                if req.specifier.contains(v, prereleases=True)]
        if fits:
            name, version = max(fits, key=lambda nv: _newest_first(nv[1]))
            deps.append((name, version))
            found.append(f"{name}/{version}-{'-'.join(TOOLCHAIN)}")
        else:
            missing.append(str(req))
    return deps, found, missing


@dataclass(frozen=True)
class _Python:
    """The Python the package is built for: the library's own module (``found_in`` says where: published,
    planned), or the notebook image's that library.yaml's ``python:`` names (the migration path: "")."""

    version: str
    found_in: str = ""

    @property
    def module(self) -> str:
        return f"Python/{self.version}-{'-'.join(TOOLCHAIN)}" if self.found_in else ""


def _library_python(settings: Settings, target: Target, published: dict) -> _Python:
    """The library's Python module that the package depends on: the newest one published in the target's
    trees (what its published requirements were built for), else the newest one its plan builds."""
    if settings.python_version:
        return _Python(settings.python_version)
    versions, found_in = [v for _, v in published.get("python", [])], "published"
    if not versions:
        from builder.plan.planner import make_plan

        suffix = "-" + "-".join(TOOLCHAIN)
        planned = [n.module.partition("/")[2] for n in make_plan(settings, [target]).nodes if n.name == "Python"]
        versions, found_in = [v.removesuffix(suffix) for v in planned if v.endswith(suffix)], "planned"
    if not versions:
        raise BadInput(settings.config_file, f"target '{target.name}' has no Python module on {TOOLCHAIN[0]}/"
                                             f"{TOOLCHAIN[1]}, published or planned: the library's Python packages "
                                             "depend on it; add its easyconfig to an easystack of the target first")
    return _Python(max(versions, key=_newest_first), found_in)


def _easyconfig(spec: str, name: str, version: str, chosen: _Dist, python: _Python, deps: list[tuple[str, str]],
                homepage: str, summary: str) -> str:
    """The easyconfig's text, each value from the index a Python literal."""
    deps = [("Python", python.version), *deps] if python.found_in else deps
    dep_lines = "".join(f"    ({n!r}, {v!r}),\n" for n, v in deps)
    note = ("the library's own Python module, a dependency as in EasyBuild's own easyconfigs" if python.found_in
            else "no Python dependency, so PythonPackage uses the 'python' first on $PATH (the notebook's).")
    return EASYCONFIG.format(
        spec=spec, python_note=note, name=name, version=version, homepage=homepage, description=summary or name,
        tc_name=TOOLCHAIN[0], tc_version=TOOLCHAIN[1], source_url=chosen.url.rsplit("/", 1)[0] + "/",
        source=chosen.filename.replace(version, "%(version)s"), sha256=chosen.sha256,
        dependencies=f"\ndependencies = [\n{dep_lines}]\n" if deps else "",
        module=name.lower().replace("-", "_"), sanity_paths="" if python.found_in else MIGRATION_SANITY,
        check=CHECK.format(python="python" if python.found_in else "%(python)s", name=name))


def _newest_first(text: str) -> Version:
    """A published version as PyPI compares it (a version PyPI would not accept sorts first)."""
    try:
        return Version(text)
    except InvalidVersion:
        return Version("0")


def _target_path(settings: Settings, name: str, filename: str) -> Path:
    """``<first easyconfig path>/<letter>/<Name>/<file>``, EasyBuild's robot layout, resolved inside that path."""
    top = settings.easyconfig_paths[0]
    path = top / name[0].lower() / name / filename
    if not path.resolve().is_relative_to(top.resolve()):
        raise BadInput(path, f"leads out of the easyconfig path {top} (a link?)")
    return path


def _write_new(path: Path, text: str) -> None:
    """Create ``path`` with ``text``, never over a file or through a link already there."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    except FileExistsError:
        raise BadInput(path, "exists already; edit it, or remove it to write it again") from None
    with os.fdopen(fd, "w") as f:
        f.write(text)


def new_pypi(settings: Settings, spec: str, target: Target) -> NewEasyconfig:
    """Write the easyconfig for ``spec`` (NAME==VERSION) into the site's first easyconfig path. Every value
    from the index is checked against PyPI's own rules and written as a Python literal (``repr``): the
    index is not trusted to write code that the next ``plan`` would run."""
    wanted, version = _spec(spec)
    index = settings.pypi_simple.rstrip("/").removesuffix("/simple")
    where = f"{index}/pypi/{wanted}/json"
    try:
        project = json.loads(_get(where, spec))
    except ValueError:
        raise BadInput(where, "not JSON") from None
    info = project.get("info") if isinstance(project, dict) else None
    name = _project_name(info, wanted, where)
    assert isinstance(info, dict)  # _project_name read a name from it
    releases = project.get("releases")
    files = releases.get(version) if isinstance(releases, dict) else None
    if not files:
        raise BadInput(spec, f"PyPI has no files of version {version} of {name}")
    published = _published(settings, target)
    python = _library_python(settings, target, published)
    chosen = _pick(files, spec, where, version, python.version)
    summary, homepage, requires, ignored = _metadata(index, spec, chosen, info, version, name)
    filename = ebadapter.easyconfig_filename(name, version, TOOLCHAIN)
    path = _target_path(settings, name, filename)
    deps, found, missing = _dependencies(requires or [], published, python.version)
    if requires is None:
        missing.append("(unknown: PyPI has no metadata of this sdist's version; read its setup files)")
    _write_new(path, _easyconfig(f"{wanted}=={version}", name, version, chosen, python, deps, homepage, summary))
    module = f"{python.module} ({python.found_in})" if python.found_in else ""
    return NewEasyconfig(path=path, easystack_line=f"  - {filename}", found=found, missing=missing, ignored=ignored,
                         python=module)
