"""What a build fetches, as EasyBuild names it: sources, patches and extension sources of an easyconfig,
and EasyBuild's checksum rules that modlib enforces before any build may use them.

Part of the EasyBuild adapter (its functions import EasyBuild when called): the source listing runs inside a
configured session (``Session.source_files``); the checksum rules need none.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from builder.errors import BadInput


@dataclass(frozen=True)
class SourceFile:
    """One file a build needs: where EasyBuild looks for it (``subdir``/``filename``) and where to get it."""

    filename: str
    subdir: str
    urls: tuple[str, ...]
    checksum: object  # EasyBuild's checksum spec: str, tuple, dict, list of those, or None
    owner: Path  # the easyconfig that asks for it

    def data(self) -> dict:
        """As JSON data (a tuple or a dict of the checksum spec tagged, they mean other things than a list)."""
        return {"filename": self.filename, "subdir": self.subdir, "urls": list(self.urls),
                "checksum": _tagged(self.checksum)}

    @staticmethod
    def from_data(data: object, owner: Path) -> SourceFile:
        """From ``data()``'s form; anything else (a hostile parse's answer) is a ValueError."""
        if not isinstance(data, dict) or data.keys() != {"filename", "subdir", "urls", "checksum"} or \
                not isinstance(data["filename"], str) or not isinstance(data["subdir"], str) or \
                not isinstance(data["urls"], list) or not all(isinstance(u, str) for u in data["urls"]):
            raise ValueError(f"not a source of {owner.name}: {str(data)[:200]}")
        return SourceFile(filename=data["filename"], subdir=data["subdir"], urls=tuple(data["urls"]),
                          checksum=_untagged(data["checksum"]), owner=owner)


def _tagged(spec: object) -> object:
    if isinstance(spec, tuple):
        return {"tuple": [_tagged(v) for v in spec]}
    if isinstance(spec, dict):
        return {"dict": [[str(k), _tagged(v)] for k, v in spec.items()]}
    if isinstance(spec, list):
        return [_tagged(v) for v in spec]
    return spec


def _untagged(data: object) -> object:
    if isinstance(data, list):
        return [_untagged(v) for v in data]
    if isinstance(data, dict) and data.keys() == {"tuple"} and isinstance(data["tuple"], list):
        return tuple(_untagged(v) for v in data["tuple"])
    if isinstance(data, dict) and data.keys() == {"dict"} and isinstance(data["dict"], list) and \
            all(isinstance(kv, list) and len(kv) == 2 and isinstance(kv[0], str) for kv in data["dict"]):
        return {k: _untagged(v) for k, v in data["dict"]}
    if data is None or (isinstance(data, (str, int)) and not isinstance(data, bool)):
        return data
    raise ValueError(f"not a checksum spec: {str(data)[:200]}")


def source_files(path: Path) -> list[SourceFile]:
    """Sources and patches of one easyconfig (extensions included), templates resolved by EasyBuild; the
    caller holds a configured session."""
    from easybuild.framework.easyblock import get_easyblock_instance
    from easybuild.framework.easyconfig.easyconfig import letter_dir_for, process_easyconfig
    from easybuild.tools.build_log import EasyBuildError
    from easybuild.tools.filetools import create_patch_info

    try:
        block = get_easyblock_instance(process_easyconfig(str(path), validate=False)[0])
        cfg = block.cfg
        subdir = os.path.join(letter_dir_for(cfg.name), confined(path, "name", cfg.name))
        sources = cfg["sources"] or cfg["data_sources"]
        sources = [sources] if isinstance(sources, dict) else list(sources)
        checksums = cfg["checksums"]
        _checksum_keys(path, "checksums", checksums)
        files = []
        for index, src in enumerate(sources):
            spec = {"filename": src} if isinstance(src, str) else dict(src)
            confined(path, f"sources[{index}] filename", spec.get("filename"))
            if spec.get("git_config"):
                raise BadInput(path, f"source {spec['filename']}: git sources cannot be pre-fetched")
            remote = confined(path, f"sources[{index}] download_filename",
                              spec.get("download_filename") or spec["filename"])
            urls = spec.get("source_urls") or cfg["source_urls"] or []
            files.append(SourceFile(
                filename=spec["filename"], subdir=_location(path, f"sources[{index}]", spec, subdir), owner=path,
                urls=tuple(f"{u.rstrip('/')}/{remote}" for u in urls),
                checksum=block.get_checksum_for(checksums, filename=spec["filename"], index=index)))
        for offset, patch in enumerate(cfg["patches"] + cfg["postinstallpatches"]):
            info = create_patch_info(patch)
            name = confined(path, "patches", info["name"])
            beside = path.parent / name  # patches live next to their easyconfig in robot layout
            files.append(SourceFile(
                filename=name, subdir=_location(path, "patches", info, subdir), owner=path, urls=(beside.as_uri(),),
                checksum=block.get_checksum_for(checksums, filename=name, index=len(sources) + offset)))
        return files + _extension_files(block, subdir, path)
    except EasyBuildError as err:
        raise BadInput(path, f"cannot list sources: {err.msg}") from None


def confined(owner: Path, field: str, name: object) -> str:
    """``name`` as a file name inside its folder of the source cache: the runner writes there what the
    easyconfig names, so ``..``, an absolute path or an empty name would let an easyconfig that holds no
    code write any file the runner can (the live ``env.sh``). Refused before anything is fetched."""
    parts = PurePosixPath(name).parts if isinstance(name, str) and "\0" not in name else ()
    if not parts or parts[0] == "/" or ".." in parts:
        raise BadInput(owner, f"{field} {name!r}: a source or patch must be a file name inside its folder of the "
                              "source cache (no '..', no absolute path)")
    return str(name)


def _location(owner: Path, field: str, spec: dict, subdir: str) -> str:
    """The folder of the source cache EasyBuild looks in for one file: ``alt_location`` instead of the
    software's own name where the easyconfig sets it (inside the cache too)."""
    from easybuild.framework.easyconfig.easyconfig import letter_dir_for

    if spec.get("alt_location") is None:
        return subdir
    alt = confined(owner, f"{field} alt_location", spec["alt_location"])
    return os.path.join(letter_dir_for(alt), alt)


