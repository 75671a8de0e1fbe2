"""Everything modlib asks of EasyBuild's Python API, behind one module.

EasyBuild keeps its configuration in process-wide singletons and writes to ``os.environ``
while configuring; this adapter confines both, so the rest of modlib sees plain data:
parsed easyconfigs, module names, source lists.
"""

from __future__ import annotations

import collections
import contextlib
import io
import os
import re
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from builder.ebadapter.build_options import BUILD_ONLY, optparse_reason
from builder.ebadapter.sources import SourceFile, source_files
from builder.errors import BadInput, RunFailed, malformed_yaml


@dataclass(frozen=True)
class Dependency:
    module: str
    easyconfig: Path | None  # None: no easyconfig in any robot path (reported with its chain by the planner)
    hidden: bool
    build_only: bool
    name: str = ""
    version: str = ""  # EasyBuild's full version: <version>-<toolchain>-<toolchain version><suffix>


@dataclass(frozen=True)
class ParsedEasyconfig:
    path: Path
    name: str
    version: str
    module: str
    moduleclass: str
    deps: tuple[Dependency, ...]

    def data(self) -> dict:
        """The parse as JSON data, without paths: what the parse cache keeps and a sandboxed parse returns
        (dependencies are looked up again by ``Session.from_data``, in the runner)."""
        return {"name": self.name, "version": self.version, "module": self.module, "moduleclass": self.moduleclass,
                "deps": [{"module": d.module, "hidden": d.hidden, "build_only": d.build_only, "name": d.name,
                          "version": d.version} for d in self.deps]}


_FIELDS: dict[str, type] = {"name": str, "version": str, "module": str, "moduleclass": str, "deps": list}
_DEP_FIELDS: dict[str, type] = {"module": str, "hidden": bool, "build_only": bool, "name": str, "version": str}


def _shaped(data: object, fields: dict[str, type]) -> bool:
    return isinstance(data, dict) and data.keys() == fields.keys() and \
        all(isinstance(data[k], t) for k, t in fields.items())


def robot_folders(top: str) -> Iterator[str]:
    """The folders of a robot path as EasyBuild's index walks them, following links. A robot path that is
    ``/``, or a link in one back to a folder above it (``/`` included), would make that walk endless (the
    plan hung): bad input naming the path, found before the folders beyond the link are walked."""
    if os.path.realpath(top) == "/":
        raise BadInput(top, "a robot path cannot be the file system's root: EasyBuild would index the whole host")
    for folder, dirs, _ in os.walk(top, followlinks=True):
        yield folder
        for name in dirs:
            link = os.path.join(folder, name)
            if os.path.islink(link) and _above(top, folder, os.path.realpath(link)):
                raise BadInput(link, f"a link in the robot path {top} to {os.path.realpath(link)}, a folder "
                                     "above it: EasyBuild's index would walk it without end")


def _above(top: str, folder: str, real: str) -> bool:
    """Whether ``real`` is the real path of ``folder`` or of one of its folders up to ``top``, or above one."""
    while True:
        here = os.path.realpath(folder)
        if here == real or here.startswith(real.rstrip("/") + "/"):
            return True
        if folder == top or len(folder) <= len(top):
            return False
        folder = os.path.dirname(folder)


def upstream_easyconfigs() -> Path:
    """EasyBuild's own easyconfigs: where pip puts the easybuild-easyconfigs package data, found without
    importing EasyBuild (its configuration machinery costs 0.3 s, what a cached plan must not pay);
    EasyBuild's own search (``get_paths_for``) only where that folder is missing."""
    wheel_data = Path(sys.prefix) / "easybuild" / "easyconfigs"
    if wheel_data.is_dir():
        return wheel_data
    from easybuild.framework.easyconfig.tools import get_paths_for

    with _quiet_and_restored():
        os.environ.setdefault("EB_SCRIPT_PATH", str(Path(sys.prefix) / "bin" / "eb"))
        paths = get_paths_for(subdir="easyconfigs", robot_path=None) or []
    if not paths:
        raise BadInput("easybuild-easyconfigs", "EasyBuild's easyconfigs package is not installed")
    return Path(paths[0])


def eb_cli_options(opts: Mapping[str, object]) -> list[str]:
    """Easystack/target option dicts to command-line options, with EasyBuild's own rules."""
    from easybuild.tools.options import opts_dict_to_eb_opts

    return opts_dict_to_eb_opts(dict(opts))


