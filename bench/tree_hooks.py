"""EasyBuild hooks for the benchmark tree: stub files in each install dir before its module is made.

EasyBuild writes ``prepend_path(...)`` only for folders of the install dir that exist and hold files,
and ``--module-only`` installs nothing, so without stubs every module would lack the PATH,
LD_LIBRARY_PATH, CPATH, MANPATH, PKG_CONFIG_PATH ... lines that real modules have and that Lmod
processes on every load. The LLVM easyblock also refuses to write a module without its runtime
library folder. Used by ``make_module_tree.py`` both in-process and as ``eb --hooks``.
"""

from pathlib import Path

#: Relative paths of the stub files; the folders are those a typical autotools/CMake install has.
STUB_FILES = (
    "bin/stub",
    "lib/libstub.so",
    "lib/pkgconfig/stub.pc",
    "lib/x86_64-unknown-linux-gnu/libstub.so",  # LLVM's runtime library folder (llvm.py: host triple)
    "include/stub.h",
    "share/man/man1/stub.1",
)


def write_stubs(installdir: str) -> None:
    """Create the stub files (empty) under ``installdir``."""
    for rel in STUB_FILES:
        path = Path(installdir, rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()


def pre_prepare_hook(self, *args, **kwargs):
    """Before the prepare step (which easyblocks use to find e.g. Python's site-packages folders)."""
    write_stubs(self.installdir)
