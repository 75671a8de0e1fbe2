"""Everything modlib asks of EasyBuild's Python API, behind one module.

EasyBuild keeps its configuration in process-wide singletons and writes to ``os.environ``
while configuring; this adapter confines both, so the rest of modlib sees plain data:
parsed easyconfigs, module names, source lists.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from builder.errors import BadInput, RunFailed

#: Options that only change how ``eb`` builds, never what planning resolves; kept out of the parse config.
_BUILD_ONLY = {"parallel", "set-default-module", "hidden", "rebuild", "force"}


@dataclass(frozen=True)
class Dependency:
    module: str
    easyconfig: Path
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


@dataclass(frozen=True)
class SourceFile:
    """One file a build needs: where EasyBuild looks for it (``subdir``/``filename``) and where to get it."""

    filename: str
    subdir: str
    urls: tuple[str, ...]
    checksum: object  # EasyBuild's checksum spec: str, tuple, dict, list of those, or None
    owner: Path  # the easyconfig that asks for it


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
def configured(robot_paths: list[Path], hooks: Path | None, options: Mapping[str, object]) -> Iterator[Session]:
    """Configure EasyBuild for planning (no modules tool: ``--fetch``; nothing written outside a temp
    dir) and yield the session whose methods need that configuration. EasyBuild keeps it in
    process-wide singletons, so one session at a time, and none of its methods works after the block."""
    from easybuild.framework.easyconfig import easyconfig as ecmod
    from easybuild.tools import hooks as eb_hooks
    from easybuild.tools.options import set_up_configuration

    global _active
    if _active is not None:
        raise RuntimeError("EasyBuild is already configured by another session in this process")
    parse_opts = {k: v for k, v in options.items() if k not in _BUILD_ONLY}
    with tempfile.TemporaryDirectory(prefix="modlib-eb-") as tmp, _quiet_and_restored():
        os.environ.setdefault("EB_SCRIPT_PATH", str(Path(sys.prefix) / "bin" / "eb"))
        args = ["--robot-paths=" + os.pathsep.join(str(p) for p in robot_paths), "--fetch",
                "--tmpdir=" + tmp, "--installpath=" + tmp, "--allow-use-as-root-and-accept-consequences",
                *eb_cli_options(parse_opts)]
        if hooks is not None:
            args.append(f"--hooks={hooks}")
        for cache in (ecmod._easyconfigs_cache, ecmod._easyconfig_files_cache, eb_hooks._cached_hooks):
            cache.clear()  # EasyBuild keeps these per process; a new configuration must not see old ones
        _set_up(set_up_configuration, args, hooks)
        _active = session = Session(hooks)
        try:
            yield session
        finally:
            session.closed = True
            _active = None


def _set_up(set_up_configuration, args: list[str], hooks: Path | None) -> None:
    """EasyBuild's configuration, with its failures told apart: a hooks file that does not import is the
    admin's input, and so is an option EasyBuild rejects."""
    try:
        set_up_configuration(args=args, silent=True, reconfigure=True)
    except (Exception, SystemExit) as err:  # EasyBuildError, or optparse's exit on a bad option
        raise BadInput("easybuild_options", f"EasyBuild rejects the options {args[5:]}: {err}") from None
    if hooks is None:
        return
    from easybuild.tools.hooks import load_hooks

    try:
        load_hooks(str(hooks))
    except (Exception, SystemExit) as err:  # the hooks file's own import error, whatever it is
        raise BadInput(hooks, f"the hooks file cannot be loaded: {err}") from None


#: The configured session, while one is: EasyBuild's configuration is process-wide, so is this.
_active: Session | None = None


