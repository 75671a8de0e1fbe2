"""Every published file is covered by a record: a module without its integrity record (or with a garbled
one), a generation file (env.sh, the catalogue) that differs from the generation's record, an altered
manifest, and a file planted in the store are damage: verify and status name it in one line each, and
build publishes no generation over it. One small library, real EasyBuild and Lmod."""

import json
import os
from pathlib import Path

import pytest

from tests.helpers import bundle_easyconfig, copy_site_easyconfigs, link_sources, modlib, write_config, write_easystack

pytestmark = pytest.mark.e2e

NAMES = ("alpha", "beta", "extra1", "extra2", "extra3")
MODULE = {name: f"{name}/1.0-GCCcore-system" for name in NAMES}


class Library:
    def __init__(self, root: Path, config: Path, stack: Path):
        self.root, self.config, self.stack = root, config, stack

    def integrity(self, name: str) -> Path:
        return self.root / "cpu" / ".modlib" / "integrity" / f"{name}--1.0-GCCcore-system.jsonl"

    def manifest(self, name: str) -> Path:
        return self.root / "cpu" / ".modlib" / "manifest" / f"{name}--1.0-GCCcore-system.json"

    def verify(self) -> tuple[int, dict]:
        result = modlib("verify", "--config", str(self.config), "--json")
        assert "Traceback" not in result.stderr and "internal error" not in result.stderr, result.stderr
        return result.returncode, json.loads(result.stdout)

    def refuses_to_publish_with(self, name: str) -> str:
        """A build of one more module stores it but publishes no generation: the damage would go live."""
        live = os.readlink(self.root / "live")
        write_easystack(self.stack, [f"{n}-1.0-GCCcore-system.eb" for n in ("alpha", "beta", name)])
        result = modlib("build", "--config", str(self.config))
        assert result.returncode == 1 and "no generation was published over this damage" in result.stdout, \
            result.stdout + result.stderr
        assert os.readlink(self.root / "live") == live
        return result.stdout

    def publishes_again(self) -> None:
        result = modlib("build", "--config", str(self.config))
        assert result.returncode == 0, result.stdout + result.stderr
        code, report = self.verify()
        assert code == 0 and report["damaged"] == report["library"] == report["unrecorded"] == [], report


@pytest.fixture(scope="module")
def library(tmp_path_factory, source_cache) -> Library:
    tmp = tmp_path_factory.mktemp("integrity-gaps")
    site = copy_site_easyconfigs(tmp / "site")
    for name in NAMES:
        (site / name[0] / name).mkdir(parents=True, exist_ok=True)
        (site / name[0] / name / f"{name}-1.0-GCCcore-system.eb").write_text(bundle_easyconfig(name, ""))
    stack = write_easystack(tmp / "cpu.yaml", ["alpha-1.0-GCCcore-system.eb", "beta-1.0-GCCcore-system.eb"])
    config = write_config(tmp, {"cpu": {"kind": "cpu", "tree": "cpu", "easystacks": [str(stack)]}},
                          easyconfig_paths=[str(site)])
    link_sources(tmp / "library", source_cache)
    built = modlib("build", "--config", str(config))
    assert built.returncode == 0, built.stdout + built.stderr
    lib = Library(tmp / "library", config, stack)
    assert lib.verify()[0] == 0
    return lib


