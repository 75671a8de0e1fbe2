"""The library's own Python (issue 22): built from source into the demo library, needing nothing of a notebook
image but glibc, and what a notebook imports after `module load` comes from the library, on that Python."""

import json
import shlex

import pytest

from tests.helpers import REPO, bare_image, lmod, modlib

pytestmark = pytest.mark.e2e
CONFIG = str(REPO / "easyconfigs" / "library.yaml")
#: what glibc provides: the only shared libraries a notebook image must have for the library's Python
GLIBC = {"linux-vdso.so.1", "libc.so.6", "libm.so.6", "libpthread.so.0", "libdl.so.2", "librt.so.1",
         "libutil.so.1", "ld-linux-x86-64.so.2", "/lib64/ld-linux-x86-64.so.2"}
STDLIB = ["ssl", "sqlite3", "readline", "ctypes", "lzma", "bz2", "zlib", "hashlib", "curses", "decimal"]


def _loaded(library, script: str) -> str:
    root, env, _ = library
    lines = modlib("env", "--config", CONFIG, "--target", "cpu", env=env, check=True).stdout
    result = lmod(f"eval {shlex.quote(lines)}\nmodule load Python\n{script}")
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_python_and_its_modules_need_only_glibc(demo_library):
    """ldd of the interpreter, libpython and every extension module, with the module loaded: each library is
    the library's own or glibc's, so an image with glibc alone runs it."""
    root = demo_library[0]
    out = _loaded(demo_library, 'cd "$EBROOTPYTHON" && for f in bin/python3.11 lib/libpython3.11.so.1.0 '
                                'lib/python3.11/lib-dynload/*.so; do echo "== $f"; ldd "$f"; done')
    outside = []
    for line in out.splitlines():
        if line.startswith("== "):
            current = line[3:]
            continue
        if line.strip() == "statically linked":  # an extension module that needs no library at all
            continue
        name, _, where = line.strip().partition(" => ")
        name, path = name.split(" (")[0], where.split(" (")[0]
        if "not found" in where or (name not in GLIBC and not path.startswith(str(root.resolve()) + "/")):
            outside.append(f"{current}: {line.strip()}")
    assert "lib-dynload/_ssl" in out and "lib-dynload/_sqlite3" in out
    assert outside == []


def test_python_has_its_standard_library(demo_library):
    root = demo_library[0]
    code = (f"import json, sys, {', '.join(STDLIB)}; "
            "print(json.dumps([sys.executable, ssl.OPENSSL_VERSION, sqlite3.sqlite_version, sys.version]))")
    executable, openssl, sqlite, version = json.loads(_loaded(demo_library, f"python -c {shlex.quote(code)}"))
    assert executable.startswith((str(root) + "/", str(root.resolve()) + "/"))
    assert openssl.startswith("OpenSSL 3.0.22") and sqlite == "3.40.1" and version.startswith("3.11.2")


def test_bare_image_imports_the_loaded_jinja2_on_the_librarys_python(demo_library, tmp_path):
    """In a mount namespace without the host's Lmod and any Python but the library's: env.sh, module load,
    python -c 'import jinja2' gives the loaded version, from the library, run by the library's Python."""
    root = demo_library[0]
    code = "import jinja2, json, sys; print(json.dumps([jinja2.__version__, jinja2.__file__, sys.executable]))"
    result = bare_image(f"source {root}/live/targets/cpu/env.sh && module load Jinja2/3.1.4 && "
                        f"python -c {shlex.quote(code)}", tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    version, where, executable = json.loads(result.stdout.strip().splitlines()[-1])
    assert version == "3.1.4"
    assert where.startswith(str(root) + "/") and "Jinja2" in where
    assert executable.startswith(str(root) + "/") and "Python" in executable