def option_names() -> frozenset[str]:
    """The long options ``eb`` knows (``cuda-compute-capabilities``, ``optarch``), from its own parser."""
    from easybuild.tools.options import EasyBuildOptions

    with _quiet_and_restored():  # it warns that no ``eb`` is on PATH
        parser = EasyBuildOptions(go_args=[], go_useconfigfiles=False).parser
    return frozenset(name.removeprefix("--") for name in parser._long_opt)


def easyconfig_filename(name: str, version: str, toolchain: tuple[str, str]) -> str:
    """The file name EasyBuild's robot looks for (``Name-1.0-GCCcore-system.eb``), by EasyBuild's own rule."""
    from easybuild.tools.module_naming_scheme.utilities import det_full_ec_version

    full = det_full_ec_version({"version": version, "toolchain": {"name": toolchain[0], "version": toolchain[1]}})
    return f"{name}-{full}.eb"


@contextlib.contextmanager
def _quiet_and_restored() -> Iterator[None]:
    """EasyBuild prints progress, rewrites os.environ and tempfile.tempdir while configuring: undo all three."""
    saved_env, saved_tmp = dict(os.environ), tempfile.tempdir
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        tempfile.tempdir = saved_tmp


@contextlib.contextmanager
def configured(robot_paths: list[Path], hooks: Path | None, options: Mapping[str, object],
               origin: object = "easybuild_options") -> Iterator[Session]:
    """Configure EasyBuild for planning (no modules tool: ``--fetch``; nothing written outside a temp
    dir) and yield the session whose methods need that configuration. EasyBuild keeps it in
    process-wide singletons, so one session at a time, and none of its methods works after the block.
    ``origin`` is where the options come from, named when EasyBuild rejects one."""
    from easybuild.framework.easyconfig import easyconfig as ecmod
    from easybuild.tools import hooks as eb_hooks
    from easybuild.tools.options import set_up_configuration

    global _active
    if _active is not None:
        raise RuntimeError("EasyBuild is already configured by another session in this process")
    parse_opts = {k: v for k, v in options.items() if k not in BUILD_ONLY}
    with tempfile.TemporaryDirectory(prefix="modlib-eb-") as tmp, _quiet_and_restored():
        os.environ.setdefault("EB_SCRIPT_PATH", str(Path(sys.prefix) / "bin" / "eb"))
        own = ["--robot-paths=" + os.pathsep.join(str(p) for p in robot_paths), "--fetch",
               "--tmpdir=" + tmp, "--installpath=" + tmp, "--allow-use-as-root-and-accept-consequences",
               *([f"--hooks={hooks}"] if hooks is not None else [])]
        for cache in (ecmod._easyconfigs_cache, ecmod._easyconfig_files_cache, eb_hooks._cached_hooks):
            cache.clear()  # EasyBuild keeps these per process; a new configuration must not see old ones
        # EasyBuild's cfg_settings tuple, as main() unpacks it
        cfg = _set_up(set_up_configuration, own, eb_cli_options(parse_opts), hooks, origin)
        _active = session = Session(hooks)
        if cfg[6]:  # try_to_generate: a --try-* option asks for a tweak
            session.build_specs, session.tweak_dirs = cfg[0], cfg[8]
        try:
            yield session
        finally:
            session.closed = True
            _active = None


def _set_up(set_up_configuration, own: list[str], admins: list[str], hooks: Path | None, origin: object) -> tuple:
    """EasyBuild's configuration (its ``cfg_settings``), with its failures told apart: a hooks file that
    does not import is the admin's input, and so is an option EasyBuild rejects. optparse says why on
    stderr before it exits 2: that line is the reason, not the exit code."""
    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said):
            _, cfg = set_up_configuration(args=own + admins, silent=True, reconfigure=True)
    except (Exception, SystemExit) as err:  # EasyBuildError, or optparse's exit on a bad option
        why = optparse_reason(said.getvalue()) or " ".join(str(getattr(err, "msg", err)).split())
        raise BadInput(origin, f"EasyBuild rejects the options {' '.join(admins)}: {why}") from None
    if hooks is None:
        return cfg
    from easybuild.tools.hooks import load_hooks

    try:
        load_hooks(str(hooks))
    except (Exception, SystemExit) as err:  # the hooks file's own import error, whatever it is
        raise BadInput(hooks, f"the hooks file cannot be loaded: {err}") from None
    return cfg


#: The configured session, while one is: EasyBuild's configuration is process-wide, so is this.
_active: Session | None = None


