"""Sources from Debian: ``deb-src:SUITE/PACKAGE`` in an easyconfig's ``source_urls`` names a file of that
source package in that suite of the runner machine's own Debian mirrors. A source package's
``.orig.tar.*`` is upstream's release tarball, so where upstream's site is out of reach (python.org) the
mirror serves it; the easyconfig's checksum stays the trust anchor, as for any other URL.

apt is the field's tool for finding the file: a deb-src twin of the machine's sources (same URIs,
components and Signed-By, the URL's suite; the security archive for a security suite) in a private
apt state, so nothing of the machine's own apt state is written and a runner that is not root works
too. The state lives under ``$MODLIB_CACHE/apt``, not in the source cache: it describes this
machine's mirrors (another runner sharing the library volume may have others), and build sandboxes
see the source cache, which should hold only what builds read.
One folder per twin (suite and mirrors), locked while apt writes or reads it, so runs at once do not
corrupt each other; lists updated within a day are reused, and a run updates a suite at most once.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from builder import jsonfile, proc
from builder.errors import BadInput, RunFailed

SCHEME = "deb-src:"
#: A Debian suite or source package name; never an option to apt (no leading '-'), never a path.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9+.-]*\Z")
#: Suites of the security archive, which serves no other suite.
_SECURITY = re.compile(r"(-security|/updates)\Z")
_ONE_LINE = re.compile(r"(deb|deb-src)\s+(?:\[([^\]]*)\]\s+)?(\S+)\s+(\S+)\s*(.*)\Z")
#: Lists this young are used again without an update.
FRESH_S = 86400
ETC_APT = Path("/etc/apt")
#: apt's messages, read here, untranslated.
_C = {**os.environ, "LC_ALL": "C"}


@dataclass(frozen=True)
class DebSrc:
    """A file of a Debian source package, as a ``deb-src:`` source URL names it."""

    suite: str
    package: str
    filename: str


def parse(owner: Path, url: str) -> DebSrc | None:
    """The Debian file ``url`` names, or None where it is another kind of URL. EasyBuild appends the file
    name to each of ``source_urls``; suite and package reach apt's command line, so anything but plain
    Debian names is refused before anything is fetched."""
    if not url.startswith(SCHEME):
        return None
    parts = url[len(SCHEME):].split("/")
    if len(parts) != 3 or not all(_NAME.match(part) for part in parts[:2]):
        raise BadInput(owner, f"source URL {url.rsplit('/', 1)[0]!r}: a Debian source URL is 'deb-src:SUITE/PACKAGE' "
                              "with plain Debian names (letters, digits, '+', '-', '.')")
    return DebSrc(*parts)


def twin(etc: Path, suite: str) -> str:
    """deb822 stanzas of type deb-src for ``suite`` on every archive the machine's apt sources name in
    ``etc``'s ``sources.list`` and ``sources.list.d``: the security archive for a security suite
    (``bookworm-security``), the others for any other suite."""
    files = [etc / "sources.list"] + sorted((etc / "sources.list.d").glob("*.list")) + \
        sorted((etc / "sources.list.d").glob("*.sources"))
    stanzas: dict[str, None] = {}
    for path in files:
        try:
            text = path.read_text(errors="replace")
        except OSError:  # no sources.list: only deb822 files, as in Debian's images
            continue
        for fields in _deb822(text) if path.suffix == ".sources" else _one_line(text):
            suites = fields.get("suites", "").split()
            if fields.get("enabled", "yes").lower() == "no" or not fields.get("uris") or not suites or \
                    not fields.get("components") or all(map(_SECURITY.search, suites)) != bool(_SECURITY.search(suite)):
                continue
            key = fields.get("signed-by", "")  # a file, or an inline key on continued lines
            signed = "" if not key else f"Signed-By:{key}\n" if key[0] == "\n" else f"Signed-By: {key}\n"
            stanzas[f"Types: deb-src\nURIs: {fields['uris']}\nSuites: {suite}\n"
                    f"Components: {fields['components']}\n{signed}"] = None
    return "\n".join(stanzas)


def _deb822(text: str) -> list[dict[str, str]]:
    """deb822 stanzas (a ``.sources`` file, ``apt-cache showsrc``), keys lower-cased; a continued value (an
    inline key, a list of files) keeps its lines."""
    stanzas: list[dict[str, str]] = []
    fields: dict[str, str] = {}
    key = ""
    for line in text.splitlines() + [""]:
        if line.startswith("#"):
            continue
        if not line.strip():
            if fields:
                stanzas.append(fields)
            fields, key = {}, ""
        elif line[0] in " \t" and key:
            fields[key] += "\n" + line
        elif ":" in line:
            key, value = line.split(":", 1)
            key = key.strip().lower()
            fields[key] = value.strip()
    return stanzas


def _one_line(text: str) -> list[dict[str, str]]:
    """``sources.list`` lines as deb822 fields (``signed-by=`` the one option kept)."""
    stanzas = []
    for line in text.splitlines():
        match = _ONE_LINE.match(line.split("#", 1)[0].strip())
        if match:
            options = dict(opt.split("=", 1) for opt in (match[2] or "").split() if "=" in opt)
            stanzas.append({"uris": match[3], "suites": match[4], "components": match[5],
                            "signed-by": options.get("signed-by", "").replace(",", " ")})
    return stanzas


class DebianSources:
    """One run's apt lookups: ``locate`` gives the mirror's URL of a ``deb-src:`` file. ``state`` None (no
    ``$MODLIB_CACHE``): a private temporary folder, removed at the end."""

    def __init__(self, state: Path | None, etc: Path = ETC_APT, report: Callable[[str], None] = lambda msg: None):
        self._state, self._etc, self._report = state, etc, report
        self._errors: dict[Path, str] = {}  # a folder updated by this run: apt's errors ('' for none)
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> DebianSources:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def locate(self, deb: DebSrc) -> str:
        """The URL of ``deb`` on the machine's mirrors; LookupError saying why when there is none."""
        apt = shutil.which("apt-get")
        if apt is None or shutil.which("apt-cache") is None:
            raise RunFailed(f"{SCHEME}{deb.suite}/{deb.package}: apt-get is not on this machine (sources from "
                            "Debian need apt and a Debian mirror in its apt sources, README 'Sources from Debian')")
        sources = twin(self._etc, deb.suite)
        if not sources:
            raise LookupError(f"no Debian archive in the apt sources of this machine ({self._etc})")
        if self._state is None:
            self._state = Path(self._stack.enter_context(tempfile.TemporaryDirectory(prefix="modlib-apt-")))
        folder = self._state / f"{deb.suite}-{hashlib.sha256(sources.encode()).hexdigest()[:12]}"
        try:
            with _locked(folder):
                if folder not in self._errors and not _fresh(folder / "updated"):
                    self._errors[folder] = self._update(apt, folder, sources, deb.suite)
                version = self._version(folder, deb)
                listing = proc.run([apt, *_options(folder), "-o", "APT::Get::Only-Source=true", "source",
                                    "--print-uris", f"{deb.package}={version}"], env=_C)
        except OSError as err:  # another user's folder, a full disk: the runner's, not the easyconfig's
            raise RunFailed(f"apt state {folder}: {err.strerror or err}") from None
        url = _files(listing.stdout).get(deb.filename) if listing.returncode == 0 else None
        if url is None:
            raise LookupError(_errors(listing.stderr) or f"apt-get source --print-uris {deb.package}={version} "
                                                          f"does not list {deb.filename}")
        return url

    def _version(self, folder: Path, deb: DebSrc) -> str:
        """The version of the source package that has the file: a mirror may list several, and apt's
        ``source`` looks at the newest alone. LookupError saying why where none has it."""
        found = proc.run(["apt-cache", *_options(folder), "-o", "APT::Cache::Only-Source=true", "showsrc",
                          deb.package], env=_C)
        stanzas = [f for f in _deb822(found.stdout) if f.get("package") == deb.package] if found.returncode == 0 else []
        names: dict[str, None] = {}
        for fields in stanzas:
            lines = (fields.get("checksums-sha256", "") + "\n" + fields.get("files", "")).splitlines()
            files = list(dict.fromkeys(line.split()[-1] for line in lines if line.split()))  # Files: (md5) may lack
            if deb.filename in files:
                return fields.get("version", "")
            names.update(dict.fromkeys(files))
        if stanzas:
            raise LookupError(f"source package {deb.package} of {deb.suite} has no file {deb.filename} "
                              f"(it has {', '.join(names)})")
        why = [self._errors.get(folder, ""), _errors(found.stderr), f"no source package {deb.package} in {deb.suite}"]
        raise LookupError("; ".join(filter(None, why)))

    def _update(self, apt: str, folder: Path, sources: str, suite: str) -> str:
        """``apt-get update`` of ``folder``'s lists; apt's errors, '' when it succeeded."""
        self._report(f"apt-get update: Debian's {suite} sources")
        (folder / "updated").unlink(missing_ok=True)
        for sub in ("lists/partial", "cache", "sources.list.d"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        jsonfile.write_text(folder / "sources.list.d" / "modlib.sources", sources)
        jsonfile.write_text(folder / "sources.list", "")
        result = proc.run([apt, *_options(folder), "update"], env=_C)
        if result.returncode == 0:
            (folder / "updated").touch()
            return ""
        return _errors(result.stderr) or f"apt-get update failed (exit code {result.returncode})"


def _options(folder: Path) -> list[str]:
    """apt reads and writes ``folder`` only (the machine's apt.conf, keyrings and dpkg status are read)."""
    settings = {"Dir::State::Lists": folder / "lists", "Dir::Cache": folder / "cache",
                "Dir::Cache::pkgcache": "", "Dir::Cache::srcpkgcache": "",
                "Dir::Etc::SourceList": folder / "sources.list", "Dir::Etc::SourceParts": folder / "sources.list.d"}
    return [arg for key, value in settings.items() for arg in ("-o", f"{key}={value}")]


def _files(listing: str) -> dict[str, str]:
    """File name to URL, from ``apt-get source --print-uris``: lines ``'URL' NAME SIZE HASH``."""
    files = {}
    for line in listing.splitlines():
        fields = line.split()
        if len(fields) >= 2 and re.fullmatch(r"'[a-z+]+:[^'\s]+'", fields[0]):
            files[fields[1]] = fields[0][1:-1]
    return files


def _errors(stderr: str) -> str:
    return "; ".join(line for line in stderr.splitlines() if line.startswith("E: "))


def _fresh(stamp: Path) -> bool:
    with contextlib.suppress(OSError):
        return time.time() - stamp.stat().st_mtime < FRESH_S
    return False


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """``folder`` for this process alone, across runs (an update replaces lists a lookup reads)."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / "lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
