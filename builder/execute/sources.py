"""Sources first: every file a build needs is in the shared source cache, checksum verified, before
any build starts, so build pods need no network and a bad source stops the run with nothing built.

Sites behind a proxy that lets only the pip repository through are served by resolving PyPI
files through ``pypi.org/simple`` when EasyBuild's own URL fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

from builder.ebadapter.sources import SourceFile, checksum_problem, checksum_weakness
from builder.errors import BadInput, RunFailed
from builder.execute import debian_sources
from builder.execute.debian_sources import DebianSources
from builder.read.config import DEFAULT_PYPI_SIMPLE

_ARCHIVE = re.compile(r"\.(tar\.gz|tar\.bz2|tar\.xz|tgz|zip)$")
TIMEOUT = 60


def pypi_project(filename: str) -> str | None:
    """The PyPI project a distribution file belongs to (PEP 503-normalised), or None if it is not one."""
    if filename.endswith(".whl"):
        name = filename.split("-")[0]
    elif _ARCHIVE.search(filename) and "-" in filename:
        name = _ARCHIVE.sub("", filename).rsplit("-", 1)[0]
    else:
        return None
    return re.sub(r"[-_.]+", "-", name).lower()


def pypi_url(filename: str, index_url: str, opener: Callable = urllib.request.urlopen) -> str | None:
    """Find ``filename`` in the PyPI simple index (JSON form, PEP 691); its hashed download URL or None."""
    project = pypi_project(filename)
    if project is None:
        return None
    request = urllib.request.Request(f"{index_url}/{project}/",
                                     headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    try:
        with opener(request, timeout=TIMEOUT) as resp:
            index = json.load(resp)
    except (urllib.error.URLError, OSError, ValueError):
        return None
    wanted = filename.lower().replace("_", "-")
    for entry in index.get("files", []):
        if entry["filename"].lower().replace("_", "-") == wanted:
            return urllib.parse.urljoin(f"{index_url}/{project}/", entry["url"])
    return None


def _download(url: str, dest: Path) -> str | None:
    """Copy ``url`` to ``dest``; the error text, or None on success."""
    try:
        if url.startswith("file://"):
            shutil.copyfile(urllib.parse.unquote(urllib.parse.urlparse(url).path), dest)
            return None
        request = urllib.request.Request(url, headers={"User-Agent": "modlib"})
        with urllib.request.urlopen(request, timeout=TIMEOUT) as resp, open(dest, "wb") as out:
            shutil.copyfileobj(resp, out, 1 << 20)
        return None
    except (urllib.error.URLError, OSError, ValueError) as err:
        return f"{url}: {getattr(err, 'reason', err)}"


def _folder(cache: Path, folder: Path) -> list[Path]:
    """Make ``folder`` (below ``cache``) without writing through a link that leaves the cache; the folders
    made, deepest first, for the caller to take back when the fetch fails."""
    missing = []
    found = folder
    while not os.path.lexists(found):
        missing.append(found)
        found = found.parent
    if found.is_relative_to(cache) and not found.resolve().is_relative_to(cache.resolve()):
        raise RunFailed(f"{found}: a link in the source cache leads out of it (to {found.resolve()}); "
                        "modlib writes nothing through it")
    made: list[Path] = []
    try:
        for path in reversed(missing):
            with contextlib.suppress(FileExistsError):  # made by another run meanwhile: not ours to take back
                path.mkdir()
                made.insert(0, path)
    except OSError:
        _take_back(made)
        raise
    return made


def _take_back(folders: list[Path]) -> None:
    for path in folders:
        try:
            path.rmdir()
        except OSError:  # another run put a file there meanwhile: it stays
            break


def _resolved(candidate: str, src: SourceFile, index_url: str, debian: DebianSources) -> str | None:
    """Where to download ``candidate`` from: itself, or the file found for it in PyPI's simple index or in
    a Debian source package (LookupError when it is not there)."""
    if candidate == "pypi":
        return pypi_url(src.filename, index_url)
    deb = debian_sources.parse(src.owner, candidate)
    return debian.locate(deb) if deb else candidate


def _obtain(src: SourceFile, dest: Path, cache: Path, local_dirs: Iterable[Path], index_url: str,
            debian: DebianSources) -> None:
    """Fetch one file to a temporary name beside ``dest``, check it, rename: safe with concurrent runs.
    A fetch that fails leaves nothing behind, not even the folders it made. PyPI's index is asked last,
    unless the file is a Debian source package's (no PyPI project has its name)."""
    made = _folder(cache, dest.parent)
    # a private folder keeps the file's own name, which EasyBuild's checksum dicts are keyed by
    part_dir = dest.parent / f".part-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    part_dir.mkdir()
    tmp = part_dir / dest.name
    done = False
    candidates = [(d / src.subdir / src.filename).as_uri() for d in local_dirs
                  if (d / src.subdir / src.filename).is_file()]
    candidates += list(src.urls)
    if not any(debian_sources.parse(src.owner, url) for url in src.urls):
        candidates.append("pypi")
    tried = []
    try:
        for candidate in candidates:
            try:
                url = _resolved(candidate, src, index_url, debian)
            except LookupError as err:
                tried.append(f"{candidate}: {err}")
                continue
            if url is None:
                break
            error = _download(url, tmp)
            if error:
                tried.append(error)
                continue
            problem = checksum_problem(tmp, src.checksum)
            if problem:
                raise BadInput(src.owner, f"source {src.filename} from {url}: {problem}")
            os.replace(tmp, dest)  # a link at dest is replaced, never followed
            done = True
            return
        where = "; ".join(tried) or "no download URL and not found on PyPI"
        raise BadInput(src.owner, f"source {src.filename} cannot be obtained ({where})")
    finally:
        shutil.rmtree(part_dir, ignore_errors=True)
        if not done:
            _take_back(made)


def prefetch(files: Iterable[SourceFile], cache: Path, local_dirs: Iterable[Path],
             index_url: str = DEFAULT_PYPI_SIMPLE, report: Callable[[str], None] = lambda msg: None,
             debian: DebianSources | None = None) -> int:
    """Make every file present and verified in ``cache``, before any build: returns how many were
    downloaded. ``local_dirs`` (sources kept in the repository) come first, ``index_url`` (a PyPI
    simple index) last; ``debian`` finds ``deb-src:`` files (None: a private one for this call)."""
    fetched = 0
    local_dirs = list(local_dirs)
    unique = {(f.subdir, f.filename): f for f in files}.values()
    for src in unique:  # every Debian source URL is a plain one before anything is fetched
        for url in src.urls:
            debian_sources.parse(src.owner, url)
    with contextlib.ExitStack() as stack:
        debian = debian or stack.enter_context(DebianSources(None, report=report))
        for src in unique:
            weakness = checksum_weakness(src.checksum)
            if weakness:
                raise BadInput(src.owner, f"source {src.filename}: {weakness}")
            dest = cache / src.subdir / src.filename
            if dest.is_file() and checksum_problem(dest, src.checksum) is None:
                continue
            report(f"fetching {src.filename}")
            _obtain(src, dest, cache, local_dirs, index_url, debian)
            fetched += 1
    return fetched