def _checksum_keys(owner: Path, field: str, spec: object) -> None:
    """A checksum dict is keyed by file names: the same rule as the files themselves."""
    if isinstance(spec, dict):
        for key in spec:
            confined(owner, f"{field} key", key)
    elif isinstance(spec, (list, tuple)):
        for item in spec:
            _checksum_keys(owner, field, item)


def _extension_files(block, subdir: str, path: Path) -> list[SourceFile]:
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
        filename = confined(path, f"exts_list {ext['name']} source", ext["sources"][0])
        _checksum_keys(path, f"exts_list {ext['name']} checksums", ext["checksums"])
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
    from easybuild.tools.build_log import EasyBuildError
    from easybuild.tools.filetools import compute_checksum, verify_checksum

    weakness = checksum_weakness(spec)
    if weakness:
        return weakness
    try:
        if verify_checksum(str(path), spec):
            return None
    except EasyBuildError as err:  # a dict without this file's name: EasyBuild's "Missing checksum for ..."
        return f"checksum {spec!r} does not name this file ({err.msg})"
    return f"checksum mismatch (sha256 of the file: {compute_checksum(str(path), 'sha256')}, expected {spec})"


def config_guess_dir(sources: Path) -> Path:
    """Where EasyBuild's ConfigureMake looks for (and downloads) a recent config.guess in the source
    cache. Builds see the cache read-only and offline: the folder must exist, so that the download
    fails as EasyBuild expects (a warning, the tarball's own config.guess used) rather than on mkdir."""
    from easybuild.easyblocks import VERSION as EASYBLOCKS_VERSION

    return sources / "generic" / f"eb_v{EASYBLOCKS_VERSION}" / "ConfigureMake"
