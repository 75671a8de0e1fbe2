"""Sources first: a real HTTP server on loopback plays the upstream site and PyPI's simple index."""

import hashlib
import http.server
import json
import threading
from pathlib import Path

import pytest

from builder.ebadapter import SourceFile
from builder.errors import ModlibError
from builder.execute import sources
from tests.helpers import at_once

PAYLOAD = b"not really a tarball, but bytes with a checksum\n"
SHA = hashlib.sha256(PAYLOAD).hexdigest()
EC = Path("/site/easyconfigs/d/demo/demo-1.0.eb")


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/simple/demo-pkg/":
            body = json.dumps({"files": [{"filename": "demo_pkg-1.0.tar.gz", "url": "/files/ab/demo_pkg-1.0.tar.gz",
                                          "hashes": {"sha256": SHA}}]}).encode()
        elif self.path == "/files/ab/demo_pkg-1.0.tar.gz":
            body = PAYLOAD
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture()
def pypi():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    yield base
    server.shutdown()


def src(filename="demo_pkg-1.0.tar.gz", urls=("http://127.0.0.1:9/broken",), checksum=SHA):
    return SourceFile(filename=filename, subdir="d/demo", urls=tuple(f"{u}/{filename}" for u in urls),
                      checksum=checksum, owner=EC)


@pytest.mark.parametrize("filename, project", [
    ("demo_pkg-1.0.tar.gz", "demo-pkg"), ("Jinja2-3.1.4-py3-none-any.whl", "jinja2"),
    ("markupsafe-3.0.2.tar.gz", "markupsafe"), ("saxpy.cu", None), ("foo.patch", None)])
def test_pypi_project_names(filename, project):
    assert sources.pypi_project(filename) == project


def test_failed_url_falls_back_to_pypi_simple_index(tmp_path, pypi):
    assert sources.prefetch([src()], tmp_path, [], pypi + "/simple") == 1
    assert (tmp_path / "d/demo/demo_pkg-1.0.tar.gz").read_bytes() == PAYLOAD
    assert sources.prefetch([src()], tmp_path, [], pypi + "/simple") == 0  # cached and verified: nothing to do


def test_direct_url_is_used_first(tmp_path, pypi):
    assert sources.prefetch([src(urls=(pypi + "/files/ab",))], tmp_path, [], pypi + "/simple") == 1


def test_sources_kept_in_the_repository(tmp_path):
    repo_sources = tmp_path / "repo"
    (repo_sources / "d/demo").mkdir(parents=True)
    (repo_sources / "d/demo/saxpy.cu").write_bytes(PAYLOAD)
    sources.prefetch([src("saxpy.cu", urls=())], tmp_path / "cache", [repo_sources])
    assert (tmp_path / "cache/d/demo/saxpy.cu").read_bytes() == PAYLOAD


def test_wrong_checksum_stops_with_exit_2_and_caches_nothing(tmp_path, pypi):
    with pytest.raises(ModlibError) as err:
        sources.prefetch([src(checksum="0" * 64)], tmp_path, [], pypi + "/simple")
    assert err.value.exit_code == 2
    assert str(EC) in str(err.value) and "checksum mismatch" in str(err.value) and SHA in str(err.value)
    assert list(tmp_path.rglob("*.tar.gz")) == [] and list(tmp_path.rglob(".part-*")) == []


def test_missing_checksum_is_refused(tmp_path, pypi):
    with pytest.raises(ModlibError, match="no checksum in the easyconfig"):
        sources.prefetch([src(checksum=None)], tmp_path, [], pypi + "/simple")


@pytest.mark.parametrize("weak", [("size", len(PAYLOAD)), "0" * 32, ("md5", "0" * 32), (SHA, ("size", 1)),
                                  [("crc32", "1")], {"demo_pkg-1.0.tar.gz": ("sha1", "0" * 40)}],
                         ids=["size", "md5-string", "md5", "sha256-or-size", "crc32-only", "sha1-by-name"])
def test_a_checksum_an_attacker_can_satisfy_is_refused_before_any_download(tmp_path, pypi, weak):
    with pytest.raises(ModlibError) as err:
        sources.prefetch([src(checksum=weak)], tmp_path, [], pypi + "/simple")
    assert err.value.exit_code == 2 and "only sha256 or sha512 checksums are accepted" in str(err.value)
    assert str(EC) in str(err.value) and list(tmp_path.rglob("*")) == []


@pytest.mark.parametrize("strong", [SHA, ("sha256", SHA), [("size", len(PAYLOAD)), SHA], (SHA, "1" * 64)],
                         ids=["sha256", "typed-sha256", "size-and-sha256", "two-sha256-alternatives"])
def test_sha256_checksums_count(tmp_path, pypi, strong):
    assert sources.prefetch([src(checksum=strong)], tmp_path, [], pypi + "/simple") == 1


@pytest.mark.parametrize("spec", [{"other-file.tar.gz": SHA}, [{"other-file.tar.gz": SHA}]], ids=["dict", "list"])
def test_a_checksum_dict_without_the_files_name_is_one_line_of_bad_input(tmp_path, pypi, spec):
    with pytest.raises(ModlibError) as err:
        sources.prefetch([src(checksum=spec)], tmp_path, [], pypi + "/simple")
    assert err.value.exit_code == 2 and str(EC) in str(err.value) and "\n" not in str(err.value)
    assert "does not name this file" in str(err.value)


def test_missing_source_without_network_stops_with_exit_2(tmp_path):
    with pytest.raises(ModlibError) as err:
        sources.prefetch([src()], tmp_path, [], "http://127.0.0.1:9/simple")
    assert err.value.exit_code == 2
    assert "source demo_pkg-1.0.tar.gz cannot be obtained" in str(err.value)
    assert "127.0.0.1:9/broken/demo_pkg-1.0.tar.gz" in str(err.value)


def test_two_runs_fetching_at_once_both_end_with_one_good_file(tmp_path, pypi):
    assert at_once(lambda: sources.prefetch([src()], tmp_path, [], pypi + "/simple"), 4) == []
    assert [p.name for p in (tmp_path / "d/demo").iterdir()] == ["demo_pkg-1.0.tar.gz"]


def test_a_source_list_crosses_from_the_parse_sandbox_as_data_and_nothing_else_does():
    """A sandboxed parse answers JSON: a checksum spec's tuples (alternatives) and dicts (per file) must
    come back as such, and an answer of another shape is refused, not trusted."""
    spec = [("sha256", "a" * 64), {"x.tar.gz": ("b" * 64, "c" * 64)}, "d" * 64, None]
    src = SourceFile("x.tar.gz", "x/X", ("https://example.org/x.tar.gz",), spec, Path("/site/X-1.eb"))
    assert SourceFile.from_data(json.loads(json.dumps(src.data())), src.owner) == src
    hostile: list[object] = [[], {"filename": 1, "subdir": "", "urls": [], "checksum": None},
                             {**src.data(), "checksum": {"tuple": "x"}}, {**src.data(), "checksum": True}]
    for answer in hostile:
        with pytest.raises(ValueError):
            SourceFile.from_data(answer, src.owner)
