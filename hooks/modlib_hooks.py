"""modlib's site hooks for EasyBuild (passed to every build with --hooks).

Each hook is a thin shim over a plain function that takes explicit arguments, so the rules are
unit-tested without running eb. modlib passes the library root and the target kind to every build in MODLIB_ROOT and
MODLIB_TARGET_KIND, and, for a library built for a notebook image's Python (library.yaml's
`python:`, the migration path), that Python in MODLIB_PYTHON.
"""

import glob
import os
import re
import shutil

from easybuild.tools.build_log import EasyBuildError
from easybuild.tools.config import build_option, install_path

GPU_PROPERTY = 'add_property("arch", "gpu")'
#: A Python shebang, as EasyBuild's EasyBlock.fix_shebang matches it ('#!/usr/bin/env python', '#!/x/bin/python3').
PYTHON_SHEBANG = re.compile(r"^#![ ]*.*[/ ]python.*")
#: Where packages put their scripts when the easyconfig names no other place (PythonPackage's default).
SCRIPT_GLOBS = ["bin/*"]


def check_inside_root(paths, root):
    """Refuse to install anywhere but under the library root: notebooks only see that volume."""
    if not root:
        raise EasyBuildError("MODLIB_ROOT is not set: builds of this library run through modlib")
    real_root = os.path.realpath(root)
    for path in paths:
        real = os.path.realpath(path)
        if os.path.commonpath([real, real_root]) != real_root:
            raise EasyBuildError("refusing to install %s outside the library root %s", path, root)


def check_cuda_capabilities(target_kind, capabilities):
    """A cuda-tree build without compute capabilities would silently target whatever nvcc defaults to."""
    if target_kind == "cuda" and not capabilities:
        raise EasyBuildError("cuda target build without compute capabilities: "
                             "set cuda-compute-capabilities in the target's easybuild_options")


def tag_gpu(target_kind, module_txt):
    """Modules of the cuda tree carry Lmod's gpu property, shown as (g) by module avail."""
    if target_kind == "cuda" and GPU_PROPERTY not in module_txt:
        return module_txt.rstrip("\n") + "\n" + GPU_PROPERTY + "\n"
    return module_txt


def library_python(value, path=None):
    """MODLIB_PYTHON, the notebook image's Python that a library built for it names (the migration path),
    as an absolute path (a bare name is looked up on PATH): the one command every notebook image has at
    that path, unlike a 'python' on PATH (Debian has only 'python3'). None where there is none: the
    library has its own Python module, which its Python packages depend on."""
    if not value:
        return None
    found = value if os.path.isabs(value) else shutil.which(value, path=path)
    if not found:
        raise EasyBuildError("MODLIB_PYTHON (%s) is not an executable: the library's Python is needed to "
                             "start the scripts that Python packages install", value)
    return found


def fix_python_shebangs(installdir, patterns, python):
    """Scripts installed by Python packages start with the library's Python. EasyBuild's own fix
    (fix_python_shebang_for) can only write '#!<env> python', which fails where no 'python' is on PATH,
    so the files it names (and bin/*) get '#!<python>' instead. Returns the files changed."""
    changed = []
    patterns = [patterns] if isinstance(patterns, str) else list(patterns or [])
    for pattern in SCRIPT_GLOBS + [p for p in patterns if p not in SCRIPT_GLOBS]:
        for path in sorted(glob.glob(os.path.join(installdir, pattern))):
            if os.path.islink(path) or not os.path.isfile(path):
                continue
            with open(path, "rb") as handle:
                first = handle.readline()
            if not first.startswith(b"#!"):
                continue
            line = first.decode("utf-8", "replace").rstrip("\n")
            if PYTHON_SHEBANG.match(line) and line != "#!" + python:
                with open(path, "rb") as handle:
                    rest = handle.read()[len(first):]
                with open(path, "wb") as handle:
                    handle.write(("#!" + python + "\n").encode() + rest)
                changed.append(path)
    return changed


def without_python(path):
    """PATH without the folders that hold a 'python' command: the sanity check then runs installed
    scripts as a notebook image without one would, so a script that needs 'python' fails the build."""
    keep = [d for d in (path or "").split(os.pathsep)
            if d and not os.access(os.path.join(d, "python"), os.X_OK)]
    return os.pathsep.join(keep)


def pre_fetch_hook(self, *args, **kwargs):
    check_inside_root([self.installdir, install_path("mod")], os.environ.get("MODLIB_ROOT"))
    caps = self.cfg["cuda_compute_capabilities"] or build_option("cuda_compute_capabilities")
    check_cuda_capabilities(os.environ.get("MODLIB_TARGET_KIND"), caps)


def post_postproc_hook(self, *args, **kwargs):
    """After EasyBuild's own shebang fix (post_install_step, part of postproc), before the sanity check.
    A library with its own Python keeps EasyBuild's '#!/usr/bin/env python': the module's Python
    dependency puts that 'python' on PATH wherever the module is loaded."""
    python = library_python(os.environ.get("MODLIB_PYTHON"))
    if python is None:
        return
    for path in fix_python_shebangs(self.installdir, self.cfg["fix_python_shebang_for"], python):
        self.log.info("modlib: shebang of %s set to #!%s", path, python)


def pre_sanitycheck_hook(self, *args, **kwargs):
    """The environment the sanity check loads the module into (EasyBuild restores initial_environ first):
    its only 'python' is then the one the module's own dependencies bring (the library's Python module),
    so a script that needs 'python' in a module without it fails the build."""
    for environ in (os.environ, self.initial_environ):
        environ["PATH"] = without_python(environ.get("PATH"))


def module_write_hook(self, filepath, module_txt, *args, **kwargs):
    return tag_gpu(os.environ.get("MODLIB_TARGET_KIND"), module_txt)
