"""`modlib new-pypi` against the real PyPI: the easyconfig it writes builds with EasyBuild and imports via Lmod."""

from __future__ import annotations

import ast
import http.server
import json
import sys
import threading

import pytest

from tests.helpers import (
    bundle_easyconfig,
    copy_site_easyconfigs,
    link_sources,
    lmod,
    modlib,
    write_config,
    write_easystack,
)

pytestmark = pytest.mark.e2e
SIX = "six-1.16.0-GCCcore-system.eb"


def site_repo(tmp_path, own_python=False):
    """A copy of the site repository's easyconfigs with its own library.yaml (cpu target only): built for the
    tests' venv (the migration path), or with ``own_python`` for the library's own Python module."""
    easyconfigs = copy_site_easyconfigs(tmp_path / "easyconfigs")
    stack = write_easystack(easyconfigs / "cpu.easystack.yaml", [])
    config = write_config(tmp_path, {"cpu": {"kind": "cpu", "tree": "cpu", "easystacks": [str(stack)]}},
                          easyconfig_paths=[str(easyconfigs)], own_python=own_python)
    return easyconfigs, stack, config


def test_a_pure_python_package_is_written_built_and_imported(tmp_path, source_cache):
    easyconfigs, stack, config = site_repo(tmp_path)
    root = tmp_path / "library"
    link_sources(root, source_cache)
    env = {"MODLIB_ROOT": str(root)}
    made = modlib("new-pypi", "--config", str(config), "six==1.16.0", env=env)
    assert made.returncode == 0, made.stderr
    written = easyconfigs / "s" / "six" / SIX
    assert made.stdout.splitlines()[0] == f"wrote {written}"
    assert made.stdout.splitlines()[-1] == f"  - {SIX}"
    text = written.read_text()
    assert "easyblock = 'PythonPackage'" in text and "toolchain = {'name': 'GCCcore', 'version': 'system'}" in text
    assert "dependencies" not in text  # the migration path: built for the Python library.yaml names
    assert "'https://files.pythonhosted.org/packages/" in text
    assert "checksums = ['8abb2f1d86890a2dfb989f9a77cfcfd3e47c2a354b01111771326f8aa26e0254']" in text

    write_easystack(stack, [made.stdout.splitlines()[-1].strip().removeprefix("- ")])
    build = modlib("build", "--config", str(config), env=env)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-2000:]
    lines = modlib("env", "--config", str(config), "--target", "cpu", env=env, check=True).stdout
    used = lmod(f'eval "{lines}"\nmodule load six/1.16.0-GCCcore-system\n'
                f'{sys.executable} -c "import six; print(six.__version__, six.__file__)"')
    version, path = used.stdout.split()
    assert version == "1.16.0" and path.startswith(f"{root}/cpu/software/six-"), used.stdout + used.stderr

    again = modlib("new-pypi", "--config", str(config), "six==1.16.0", env=env)
    assert again.returncode == 2 and again.stderr == f"modlib: error: {written}: exists already; edit it, or " \
                                                    "remove it to write it again\n"
    assert written.read_text() == text


def test_requirements_the_library_has_become_dependencies(tmp_path, demo_library):
    """Flask 3.1.0 needs Jinja2>=3.1.2 (the demo publishes 3.1.4 to 3.1.6) and four packages it lacks; like
    every Python package of the library, it depends on the library's Python, which the demo publishes."""
    root, env, _ = demo_library
    easyconfigs, _, config = site_repo(tmp_path, own_python=True)
    made = modlib("new-pypi", "--config", str(config), "Flask==3.1.0", env=env)
    assert made.returncode == 0, made.stderr
    assert "dependencies = [\n    ('Python', '3.11.2'),\n    ('Jinja2', '3.1.6'),\n]" in \
        (easyconfigs / "f" / "Flask" / "Flask-3.1.0-GCCcore-system.eb").read_text()
    assert "  depends on Python/3.11.2-GCCcore-system (published): the library's Python" in made.stdout.splitlines()
    assert "  depends on Jinja2/3.1.6-GCCcore-system (published)" in made.stdout.splitlines()
    needs = [line.split(":")[0].strip() for line in made.stdout.splitlines() if line.startswith("  needs ")]
    assert needs == ["needs Werkzeug>=3.1", "needs itsdangerous>=2.2", "needs click>=8.1.3", "needs blinker>=1.9"]