def read_easystack(path: Path) -> list[tuple[str, dict]]:
    """(easyconfig file name, options) per entry, as EasyBuild's own easystack parser reads them."""
    import yaml
    from easybuild.framework.easystack import parse_easystack
    from easybuild.tools.build_log import EasyBuildError

    try:
        yaml.safe_load(path.read_bytes())  # EasyBuild's loader wraps a YAML error in lines of its own
        stack = parse_easystack(str(path))
    except yaml.YAMLError as err:
        raise malformed_yaml(path, err) from None
    except EasyBuildError as err:  # its first line says what is wrong, the rest shows an example
        said = re.sub(rf"\s*(in )?(easystack file )?{re.escape(str(path))}", "", err.msg.splitlines()[0])
        raise BadInput(path, f"invalid easystack: {said}") from None
    except Exception as err:  # what else EasyBuild's loader raises, as it is
        raise BadInput(path, f"malformed easystack: {' '.join(str(err).split())}") from None
    entries = []
    for name, opts in stack.ec_opt_tuples:
        if opts is not None and not isinstance(opts, dict):
            raise BadInput(path, f"entry {name}: 'options' must be a mapping of EasyBuild options, "
                                 f"not {type(opts).__name__} ({opts!r})")
        entries.append((name if name.endswith(".eb") else name + ".eb", dict(opts or {})))
    return entries


