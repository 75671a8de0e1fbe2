"""Sources from Debian: real apt against the machine's own Debian mirror (its /etc/apt sources), a small
real orig tarball (lua-filesystem's, 30 KB) fetched into a source cache by the pre-fetch and by
``modlib plan --check-sources``."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from builder.ebadapter import SourceFile
from builder.errors import ModlibError
from builder.execute import sources
from builder.execute.debian_sources import FRESH_S, DebianSources, DebSrc, parse, twin
from tests.helpers import at_once, modlib, write_config

pytestmark = pytest.mark.skipif(shutil.which("apt-get") is None, reason="needs apt and a Debian mirror")

FILE = "lua-filesystem_1.8.0.orig.tar.gz"
SHA = "a1b7cf748ef2cdb6d75ebaa82a9c91b383fabc541b96febb1f9de98f06b8c188"
URL = "deb-src:bookworm/lua-filesystem"
ETC = Path("/etc/apt")


def easyconfig(url: str = URL, filename: str = FILE, checksum: str = SHA) -> str:
    return f"""easyblock = 'Tarball'
name = 'lua-filesystem'
version = '1.8.0'
homepage = 'https://example.org'
description = "a Debian orig tarball"
toolchain = SYSTEM
source_urls = ['{url}']
sources = ['{filename}']
checksums = ['{checksum}']
moduleclass = 'tools'
"""


def library(tmp: Path, text: str) -> tuple[Path, dict, Path]:
    """A library of one easyconfig ``text``; its config, environment and easyconfig."""
    ec = tmp / "site" / "l" / "lua-filesystem" / "lua-filesystem-1.8.0.eb"
    ec.parent.mkdir(parents=True)
    ec.write_text(text)
    stack = tmp / "stacks" / "cpu.yaml"
    stack.parent.mkdir()
    stack.write_text(yaml.safe_dump({"easyconfigs": [ec.name]}))
    config = write_config(tmp, {"cpu": {"kind": "cpu", "tree": "cpu", "easystacks": [str(stack)]}},
                          easyconfig_paths=[str(tmp / "site")])
    return config, {"MODLIB_CACHE": str(tmp / "cache"), "MODLIB_ROOT": str(tmp / "library")}, ec


def src(url: str = URL, filename: str = FILE, checksum: str = SHA) -> SourceFile:
    return SourceFile(filename=filename, subdir="l/lua-filesystem", urls=(f"{url}/{filename}",), checksum=checksum,
                      owner=Path("/site/l/lua-filesystem/lua-filesystem-1.8.0.eb"))


def machine_apt_state() -> list[tuple[str, int]]:
    return sorted((str(p), p.stat().st_mtime_ns) for p in Path("/var/lib/apt/lists").rglob("*") if p.is_file())


def test_check_sources_fetches_a_debian_orig_tarball_with_a_private_apt_state(tmp_path):
    config, env, _ = library(tmp_path, easyconfig())
    before = machine_apt_state()
    result = modlib("plan", "--config", str(config), "--check-sources", env=env)
    assert result.returncode == 0, result.stderr
    fetched = tmp_path / "library" / "sources" / "l" / "lua-filesystem" / FILE
    assert hashlib.sha256(fetched.read_bytes()).hexdigest() == SHA
    assert [p.name for p in fetched.parent.iterdir()] == [FILE]  # no .dsc, no .debian.tar.xz, no leftovers
    assert len(list((tmp_path / "cache" / "apt").glob("bookworm-*/lists/*_bookworm_InRelease"))) == 1
    assert machine_apt_state() == before  # nothing written to the machine's own apt lists
    assert not (tmp_path / "library" / "cpu").exists()


@pytest.mark.e2e
def test_build_fetches_a_debian_orig_tarball_and_easybuild_builds_from_it(tmp_path):
    """``modlib build`` goes through the same pre-fetch; EasyBuild then finds the file in the source cache
    and never looks at the ``deb-src:`` URL."""
    text = easyconfig() + "sanity_check_paths = {'files': ['src/lfs.c'], 'dirs': []}\n"
    config, env, _ = library(tmp_path, text)
    result = modlib("build", "--config", str(config), env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert list((tmp_path / "library" / "cpu" / "software").glob("lua-filesystem*/lua-filesystem/1.8.0/src/lfs.c"))


@pytest.mark.parametrize("text, expected", [
    (easyconfig(checksum="0" * 64), f"checksum mismatch (sha256 of the file: {SHA}"),
    (easyconfig(filename="lua-filesystem_9.9.orig.tar.gz"),
     f"has no file lua-filesystem_9.9.orig.tar.gz (it has lua-filesystem_1.8.0-3.dsc, {FILE}"),
    (easyconfig(url="deb-src:nosuchsuite/lua-filesystem"), "nosuchsuite Release' does not have a Release file"),
    (easyconfig(url="deb-src:bookworm/no-such-package"), "no source package no-such-package in bookworm"),
    (easyconfig(url="deb-src:../bookworm/lua-filesystem"), "'deb-src:../bookworm/lua-filesystem': a Debian source "
                                                           "URL is 'deb-src:SUITE/PACKAGE' with plain Debian names"),
    (easyconfig(url="deb-src:bookworm/-oDir=x"), "'deb-src:bookworm/-oDir=x': a Debian source URL is"),
    (easyconfig(url="deb-src:bookworm/lua/filesystem"), "'deb-src:bookworm/lua/filesystem': a Debian source URL is"),
], ids=["wrong-checksum", "missing-file", "missing-suite", "missing-package", "dotdot-suite", "option-package",
        "slash"])
def test_a_debian_source_that_is_not_there_or_not_plain_is_bad_input_and_caches_nothing(tmp_path, text, expected):
    config, env, ec = library(tmp_path, text)
    result = modlib("plan", "--config", str(config), "--check-sources", env=env)
    assert result.returncode == 2, result.stderr
    assert str(ec) in result.stderr and expected in result.stderr and "Traceback" not in result.stderr
    assert [p for p in (tmp_path / "library" / "sources").rglob("*") if not p.is_dir()] == []
    if "plain Debian names" in expected or "a Debian source URL is" in expected:  # refused before apt ran
        assert not (tmp_path / "cache" / "apt").exists()


def test_lists_are_updated_once_per_run_and_reused_while_fresh(tmp_path):
    said: list[str] = []
    with DebianSources(tmp_path / "apt", report=said.append) as debian:
        sources.prefetch([src()], tmp_path / "one", [], debian=debian)
        sources.prefetch([src()], tmp_path / "two", [], debian=debian)
    assert said.count("apt-get update: Debian's bookworm sources") == 1
    with DebianSources(tmp_path / "apt", report=said.append) as debian:  # the next run, within a day
        assert sources.prefetch([src()], tmp_path / "three", [], debian=debian) == 1
    assert said.count("apt-get update: Debian's bookworm sources") == 1
    stamp = next((tmp_path / "apt").glob("bookworm-*/updated"))
    os.utime(stamp, (time.time() - FRESH_S - 60,) * 2)
    with DebianSources(tmp_path / "apt", report=said.append) as debian:
        sources.prefetch([src()], tmp_path / "four", [], debian=debian)
    assert said.count("apt-get update: Debian's bookworm sources") == 2


def test_a_security_suite_is_looked_up_in_the_security_archive(tmp_path):
    """The security archive serves only security suites: 'deb-src:bookworm-security/less' finds the
    file there, with the version that has it (apt's Sources of that archive give no md5 Files)."""
    security, main = twin(ETC, "bookworm-security"), twin(ETC, "bookworm")
    assert security.count("URIs:") == 1 and "Suites: bookworm-security\n" in security
    assert security.splitlines()[1] not in main  # its URIs line: the other archives are left out
    with DebianSources(tmp_path / "apt") as debian:
        url = debian.locate(DebSrc("bookworm-security", "less", "less_590.orig.tar.gz"))
    assert url.endswith("/pool/updates/main/l/less/less_590.orig.tar.gz")


def test_runs_at_once_share_the_apt_state_and_the_cache(tmp_path):
    def fetch() -> None:
        with DebianSources(tmp_path / "apt") as debian:
            sources.prefetch([src()], tmp_path / "cache", [], debian=debian)

    assert at_once(fetch, 3) == []
    assert [p.name for p in (tmp_path / "cache" / "l" / "lua-filesystem").iterdir()] == [FILE]


def test_without_a_cache_folder_the_apt_state_is_temporary():
    before = set(Path(tempfile.gettempdir()).glob("modlib-apt-*"))
    with tempfile.TemporaryDirectory() as cache:
        assert sources.prefetch([src()], Path(cache), []) == 1
    assert set(Path(tempfile.gettempdir()).glob("modlib-apt-*")) == before


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="switching to nobody needs root")
def test_a_runner_that_is_not_root_fetches_too():
    # under /tmp itself: tempfile's folder may be one EasyBuild made private (0700) in an earlier test's process
    base = Path(tempfile.mkdtemp(prefix="modlib-nonroot-", dir="/tmp"))
    try:
        os.chown(base, 65534, 65534)
        script = ("import sys; from pathlib import Path; from builder.execute import sources; "
                  "from tests.integration.test_debian_sources import src; from builder.execute.debian_sources "
                  "import DebianSources; d = DebianSources(Path(sys.argv[1]) / 'apt'); "
                  "print(sources.prefetch([src()], Path(sys.argv[1]) / 'cache', [], debian=d))")
        result = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable,
                                 "-c", script, str(base)], capture_output=True, text=True,
                                cwd=Path(__file__).parents[2], env={**os.environ, "HOME": str(base)})
        assert result.returncode == 0, result.stderr
        fetched = base / "cache" / "l" / "lua-filesystem" / FILE
        assert hashlib.sha256(fetched.read_bytes()).hexdigest() == SHA and fetched.stat().st_uid == 65534
    finally:
        shutil.rmtree(base)


