"""The admin's commands on the demo library: plan --diff on a site repository's git history, show, logs
and status --where, all read from what the demo build recorded."""

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import REPO, modlib

pytestmark = pytest.mark.e2e
CONFIG = str(REPO / "easyconfigs" / "library.yaml")
JINJA = "Jinja2/3.1.4-GCCcore-system"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=modlib", "-c", "user.email=modlib@example.org", *args], cwd=repo,
                          check=True, capture_output=True, text=True).stdout


@pytest.fixture()
def site(tmp_path, demo_library):
    """A site repository (the demo's easyconfigs and hooks) with two commits: the demo, then a change that
    adds Jinja2 3.1.3, drops 3.1.4 and edits MarkupSafe's easyconfig; planned against the demo library."""
    repo = tmp_path / "site"
    repo.mkdir()
    shutil.copytree(REPO / "easyconfigs", repo / "easyconfigs")
    shutil.copytree(REPO / "hooks", repo / "hooks", ignore=shutil.ignore_patterns("__pycache__"))
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "the demo library")
    jinja = repo / "easyconfigs" / "j" / "Jinja2"
    (jinja / "Jinja2-3.1.3-GCCcore-system.eb").write_text(
        (jinja / "Jinja2-3.1.4-GCCcore-system.eb").read_text().replace("3.1.4", "3.1.3"))
    stack = repo / "easyconfigs" / "cpu.easystack.yaml"
    stack.write_text(stack.read_text().replace("Jinja2-3.1.4-GCCcore-system.eb", "Jinja2-3.1.3-GCCcore-system.eb"))
    markupsafe = repo / "easyconfigs" / "m" / "MarkupSafe" / "MarkupSafe-3.0.2-GCCcore-system.eb"
    markupsafe.write_text(markupsafe.read_text() + "# a reviewer's note\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "Jinja2 3.1.3 instead of 3.1.4")
    env = {**demo_library[1], "MODLIB_CACHE": str(tmp_path / "cache")}
    return repo, env


def diff(repo: Path, env: dict, *args: str):
    return modlib("plan", "--config", str(repo / "easyconfigs" / "library.yaml"), "--diff", "HEAD~1", *args, env=env)


def test_plan_diff_reports_added_dropped_and_drifted_modules(site, demo_library):
    repo, env = site
    before = git(repo, "status", "--porcelain"), git(repo, "worktree", "list")
    out = diff(repo, env, "--format", "json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["commit"] == git(repo, "rev-parse", "HEAD~1").strip()
    cpu, cuda = report["targets"]["cpu"], report["targets"]["cuda"]
    assert [a["module"] for a in cpu["add"]] == ["Jinja2/3.1.3-GCCcore-system"]
    added = cpu["add"][0]
    assert not added["published"]
    assert {n["module"]: n["state"] for n in added["needs"]} == {
        "GCCcore/system": "published", "MarkupSafe/3.0.2-GCCcore-system": "published",
        "Python/3.11.2-GCCcore-system": "published"}
    # never built: its build time is another Jinja2's, from the demo build's records
    assert added["estimate_from"].startswith("Jinja2/3.1.") and added["estimate_seconds"] > 0
    assert [(d["module"], d["published"]) for d in cpu["drop"]] == [(JINJA, True)]
    assert [r["module"] for r in cpu["rebuild"]] == ["MarkupSafe/3.0.2-GCCcore-system"]
    rebuild = cpu["rebuild"][0]
    assert rebuild["published"] and rebuild["why"] == ["easyconfig changed (MarkupSafe-3.0.2-GCCcore-system.eb)"]
    assert rebuild["estimate_from"] == "its last build" and rebuild["estimate_seconds"] > 0
    # the next run builds the added module; the drifted one only with --rebuild, so it is counted apart
    assert cpu["estimate"] == {"seconds": round(added["estimate_seconds"], 1), "from_model": 0}
    assert cpu["rebuild_on_request"] == {"seconds": round(rebuild["estimate_seconds"], 1), "from_model": 0}
    assert cuda == {"add": [], "drop": [], "rebuild": [], "estimate": {"seconds": 0, "from_model": 0},
                    "rebuild_on_request": {"seconds": 0, "from_model": 0}}
    assert not report["hooks_changed"]
    markdown = diff(repo, env)
    assert markdown.returncode == 0, markdown.stderr
    text = markdown.stdout
    # the added module's time is another Jinja2's (~), the drifted one's its own last build's
    assert re.search(r"\| cpu \| 1 \| 1 \| 1 \| 1 \(~\d+ s\) \| 1 \(\d+ s\) \|", text), text
    assert "| cuda | 0 | 0 | 0 | nothing |  |" in text
    assert "| add | `Jinja2/3.1.3-GCCcore-system` | cpu | ✓ `GCCcore/system`, ✓ `MarkupSafe/3.0.2-GCCcore-system`, " \
           "✓ `Python/3.11.2-GCCcore-system` | builds it | ~" in text
    assert f"| drop | `{JINJA}` | cpu |  | nothing: stays published, orphaned |  |" in text
    assert "| rebuild | `MarkupSafe/3.0.2-GCCcore-system` | cpu | easyconfig changed (MarkupSafe-3.0.2-GCCcore-system" \
           ".eb) | nothing until `modlib build --rebuild MarkupSafe/3.0.2-GCCcore-system` |" in text
    assert (git(repo, "status", "--porcelain"), git(repo, "worktree", "list")) == before
    # listing again what is published builds nothing: it is neither "to build" nor in the estimate
    stack = repo / "easyconfigs" / "cpu.easystack.yaml"
    stack.write_text(stack.read_text() + f"  - {JINJA.replace('/', '-')}.eb\n")
    relisted = modlib("plan", "--config", str(repo / "easyconfigs" / "library.yaml"), "--diff", "HEAD", env=env)
    assert relisted.returncode == 0, relisted.stderr
    assert "| cpu | 1 | 0 | 0 | nothing |  |" in relisted.stdout
    assert f"| add | `{JINJA}` | cpu |" in relisted.stdout and "| nothing: already published, now listed |  |" \
        in relisted.stdout


def test_plan_diff_of_a_change_that_does_not_plan_exits_2(site):
    repo, env = site
    unknown = modlib("plan", "--config", str(repo / "easyconfigs" / "library.yaml"), "--diff", "no-such-ref", env=env)
    assert unknown.returncode == 2 and "--diff no-such-ref: not a commit of this repository" in unknown.stderr
    stack = repo / "easyconfigs" / "cpu.easystack.yaml"
    stack.write_text(stack.read_text() + "  - NoSuchThing-1.0.eb\n")
    out = diff(repo, env)
    assert out.returncode == 2 and out.stdout == ""
    assert "NoSuchThing-1.0.eb" in out.stderr and str(stack) in out.stderr


def test_show_gives_a_published_modules_provenance(demo_library):
    root, env, _ = demo_library
    out = modlib("show", "--config", CONFIG, "--json", "saxpy", env=env)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    easyconfig = REPO / "easyconfigs" / "s" / "saxpy" / "saxpy-1.0-GCCcore-system-CUDA-13.2.2.eb"
    assert info["tree"] == "cuda" and info["easyconfig"] == {
        "path": str(easyconfig), "sha256": hashlib.sha256(easyconfig.read_bytes()).hexdigest(), "changed_since": False}
    build = info["build"]
    assert info["not_recorded"] == [] and build["exit_code"] == 0 and build["executor"] == "local"
    assert build["easybuild_version"] == "5.4.1"
    assert build["hooks_sha256"] == hashlib.sha256((REPO / "hooks" / "modlib_hooks.py").read_bytes()).hexdigest()
    assert build["options"]["cuda-compute-capabilities"] == ["8.0", "9.0"] and build["options"]["optarch"] == "GENERIC"
    assert [s["file"] for s in build["sources"]] == ["s/saxpy/saxpy.cu", "s/saxpy/Makefile"]
    assert [s["digest"][:7] for s in build["sources"]] == ["sha256:", "sha256:"]
    assert build["seconds"] == round(build["end"] - build["start"], 1) > 0
    assert Path(info["prefix"]).is_relative_to(root / "cuda" / "software")
    assert info["integrity"] == {"state": "intact", "problems": []} and info["dependents"] == []
    text = modlib("show", "--config", CONFIG, "MarkupSafe", env=env)
    assert text.returncode == 0, text.stderr
    assert "  EasyBuild       5.4.1" in text.stdout and "  integrity       intact" in text.stdout
    dependents = text.stdout.split("  dependents      ")[1]
    assert all(f"cpu/Jinja2/{v}-GCCcore-system" in dependents for v in ("3.1.4", "3.1.5", "3.1.6"))
    short = modlib("show", "--config", CONFIG, "--json", "Jinja2/3.1.4", env=env)
    assert json.loads(short.stdout)["module"] == JINJA
    ambiguous = modlib("show", "--config", CONFIG, "Jinja2", env=env)
    assert ambiguous.returncode == 2 and "ambiguous" in ambiguous.stderr and JINJA in ambiguous.stderr


def test_logs_print_name_and_list_a_modules_builds(demo_library):
    root, env, _ = demo_library
    path = modlib("logs", "--config", CONFIG, "--path", "Jinja2/3.1.5", env=env)
    assert path.returncode == 0, path.stderr
    log = Path(path.stdout.strip())
    assert log.is_relative_to(root / ".modlib" / "records" / "cpu") and log.suffix == ".log"
    printed = modlib("logs", "--config", CONFIG, "Jinja2/3.1.5", env=env)
    assert printed.returncode == 0 and printed.stdout == log.read_text()
    assert "Jinja2" in printed.stdout
    every = modlib("logs", "--config", CONFIG, "--all", "Jinja2/3.1.5", env=env)
    assert every.returncode == 0
    assert len(every.stdout.splitlines()) == 1 and "exit 0" in every.stdout and str(log) in every.stdout
    missing = modlib("logs", "--config", CONFIG, "NoSuchThing", env=env)
    assert missing.returncode == 2
    assert missing.stderr == "modlib: error: NoSuchThing: no such module in this library (`modlib status --json` " \
                             "lists them)\n"


def test_status_where_lists_modules_built_without_a_capability(demo_library):
    root, env, _ = demo_library
    without = json.loads(modlib("status", "--config", CONFIG, "--json", "--where",
                                "cuda-compute-capabilities!=9.0", env=env, check=True).stdout)
    # the cpu tree's builds are not "without": the option applies to the cuda target's tree only
    assert without["modules"] == [] and without["not_recorded"] == []
    planned = json.loads(modlib("plan", "--config", CONFIG, "--json", env=env, check=True).stdout)["nodes"]
    cpu = sorted(n["module"] for n in planned if n["tree"] == "cpu")  # the Python stack's modules among them
    assert sorted(m["module"] for m in without["not_applicable"]) == cpu
    assert {m["tree"] for m in without["not_applicable"]} == {"cpu"}
    with_ = modlib("status", "--config", CONFIG, "--where", "cuda-compute-capabilities=9.0", "--where",
                   "easybuild-version=5.4.1", env=env)
    assert with_.returncode == 0, with_.stderr
    assert with_.stdout.splitlines()[0] == ("2 published modules built with cuda-compute-capabilities=9.0 and "
                                            "easybuild-version=5.4.1")
    assert "cuda/saxpy/1.0-GCCcore-system-CUDA-13.2.2  (cuda-compute-capabilities=8.0,9.0, " in with_.stdout
    bad = modlib("status", "--config", CONFIG, "--where", "cuda-compute-capabilities", env=env)
    assert bad.returncode == 2 and "KEY=VALUE or KEY!=VALUE" in bad.stderr