class Session:
    """EasyBuild, configured: what modlib asks of it while ``configured()`` holds. Methods of a closed
    session raise, instead of letting EasyBuild blame the admin's easyconfig for a missing configuration."""

    def __init__(self, hooks: Path | None) -> None:
        self.hooks = hooks
        self.closed = False
        self._indexes: dict[str, list[str]] = {}  # robot-path listings (EasyBuild's path index), by path
        self.build_specs: dict = {}  # what the --try-* options ask for (EasyBuild's build specs); {} without
        self.tweak_dirs: tuple[str, str] | None = None  # where EasyBuild writes tweaked easyconfigs

    def robot_paths(self) -> list[Path]:
        """The robot path this session resolves with (an entry's ``robot-paths`` replaces modlib's)."""
        from easybuild.tools.config import build_option

        self._check()
        return [Path(p) for p in build_option("robot_path") or []]

    def tweak(self, path: Path) -> Path:
        """The easyconfig EasyBuild's ``--try-*`` machinery makes of ``path`` (``eb --try-X PATH`` builds it),
        written with the tweaked dependencies it needs into ``tweak_dirs``, which the robot path holds."""
        self._check()
        from easybuild.framework.easyconfig.easyconfig import process_easyconfig
        from easybuild.framework.easyconfig.tweak import tweak
        from easybuild.tools.build_log import EasyBuildError
        from easybuild.tools.modules import modules_tool

        try:  # planning's modules tool (--fetch: EasyBuild's NoModulesTool) sees no module installed, as eb -D
            tweaked = tweak(process_easyconfig(str(path), validate=False), self.build_specs, modules_tool(),
                            targetdirs=self.tweak_dirs)
        except EasyBuildError as err:
            raise BadInput(path, f"cannot tweak easyconfig: {err.msg}") from None
        if not tweaked:
            raise BadInput(path, f"EasyBuild makes no easyconfig of it for {self.build_specs}")
        return Path(tweaked[0]["spec"])

    def generated(self, path: Path) -> bool:
        """Whether ``path`` is one of this session's tweaked easyconfigs (gone once the session ends)."""
        return any(path.is_relative_to(d) for d in self.tweak_dirs or ())

    @staticmethod
    def hidden_name(module: str) -> str:
        """The module name EasyBuild installs a hidden module under (``SQLite/.3.45.3``)."""
        from easybuild.tools.module_naming_scheme.utilities import det_hidden_modname

        return det_hidden_modname(module)

    def _check(self) -> None:
        if self.closed:
            raise RuntimeError("EasyBuild session used after its `with configured(...)` block ended")

    def robot_index(self, path: str) -> list[str]:
        """EasyBuild's index of a robot path (made in memory where none is stored), read once per session,
        without the folders ``eb`` skips when it locates easyconfigs (``--ignore-dirs``: ``.git``, ``.svn``;
        ``__archive__`` unless ``--consider-archived-easyconfigs``)."""
        from easybuild.framework.easyconfig.easyconfig import EASYCONFIGS_ARCHIVE_DIR
        from easybuild.tools.config import build_option
        from easybuild.tools.filetools import create_index, load_index

        self._check()
        if path not in self._indexes:
            ignored = list(build_option("ignore_dirs") or [])
            if not build_option("consider_archived_easyconfigs"):
                ignored.append(EASYCONFIGS_ARCHIVE_DIR)
            index = None if build_option("ignore_index") else load_index(path, ignore_dirs=ignored)
            if index is None:
                collections.deque(robot_folders(path), maxlen=0)  # refuses what would never end
            self._indexes[path] = sorted(index if index is not None else create_index(path, ignore_dirs=ignored))
        return self._indexes[path]

    def locate(self, filenames: list[str], origin: Path) -> list[Path]:
        """Find easystack entries as ``eb`` finds them (EasyBuild's locate_files): a file name in the robot
        paths in order, through EasyBuild's own path index, the first path that holds it wins. Stricter
        than ``eb`` where it guesses: a path (``../x.eb``) is read relative to the easystack ``origin``,
        never to the working folder, and a name held twice in one robot path (``eb`` takes whichever its
        index lists first) is bad input naming both. Indexed by name once here; EasyBuild compares every
        name with every index entry, 3 million comparisons for EESSI's list."""
        self._check()
        from easybuild.tools.config import build_option

        paths = [n for n in dict.fromkeys(filenames) if n != os.path.basename(n)]
        found = {name: (origin.parent / name).resolve() for name in paths}
        for name, file in found.items():
            if not file.is_file():
                raise BadInput(origin, f"easyconfig '{name}' not found (read relative to the easystack: {file})")
        robot = [p for p in build_option("robot_path") or [] if os.path.isdir(p)]
        found.update(self._by_name({n for n in filenames if n not in found}, robot, origin))
        unknown = [n for n in dict.fromkeys(filenames) if n not in found]
        if unknown:
            raise BadInput(origin, "; ".join(f"unknown easyconfig '{n}' (not in any robot path{self.did_you_mean(n)})"
                                             for n in unknown))
        for name in paths:
            self._check_path_entry(name, found[name], robot, origin)
        return [found[n] for n in filenames]

    def _by_name(self, names: set[str], robot: list[str], origin: Path) -> dict[str, Path]:
        """The file each name is in the first robot path that holds it; one held twice there is bad input."""
        found: dict[str, Path] = {}
        for path in robot:
            hits: dict[str, list[str]] = {}
            for rel in self.robot_index(path):
                hits.setdefault(os.path.basename(rel), []).append(rel)
            for name in sorted((names - found.keys()) & hits.keys()):
                if len(hits[name]) > 1:
                    both = " and ".join(os.path.join(path, rel) for rel in hits[name])
                    raise BadInput(origin, f"easyconfig '{name}' is in two folders of the robot path {path}: {both}")
                found[name] = Path(os.path.abspath(os.path.join(path, hits[name][0])))
        return found

    def did_you_mean(self, filename: str, software: str = "") -> str:
        """``; did you mean X?`` for the easyconfig names in the robot paths closest to ``filename``, only
        among those of ``software`` where that is known (a missing dependency's version)."""
        import difflib

        from easybuild.tools.config import build_option

        names = {os.path.basename(rel) for p in build_option("robot_path") or [] if os.path.isdir(p)
                 for rel in self.robot_index(p) if rel.endswith(".eb")}
        names = {n for n in names if n.startswith(f"{software}-")} if software else names
        close = difflib.get_close_matches(filename, sorted(names), n=3, cutoff=0.8)
        return f"; did you mean {' or '.join(close)}?" if close else ""

    def _check_path_entry(self, name: str, file: Path, robot: list[str], origin: Path) -> None:
        """A path entry inside a robot path is built by its file name, as every robot-path easyconfig is:
        refused when that name would find another file there (the plan and the build would part ways)."""
        inside = [p for p in robot if file.is_relative_to(os.path.realpath(p))]
        if not inside:
            return
        by_name = self._by_name({file.name}, robot, origin).get(file.name)
        if by_name is None or by_name.resolve() != file:
            raise BadInput(origin, f"entry '{name}' is {file}, inside the robot path {inside[0]}, but EasyBuild "
                                   f"finds {by_name or 'nothing'} by its name there; name the easyconfig by its "
                                   "file name, or keep the file outside the robot paths")

    def parse(self, path: Path) -> ParsedEasyconfig:
        """Parse with EasyBuild (templates, hooks, filters) and look each dependency up with its robot; one
        that has no easyconfig is kept (``easyconfig=None``), so that the planner reports all of them."""
        self._check()
        from easybuild.framework.easyconfig.easyconfig import ActiveMNS, process_easyconfig, robot_find_easyconfig
        from easybuild.tools.build_log import EasyBuildError
        from easybuild.tools.module_naming_scheme.utilities import det_full_ec_version

        try:
            ec = process_easyconfig(str(path), validate=False)[0]["ec"]
            mns = ActiveMNS()
            module = mns.det_full_module_name(ec)
            build_only = {mns.det_full_module_name(d) for d in ec.builddependencies()}
            deps = []
            for dep in ec.all_dependencies:
                if dep.get("external_module"):
                    continue
                version = det_full_ec_version(dep)
                found = robot_find_easyconfig(dep["name"], version)
                dep_mod = mns.det_full_module_name(dep)
                deps.append(Dependency(module=dep_mod, easyconfig=Path(found) if found else None,
                                       hidden=bool(dep.get("hidden")),
                                       build_only=dep_mod in build_only, name=dep["name"], version=version))
            return ParsedEasyconfig(path=path, name=ec.name, version=ec.version, module=module,
                                    moduleclass=ec["moduleclass"], deps=tuple(deps))
        except EasyBuildError as err:
            raise BadInput(path, f"cannot parse easyconfig: {err.msg}") from None
        except SyntaxError as err:
            raise BadInput(path, f"easyconfig syntax error at line {err.lineno}: {err.msg}") from None
        except Exception as err:  # raised by a site hook, or by EasyBuild itself: not the easyconfig's fault
            raise RunFailed(f"{path}: parsing failed in EasyBuild or the site hooks ({self.hooks}): "
                            f"{type(err).__name__}: {err}") from err

    def from_data(self, data: object, path: Path) -> ParsedEasyconfig:
        """A parse from ``ParsedEasyconfig.data``'s form, its dependencies looked up with this session's robot;
        anything else (a torn cache entry, a hostile parse's answer) is a ValueError."""
        if not isinstance(data, dict) or not _shaped(data, _FIELDS) or \
                not all(_shaped(d, _DEP_FIELDS) for d in data["deps"]):
            raise ValueError(f"not a parse of {path.name}: {str(data)[:200]}")
        deps = tuple(Dependency(**{**d, "easyconfig": self.find(d["name"], d["version"])}) for d in data["deps"])
        return ParsedEasyconfig(**{**data, "path": path, "deps": deps})

    def find(self, name: str, version: str) -> Path | None:
        """EasyBuild's robot look-up: the easyconfig for a name and full version, site folders first."""
        self._check()
        from easybuild.framework.easyconfig.easyconfig import robot_find_easyconfig

        found = robot_find_easyconfig(name, version)
        return Path(found) if found else None

    def parse_context(self, hooks: Path | None, robot_paths: list[Path], options: Mapping[str, object]) -> dict:
        """Everything besides an easyconfig's own text that can change what parsing it gives: EasyBuild
        picks a dependency's subtoolchain by which easyconfigs exist, so the robot paths' listings count."""
        import hashlib

        from easybuild.tools.version import VERSION

        listings = []
        for path in robot_paths:
            index = self.robot_index(str(path)) if path.is_dir() else []
            listings.append(hashlib.sha256("\n".join(sorted(index)).encode()).hexdigest())
        return {"easybuild": str(VERSION), "robot_paths": [str(p) for p in robot_paths], "listings": listings,
                "hooks": hooks.read_text() if hooks and hooks.is_file() else None,
                "options": sorted((k, str(v)) for k, v in options.items() if k not in BUILD_ONLY)}

    def source_files(self, path: Path) -> list[SourceFile]:
        """Sources and patches of one easyconfig (extensions included), templates resolved by EasyBuild."""
        self._check()
        return source_files(path)


def permanent_exit_codes() -> list[int]:
    """EasyBuild's exit codes that the same command cannot escape by running again: broken options or
    easyconfigs, failed build steps, bad checksums, and its generic error (1), which is also what a
    failing shell command of a step without a code of its own (postinstallcmds in the postproc step,
    sanity check commands, extraction) exits with. Fetch and download failures stay retryable (a
    mirror may be back); so does anything above EasyBuild's codes (a signal: 137, 143)."""
    from easybuild.tools.build_log import EasyBuildExit as X

    transient = {X.SUCCESS, X.FAIL_FETCH_STEP, X.FAIL_DOWNLOAD, X.FAIL_GITHUB}
    return sorted(int(code) for code in X if code not in transient)


def software_variable(name: str) -> str:
    """A software name as EasyBuild spells it in module files' variables (EBROOT<X>, EBVERSION<X>)."""
    from easybuild.tools.filetools import convert_name

    return convert_name(name, upper=True)