def read_easystack(path: Path) -> list[tuple[str, dict]]:
    """(easyconfig file name, options) per entry, as EasyBuild's own easystack parser reads them."""
    from easybuild.framework.easystack import parse_easystack
    from easybuild.tools.build_log import EasyBuildError

    try:
        stack = parse_easystack(str(path))
    except EasyBuildError as err:
        raise BadInput(path, f"invalid easystack: {err.msg}") from None
    except Exception as err:  # yaml errors surface as plain exceptions from EasyBuild's loader
        raise BadInput(path, f"malformed easystack YAML: {err}") from None
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

    def _check(self) -> None:
        if self.closed:
            raise RuntimeError("EasyBuild session used after its `with configured(...)` block ended")

    def robot_index(self, path: str) -> list[str]:
        """EasyBuild's index of a robot path (made in memory where none is stored), read once per session."""
        from easybuild.tools.config import build_option
        from easybuild.tools.filetools import create_index, load_index

        self._check()
        if path not in self._indexes:
            index = None if build_option("ignore_index") else load_index(path)
            self._indexes[path] = list(index) if index is not None else list(create_index(path))
        return self._indexes[path]

    def locate(self, filenames: list[str], origin: Path) -> list[Path]:
        """Find easyconfigs by file name as ``eb NAME.eb`` does (EasyBuild's locate_files): robot paths in
        order, each through EasyBuild's own path index, first hit wins. Indexed by name once here;
        EasyBuild compares every name with every index entry, 3 million comparisons for EESSI's list."""
        self._check()
        from easybuild.tools.config import build_option

        found: dict[str, Path] = {}
        for name in filenames:
            if name != os.path.basename(name) or os.path.exists(name):  # a path, as `eb PATH` takes it
                if not os.path.isfile(name):
                    raise BadInput(origin, f"easyconfig '{name}' not found")
                found[name] = Path(name).resolve()
        for path in build_option("robot_path") or []:
            missing = {n for n in filenames if n not in found}
            if not missing or not os.path.exists(path):
                continue
            for rel in self.robot_index(path):
                name = os.path.basename(rel)
                if name in missing and name not in found:
                    found[name] = Path(os.path.abspath(os.path.join(path, rel)))
        unknown = [n for n in filenames if n not in found]
        if unknown:
            raise BadInput(origin, f"unknown easyconfig '{unknown[0]}' (not in any robot path)")
        return [found[n] for n in filenames]

    def parse(self, path: Path) -> ParsedEasyconfig:
        """Parse with EasyBuild (templates, hooks, filters) and look each dependency up with its robot."""
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
                if found is None:
                    raise BadInput(path, f"no easyconfig for dependency {dep_mod} in any robot path")
                deps.append(Dependency(module=dep_mod, easyconfig=Path(found), hidden=bool(dep.get("hidden")),
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
                "options": sorted((k, str(v)) for k, v in options.items() if k not in _BUILD_ONLY)}

    def source_files(self, path: Path) -> list[SourceFile]:
        """Sources and patches of one easyconfig (extensions included), templates resolved by EasyBuild."""
        self._check()
        from easybuild.framework.easyblock import get_easyblock_instance
        from easybuild.framework.easyconfig.easyconfig import letter_dir_for, process_easyconfig
        from easybuild.tools.build_log import EasyBuildError
        from easybuild.tools.filetools import create_patch_info

        try:
            block = get_easyblock_instance(process_easyconfig(str(path), validate=False)[0])
            cfg = block.cfg
            subdir = os.path.join(letter_dir_for(cfg.name), cfg.name)
            sources = cfg["sources"] or cfg["data_sources"]
            sources = [sources] if isinstance(sources, dict) else list(sources)
            checksums = cfg["checksums"]
            files = []
            for index, src in enumerate(sources):
                spec = {"filename": src} if isinstance(src, str) else dict(src)
                if spec.get("git_config"):
                    raise BadInput(path, f"source {spec['filename']}: git sources cannot be pre-fetched")
                remote = spec.get("download_filename") or spec["filename"]
                urls = spec.get("source_urls") or cfg["source_urls"] or []
                files.append(SourceFile(
                    filename=spec["filename"], subdir=subdir, owner=path,
                    urls=tuple(f"{u.rstrip('/')}/{remote}" for u in urls),
                    checksum=block.get_checksum_for(checksums, filename=spec["filename"], index=index)))
            for offset, patch in enumerate(cfg["patches"] + cfg["postinstallpatches"]):
                name = create_patch_info(patch)["name"]
                beside = path.parent / name  # patches live next to their easyconfig in robot layout
                files.append(SourceFile(
                    filename=name, subdir=subdir, owner=path, urls=(beside.as_uri(),),
                    checksum=block.get_checksum_for(checksums, filename=name, index=len(sources) + offset)))
            return files + self._extension_files(block, subdir, path)
        except EasyBuildError as err:
            raise BadInput(path, f"cannot list sources: {err.msg}") from None

    def _extension_files(self, block, subdir: str, path: Path) -> list[SourceFile]:
        """Extension sources, as EasyBuild's ``collect_exts_file_info`` names them, with their URLs resolved
        the way it resolves them (parent templates plus the extension's own name and version)."""
        import copy

        from easybuild.framework.easyconfig.easyconfig import resolve_template
        from easybuild.framework.easyconfig.templates import template_constant_dict

        files = []
        for ext in block.collect_exts_file_info(fetch_files=False, verify_checksums=False):
            if "options" not in ext or ext["options"].get("nosource") or not ext.get("sources"):
                continue
            values = copy.deepcopy(block.cfg.template_values)
            values.update(template_constant_dict({"name": ext["name"], "version": ext["version"]}))
            urls = resolve_template(ext["options"].get("source_urls", []), values)
            filename = ext["sources"][0]
            files.append(SourceFile(filename=filename, subdir=subdir, owner=path,
                                    urls=tuple(f"{u.rstrip('/')}/{filename}" for u in urls),
                                    checksum=block.get_checksum_for(ext["checksums"], filename=filename, index=0)))
        return files


#: Checksum types that identify a file's content; size, crc32, adler32, md5 and sha1 can be forged.
STRONG_CHECKSUMS = frozenset({"sha256", "sha512"})


def checksum_weakness(spec: object) -> str | None:
    """Why the easyconfig's checksum spec would let another file in, or None. EasyBuild's rules: a string
    is sha256 (64 characters) or md5 (32); a list must all match, so one strong entry suffices; a tuple of
    alternatives matches if any does, so each must be strong; a dict holds one spec per file name."""
    if spec is None or spec == [] or spec == "":
        return "no checksum in the easyconfig (modlib enforces checksums)"
    if _strong(spec):
        return None
    return f"only sha256 or sha512 checksums are accepted, not {spec!r}"


def _strong(spec: object) -> bool:
    from easybuild.tools.filetools import CHECKSUM_FUNCTIONS

    if isinstance(spec, str):
        return len(spec) == 64
    if isinstance(spec, dict):
        return bool(spec) and all(_strong(v) for v in spec.values())
    if isinstance(spec, list):
        return any(_strong(v) for v in spec)
    if isinstance(spec, tuple) and len(spec) == 2 and spec[0] in CHECKSUM_FUNCTIONS:  # (type, value)
        return spec[0] in STRONG_CHECKSUMS
    return isinstance(spec, tuple) and bool(spec) and all(_strong(v) for v in spec)  # alternatives


def checksum_problem(path: Path, spec: object) -> str | None:
    """None when ``path`` matches the easyconfig's checksum spec; else what is wrong (missing, too weak
    to count, or a mismatch)."""
    from easybuild.tools.filetools import compute_checksum, verify_checksum

    weakness = checksum_weakness(spec)
    if weakness:
        return weakness
    if verify_checksum(str(path), spec):
        return None
    return f"checksum mismatch (sha256 of the file: {compute_checksum(str(path), 'sha256')}, expected {spec})"


def config_guess_dir(sources: Path) -> Path:
    """Where EasyBuild's ConfigureMake looks for (and downloads) a recent config.guess in the source
    cache. Builds see the cache read-only and offline: the folder must exist, so that the download
    fails as EasyBuild expects (a warning, the tarball's own config.guess used) rather than on mkdir."""
    from easybuild.easyblocks import VERSION as EASYBLOCKS_VERSION

    return sources / "generic" / f"eb_v{EASYBLOCKS_VERSION}" / "ConfigureMake"


def permanent_exit_codes() -> list[int]:
    """EasyBuild's exit codes that the same command cannot escape by running again: broken
    options or easyconfigs, failed build steps, bad checksums. Generic errors, fetch and download
    failures stay retryable (a mirror may be back)."""
    from easybuild.tools.build_log import EasyBuildExit as X

    transient = {X.SUCCESS, X.ERROR, X.FAIL_FETCH_STEP, X.FAIL_DOWNLOAD, X.FAIL_GITHUB}
    return sorted(int(code) for code in X if code not in transient)


def software_variable(name: str) -> str:
    """A software name as EasyBuild spells it in module files' variables (EBROOT<X>, EBVERSION<X>)."""
    from easybuild.tools.filetools import convert_name

    return convert_name(name, upper=True)