def test_a_deleted_or_garbled_record_is_damage_not_unrecorded(library):
    record = library.integrity("alpha")
    saved = record.read_bytes()
    (prefix,) = (library.root / "cpu" / "software").glob("alpha-*/alpha/1.0-GCCcore-system")
    planted = prefix / "planted"
    planted.write_text("tampered\n")
    record.unlink()
    code, report = library.verify()
    assert code == 1 and report["unrecorded"] == []
    problems = {d["module"]: d["problems"] for d in report["damaged"]}
    assert problems[MODULE["alpha"]] == [f"no integrity record ({record} is missing)"]
    out = library.refuses_to_publish_with("extra1")
    assert f"cpu/{MODULE['alpha']}: no integrity record" in out

    for garbled in (saved[: len(saved) // 2], b"[1, 2]\n", saved.split(b"\n")[0] + b"\n{\"path\": \n"):
        record.write_bytes(garbled)
        code, report = library.verify()
        (problem,) = {d["module"]: d["problems"] for d in report["damaged"]}[MODULE["alpha"]]
        assert code == 1 and problem.startswith(f"{record}: ") and "\n" not in problem
        status = modlib("status", "--config", str(library.config), "--json")
        assert status.returncode == 0 and "Traceback" not in status.stderr, status.stderr
        damaged = json.loads(status.stdout)["targets"]["cpu"]["damaged"]
        assert [d["module"] for d in damaged] == [MODULE["alpha"]]
    record.write_bytes(saved)
    planted.unlink()
    library.publishes_again()


def test_tampered_generation_files_and_manifests_are_damage(library):
    live = (library.root / "live").resolve()
    env_sh = live / "targets" / "cpu" / "env.sh"
    page = live / "targets" / "cpu" / "catalogue.html"
    saved = {p: p.read_bytes() for p in (env_sh, page, library.manifest("beta"))}
    with open(env_sh, "a") as f:
        f.write("export PYTHONPATH=/tmp/evil\n")
    page.write_bytes(page.read_bytes().replace(b"<body", b"<body onload=\"alert(1)\"", 1))
    code, report = library.verify()
    assert code == 1 and len(report["library"]) == 1
    assert report["library"][0].startswith(f"2 entries of {live} altered: ")
    assert "targets/cpu/catalogue.html" in report["library"][0] and "targets/cpu/env.sh" in report["library"][0]
    status = json.loads(modlib("status", "--config", str(library.config), "--json", check=True).stdout)
    assert status["damage"] == report["library"]
    library.refuses_to_publish_with("extra2")
    for path, data in saved.items():
        if path != library.manifest("beta"):
            path.write_bytes(data)

    manifest = library.manifest("beta")
    manifest.write_text(manifest.read_text().replace('"moduleclass": "tools"', '"moduleclass": "evil"'))
    code, report = library.verify()
    damaged = {d["module"]: d["problems"] for d in report["damaged"]}  # extra2: stored, not live yet
    assert code == 1 and damaged[MODULE["beta"]] == [f"manifest {manifest} was altered since publish"]
    manifest.write_text("[]")
    code, report = library.verify()
    damaged = {d["module"]: d["problems"] for d in report["damaged"]}
    assert code == 1 and damaged[MODULE["beta"]] == [f"{manifest}: holds a JSON list, not an object"]
    status = modlib("status", "--config", str(library.config), "--json")  # names it, as verify does
    assert status.returncode == 0 and "Traceback" not in status.stderr, status.stdout + status.stderr
    assert MODULE["beta"] in [d["module"] for d in json.loads(status.stdout)["targets"]["cpu"]["damaged"]]
    manifest.write_bytes(saved[manifest])
    library.publishes_again()


def test_a_file_planted_in_the_store_is_damage(library):
    store = library.root / "cpu" / "modules" / "all"
    planted = store / "planted" / "1.0.lua"
    planted.parent.mkdir()
    planted.write_text('setenv("EVIL", "1")\n')
    rc = store / "alpha" / ".modulerc.lua"
    rc.write_text('module_version("alpha/1.0-GCCcore-system", "evil")\n')
    ghost = library.root / "live" / "trees" / "cpu" / "modules" / "all" / "ghost" / "1.0.lua"
    ghost.parent.mkdir()
    ghost.write_text('setenv("EVIL", "1")\n')
    code, report = library.verify()
    problems = {d["module"]: d["problems"] for d in report["damaged"]}
    assert code == 1 and report["unrecorded"] == []
    assert problems == {"planted/1.0": [f"no integrity record ({library.root}/cpu/.modlib/integrity/planted--1.0.jsonl"
                                        " is missing)"]}
    assert report["library"] == [f"{ghost.parent.parent}/ghost/1.0.lua is in live but cpu/ghost/1.0 is not published",
                                 f"{rc} is in the store but no integrity record names it"]
    out = library.refuses_to_publish_with("extra3")
    assert "cpu/planted/1.0: no integrity record" in out
    for path in (planted, ghost, rc):
        path.unlink()
    planted.parent.rmdir()
    ghost.parent.rmdir()
    library.publishes_again()