def test_no_apt_on_the_machine_is_a_clear_failure(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ModlibError) as err:
        sources.prefetch([src()], tmp_path / "cache", [])
    assert err.value.exit_code == 1 and "apt-get is not on this machine" in str(err.value)
    assert not (tmp_path / "cache" / "l").exists()


def test_an_apt_state_that_cannot_be_made_is_a_run_failure(tmp_path):
    (tmp_path / "apt").write_text("not a folder")
    with pytest.raises(ModlibError) as err, DebianSources(tmp_path / "apt") as debian:
        sources.prefetch([src()], tmp_path / "cache", [], debian=debian)
    assert err.value.exit_code == 1 and f"apt state {tmp_path / 'apt'}/bookworm-" in str(err.value)
    assert not (tmp_path / "cache" / "l").exists()


def test_the_twin_of_one_line_sources_is_that_of_the_same_deb822_sources(tmp_path):
    """The machine's deb822 sources written in sources.list's one-line form (with signed-by and the
    security suite) give the same twin; disabled stanzas and the security archive are left out."""
    lines = []
    for block in (ETC / "sources.list.d" / "debian.sources").read_text().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and line[0] != "#")
        lines += [f"deb [arch=amd64 signed-by={fields['Signed-By']}] {fields['URIs']} {suite} "
                  f"{fields['Components']}  # a comment" for suite in fields.get("Suites", "").split()]
    (tmp_path / "sources.list").write_text("\n".join(lines) + "\n")
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "off.sources").write_text(
        "Types: deb\nURIs: http://example.invalid/x\nSuites: bookworm\nComponents: main\nEnabled: no\n")
    assert twin(tmp_path, "bookworm") == twin(ETC, "bookworm") != ""
    assert "-security" not in twin(tmp_path, "trixie") and "Suites: trixie\n" in twin(tmp_path, "trixie")


def test_an_inline_key_is_kept_whole(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    key = "Signed-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n abc\n -----END PGP PUBLIC KEY BLOCK-----"
    (tmp_path / "sources.list.d" / "k.sources").write_text(
        f"# a comment\nTypes: deb\nURIs: http://example.invalid/debian\nSuites: bookworm\nComponents: main\n{key}\n")
    assert twin(tmp_path, "trixie").endswith(f"Components: main\n{key}\n")


@pytest.mark.parametrize("url", ["deb-src:/bookworm/x/f", "deb-src:bookworm//f", "deb-src:book worm/x/f",
                                 "deb-src:bookworm/x;y/f", "deb-src:bookworm/.x/f"])
def test_debian_source_urls_name_plain_suites_and_packages(url):
    with pytest.raises(ModlibError, match="plain Debian names") as err:
        parse(Path("/site/x.eb"), url)
    assert err.value.exit_code == 2 and "/site/x.eb" in str(err.value)
    assert parse(Path("/site/x.eb"), "https://example.org/f") is None
