"""One module defines every path under the library root, and the admins' page shows exactly those."""

import inspect
import json
import re
from importlib import resources
from pathlib import Path

from builder import layout
from builder.layout import ENTRIES, Layout
from tests.helpers import REPO

ROOT = Path("/srv/modlib")
GEN = ROOT / "views" / "20261203T000000-abcd1234"


def _documented() -> list[re.Pattern]:
    """Each drawn entry, and each folder above it, as a regex of the path it stands for (under the root)."""
    patterns: list[re.Pattern] = []
    parents: dict[int, str] = {}
    for entry in ENTRIES:
        text = entry.pattern.split(" -> ")[0].rstrip("/")
        full = (parents[entry.depth - 1] + "/" if entry.depth else "") + text
        parents[entry.depth] = full
        parts = full.split("/")
        for end in range(1, len(parts) + 1):
            regex = re.escape("/".join(parts[:end])).replace(r"/\.\.\.", "(/.*)?").replace(r"\*", "[^/]*")
            patterns.append(re.compile(re.sub(r"<[A-Za-z]+>", "[^/]+", regex.replace(r"\<", "<").replace(r"\>", ">"))))
    return patterns


def _paths() -> dict[str, Path]:
    """Every path method of Layout (those that return a Path), called with sample arguments."""
    lay, out = Layout(ROOT), {}
    samples = {"tree": "cpu", "module": "Jinja2/3.1.4-GCCcore-system", "base": GEN, "target": "cuda",
               "digest": "0123abcd", "build": "Jinja2-0123abcd", "filename": "x-1.0.eb",
               "prefix": ROOT / "cpu/software/Jinja2-0123abcd",
               "install_dir": ROOT / "cpu/software/Jinja2-0123abcd/Jinja2/3.1.4-GCCcore-system"}
    for name, method in inspect.getmembers(lay, inspect.ismethod):
        if name.startswith("_") or inspect.signature(method).return_annotation != "Path":
            continue
        params = [p for p in inspect.signature(method).parameters]
        out[name] = method(**{p: samples[p] for p in params})
    return out


def test_every_path_of_the_layout_is_documented():
    patterns = _documented()
    for name, path in _paths().items():
        rel = str(path.relative_to(ROOT))
        assert any(p.fullmatch(rel) for p in patterns), f"Layout.{name}() = {rel} is not in the drawing"


def test_the_admins_page_shows_the_drawing_of_the_layout_module():
    page = (REPO / "docs" / "library-volume.md").read_text()
    assert f"```\n{layout.drawing()}\n```" in page


def test_paths_are_the_ones_builds_and_notebooks_rely_on():
    lay = Layout(ROOT)
    assert lay.store("cpu") == ROOT / "cpu/modules/all"
    assert lay.staging("cpu", "Jinja2/3.1.4") == ROOT / "cpu/.staging/Jinja2--3.1.4"
    assert lay.view_tree(lay.live(), "cuda") == ROOT / "live/trees/cuda/modules/all"
    assert lay.records("cpu", "X/1") == ROOT / ".modlib/records/cpu/X--1"
    prefix = lay.prefix("cpu", "X-0123abcd")
    assert prefix == ROOT / "cpu/software/X-0123abcd" and lay.install_dir(prefix, "X/.1") == prefix / "X/1"
    assert lay.eb_install_lock(prefix / "X/1").name == "_srv_modlib_cpu_software_X-0123abcd_X_1.lock"


def test_every_property_of_the_configuration_schema_has_a_description():
    schema = json.loads(resources.files("builder.schemas").joinpath("library.schema.json").read_text())
    missing = []

    def walk(node: object, where: str) -> None:
        if isinstance(node, dict):
            for key, prop in (node.get("properties") or {}).items():
                if "description" not in prop and "$ref" not in prop:
                    missing.append(f"{where}.{key}")
            for key, value in node.items():
                if key in ("allOf", "if", "then"):
                    continue  # conditions over properties described elsewhere
                walk(value, f"{where}.{key}" if key not in ("properties", "$defs", "items") else where)
        elif isinstance(node, list):
            for item in node:
                walk(item, where)

    walk(schema, "library.yaml")
    assert missing == []


def test_installed_is_the_module_file_in_the_store(tmp_path):
    lay = Layout(tmp_path)
    modules = ["Jinja2/3.1.4-GCCcore-system", "zlib/.1.3.1-GCCcore-13.3.0", "Python/3.12.3-GCCcore-13.3.0"]
    for module in modules[:2]:
        lay.module_file("cpu", module).parent.mkdir(parents=True, exist_ok=True)
        lay.module_file("cpu", module).write_text("-- built\n")
    lay.module_file("cpu", modules[2]).mkdir(parents=True)  # a folder of that name is no module file
    assert lay.installed("cpu", modules) == set(modules[:2])
    assert lay.installed("cuda", modules) == set()