def test_not_a_pinned_spec_or_not_on_pypi_is_bad_input(tmp_path):
    _, _, config = site_repo(tmp_path)
    for spec, problem in (("six", "six: expected NAME==VERSION, for example six==1.16.0"),
                          ("six==0.0.0.1", "six==0.0.0.1: PyPI has no files of version 0.0.0.1 of six")):
        result = modlib("new-pypi", "--config", str(config), spec)
        assert (result.returncode, result.stderr) == (2, f"modlib: error: {problem}\n")


class IndexServer(http.server.ThreadingHTTPServer):
    pages: dict[str, object]  # path -> body (bytes, or JSON data)


class HostileIndex(http.server.BaseHTTPRequestHandler):
    """PyPI's JSON API and PEP 658 metadata as a hostile index serves them."""

    server: IndexServer

    def do_GET(self):
        body = self.server.pages.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body if isinstance(body, bytes) else json.dumps(body).encode())

    def log_message(self, *args):
        pass


@pytest.fixture()
def hostile_index():
    """A loopback index; its pages are set by each test. Yields (pages, base URL, environment for modlib)."""
    server = IndexServer(("127.0.0.1", 0), HostileIndex)
    server.pages = {}
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    yield server.pages, base, {"MODLIB_PYPI_SIMPLE": f"{base}/simple"}
    server.shutdown()


def release(base: str, name: str, filename: str, info: dict | None = None, url: str | None = None,
            sha256: str = "a" * 64, more: tuple[dict, ...] = ()) -> dict:
    """The JSON API's page of a project with one file of version 1.0 (and ``more`` before it)."""
    return {"info": {"name": name, "version": "1.0", "summary": "", **(info or {})},
            "releases": {"1.0": [*more, {"filename": filename, "url": url or f"{base}/files/{filename}",
                                         "packagetype": "sdist" if filename.endswith(".tar.gz") else "bdist_wheel",
                                         "digests": {"sha256": sha256}}]}}


def assignments(path) -> dict:
    """The easyconfig's top-level assignments whose values are literals (what it states, without running it)."""
    tree = ast.parse(path.read_text())
    return {node.targets[0].id: ast.literal_eval(node.value) for node in tree.body
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)}


def test_a_hostile_index_is_written_as_inert_literals(tmp_path, hostile_index):
    """Home-page and summary payloads that closed the old template's quotes are data: plan runs none of them."""
    pages, base, env = hostile_index
    easyconfigs, stack, config = site_repo(tmp_path)
    env = {**env, "MODLIB_ROOT": str(tmp_path / "library"), "MODLIB_CACHE": str(tmp_path / "cache")}
    marks = [tmp_path / f"ran-{i}" for i in range(4)]
    home = f"https://example.org/'+str(__import__('os').mknod('{marks[0]}'))+'"  # code in the old template
    summary = f"x'''\"\"\"+str(__import__('os').mknod('{marks[1]}'))+\"\"\"'\\\n"
    wheel = "evil-1.0-py3-none-any.whl"
    pages["/pypi/evil/json"] = release(base, "evil", wheel)
    pages[f"/files/{wheel}.metadata"] = (f"Metadata-Version: 2.1\nName: evil\nVersion: 1.0\nHome-page: {home}\n"
                                         f"Summary: {summary.splitlines()[0]}\n\n").encode()
    sdist_home = f"https://example.org/\n'+str(__import__('os').mknod('{marks[2]}'))+'"
    project_home = f"https://example.org/'+str(__import__('os').mknod('{marks[3]}'))+'"
    pages["/pypi/worse/json"] = release(base, "worse", "worse-1.0.tar.gz", info={
        "home_page": sdist_home, "project_urls": {"Homepage": project_home}, "summary": summary})
    for spec in ("evil==1.0", "worse==1.0"):
        made = modlib("new-pypi", "--config", str(config), spec, env=env)
        assert made.returncode == 0, made.stderr
    ignored = made.stdout.splitlines()[1]  # the value as repr shows it, cut to 80 characters
    assert ignored.startswith(f"  ignored PyPI's info.home_page {sdist_home[:40]!r}"[:-1]), ignored
    assert ignored.endswith("...: not an http(s) URL"), ignored
    evil = assignments(easyconfigs / "e" / "evil" / "evil-1.0-GCCcore-system.eb")
    assert (evil["homepage"], evil["description"]) == (home, summary.splitlines()[0])
    worse = assignments(easyconfigs / "w" / "worse" / "worse-1.0-GCCcore-system.eb")
    assert (worse["homepage"], worse["description"]) == (project_home, summary)

    write_easystack(stack, ["evil-1.0-GCCcore-system.eb", "worse-1.0-GCCcore-system.eb"])
    plan = modlib("plan", "--config", str(config), env=env)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert "evil/1.0-GCCcore-system" in plan.stdout and "worse/1.0-GCCcore-system" in plan.stdout
    assert [m for m in marks if m.exists()] == []


