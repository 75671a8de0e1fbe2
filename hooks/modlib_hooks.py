"""modlib's site hooks for EasyBuild (passed to every build with --hooks).

Each hook is a thin shim over a plain function that takes explicit arguments, so the rules are
unit-tested without running eb. modlib passes the library root and the target kind to every
build in MODLIB_ROOT and MODLIB_TARGET_KIND.
"""

import os

from easybuild.tools.build_log import EasyBuildError
from easybuild.tools.config import build_option, install_path

GPU_PROPERTY = 'add_property("arch", "gpu")'


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


def pre_fetch_hook(self, *args, **kwargs):
    check_inside_root([self.installdir, install_path("mod")], os.environ.get("MODLIB_ROOT"))
    caps = self.cfg["cuda_compute_capabilities"] or build_option("cuda_compute_capabilities")
    check_cuda_capabilities(os.environ.get("MODLIB_TARGET_KIND"), caps)


def module_write_hook(self, filepath, module_txt, *args, **kwargs):
    return tag_gpu(os.environ.get("MODLIB_TARGET_KIND"), module_txt)