@pytest.mark.parametrize("spec, page, problem", [
    ("evil==1.0", {"name": "../../../../escaped"}, "info.name '../../../../escaped' is not the name of project evil"),
    ("evil==1.0", {"name": "evil/../../escaped"}, "info.name 'evil/../../escaped' is not the name of project evil"),
    ("evil==1.0", {"name": "evil\0"}, "info.name 'evil\\x00' is not the name of project evil"),
    ("evil==1.0", {"filename": "evil-1.0'+open('x','w')+'.tar.gz"},
     "releases['1.0'][0].filename \"evil-1.0'+open('x','w')+'.tar.gz\" is not a distribution's file name"),
    ("evil==1.0", {"filename": "../evil-1.0.tar.gz"},
     "releases['1.0'][0].filename '../evil-1.0.tar.gz' is not a distribution's file name"),
    ("evil==1.0", {"url": "file:///etc/evil-1.0.tar.gz"},
     "releases['1.0'][0].url 'file:///etc/evil-1.0.tar.gz' is not an http(s) URL of evil-1.0.tar.gz"),
    ("evil==1.0", {"sha256": "'+x+'"}, "releases['1.0'][0].digests.sha256 \"'+x+'\" is not a sha256"),
])
def test_a_hostile_index_is_refused_naming_the_field(tmp_path, hostile_index, spec, page, problem):
    pages, base, env = hostile_index
    _, _, config = site_repo(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    filename = page.get("filename", "evil-1.0.tar.gz")
    pages["/pypi/evil/json"] = release(base, page.get("name", "evil"), filename, url=page.get("url"),
                                       sha256=page.get("sha256", "a" * 64))
    result = modlib("new-pypi", "--config", str(config), spec, env=env)
    assert (result.returncode, result.stderr) == (2, f"modlib: error: {base}/pypi/evil/json: {problem}\n")
    assert sorted(tmp_path.rglob("*")) == before


@pytest.mark.parametrize("spec", ["../evil==1.0", "ev/il==1.0", "evil==1.0'+__import__('os').system('id')+'",
                                  "evil==1.0\nimport os"])
def test_a_hostile_spec_is_refused(tmp_path, hostile_index, spec):
    pages, base, env = hostile_index
    _, _, config = site_repo(tmp_path)
    pages["/pypi/evil/json"] = release(base, "evil", "evil-1.0.tar.gz")
    result = modlib("new-pypi", "--config", str(config), spec, env=env)
    shown = spec if spec.isprintable() else repr(spec)
    assert (result.returncode, result.stderr) == (2, f"modlib: error: {shown}: expected NAME==VERSION, "
                                                     "for example six==1.16.0\n")


def test_a_relative_file_url_is_resolved_against_the_index(tmp_path, hostile_index):
    """PyPI's JSON gives old releases' files relative URLs (``../../packages/...``): the easyconfig gets the
    absolute one, which EasyBuild can download."""
    pages, base, env = hostile_index
    easyconfigs, _, config = site_repo(tmp_path)
    pages["/pypi/old/json"] = release(base, "old", "old-1.0.tar.gz", url="../../packages/ab/old-1.0.tar.gz")
    assert modlib("new-pypi", "--config", str(config), "old==1.0", env=env).returncode == 0
    written = assignments(easyconfigs / "o" / "old" / "old-1.0-GCCcore-system.eb")
    assert (written["source_urls"], written["sources"]) == ([f"{base}/packages/ab/"], ["old-%(version)s.tar.gz"])


def own_python_site(tmp_path, python: str | None):
    """A site whose library has its own Python (a stand-in Bundle named Python, planned, never built)."""
    easyconfigs, stack, config = site_repo(tmp_path, own_python=True)
    if python:
        (easyconfigs / "p" / "Python").mkdir(parents=True, exist_ok=True)
        (easyconfigs / "p" / "Python" / f"Python-{python}-GCCcore-system.eb").write_text(
            bundle_easyconfig("Python", "").replace("version = '1.0'", f"version = {python!r}"))
        write_easystack(stack, [f"Python-{python}-GCCcore-system.eb"])
    return easyconfigs, stack, config


def test_a_library_with_its_own_python_gets_a_dependency_on_it_and_a_file_for_it(tmp_path, hostile_index):
    """Its Python is the one the target's plan builds (3.12 here): the easyconfig depends on that module, its
    sanity check runs the module's 'python', and the file and requirements are the ones for Python 3.12."""
    pages, base, env = hostile_index
    easyconfigs, stack, config = own_python_site(tmp_path, "3.12.4")
    env = {**env, "MODLIB_ROOT": str(tmp_path / "library"), "MODLIB_CACHE": str(tmp_path / "cache")}
    newer = {"filename": "fresh-1.0-py3-none-any.whl", "url": f"{base}/files/fresh-1.0-py3-none-any.whl",
             "packagetype": "bdist_wheel", "digests": {"sha256": "b" * 64}, "requires_python": ">=3.13"}
    pages["/pypi/fresh/json"] = release(base, "fresh", "fresh-1.0.tar.gz", more=(newer,), info={
        "requires_dist": ['tomli; python_version < "3.11"', 'typing-extensions; python_version < "3.13"']})
    made = modlib("new-pypi", "--config", str(config), "fresh==1.0", env=env)
    assert made.returncode == 0, made.stderr
    assert "  depends on Python/3.12.4-GCCcore-system (planned): the library's Python" in made.stdout.splitlines()
    needs = [line.split(":")[0] for line in made.stdout.splitlines() if line.startswith("  needs ")]
    assert needs == ['  needs typing-extensions; python_version < "3.13"']  # tomli is for Python < 3.11
    written = easyconfigs / "f" / "fresh" / "fresh-1.0-GCCcore-system.eb"
    stated = assignments(written)
    assert stated["dependencies"] == [("Python", "3.12.4")]
    assert stated["sources"] == ["fresh-%(version)s.tar.gz"]  # the wheel needs Python 3.13
    assert "sanity_check_paths" not in stated  # EasyBuild's own, for this Python's lib/python3.12/site-packages
    assert stated["sanity_check_commands"][0].startswith("python -c ")
    write_easystack(stack, ["Python-3.12.4-GCCcore-system.eb", "fresh-1.0-GCCcore-system.eb"])
    plan = modlib("plan", "--config", str(config), "--json", env=env)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    nodes = {n["module"]: n for n in json.loads(plan.stdout)["nodes"]}
    assert "Python/3.12.4-GCCcore-system" in nodes["fresh/1.0-GCCcore-system"]["deps"]


def test_a_library_with_its_own_python_but_none_in_the_target_is_bad_input(tmp_path, hostile_index):
    pages, base, env = hostile_index
    easyconfigs, _, config = own_python_site(tmp_path, None)
    pages["/pypi/fresh/json"] = release(base, "fresh", "fresh-1.0.tar.gz")
    made = modlib("new-pypi", "--config", str(config), "fresh==1.0",
                  env={**env, "MODLIB_ROOT": str(tmp_path / "library"), "MODLIB_CACHE": str(tmp_path / "cache")})
    assert (made.returncode, made.stderr) == (2, f"modlib: error: {config}: target 'cpu' has no Python module on "
                                                 "GCCcore/system, published or planned: the library's Python packages "
                                                 "depend on it; add its easyconfig to an easystack of the target "
                                                 "first\n")
    assert not (easyconfigs / "f").exists()
