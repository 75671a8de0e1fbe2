"""``modlib show MODULE``: where a published module came from, for audits and for the admin asked
"which CUDA capabilities does this have, and who built it when".

Everything comes from what the run wrote when it stored the module: its manifest (easyconfig and
digest, prefix, the build record it was published from), that build record (EasyBuild's version,
the hooks' digest, the effective options, the sources as verified, start and end, executor and host
or pod) and its integrity record (checked now, as ``modlib verify`` checks it). No planning, no
EasyBuild. A field an older record lacks is reported as not recorded, never guessed.
"""

from __future__ import annotations

import json
import time

from builder.commands.remove import dependents
from builder.commands.verify import check
from builder.digests import file_sha256
from builder.errors import BadInput
from builder.execute import records
from builder.execute.records import UNISOLATED
from builder.plan.graph import NodeKey
from builder.publish.live import read_manifest
from builder.read.config import Settings
from builder.report.where import text

#: What a build record holds that ``show`` reports, and what older records lack.
_RECORDED = ("easybuild_version", "hooks_sha256", "options", "sources", "executor", "where", "host", "start",
             "end", "exit_code", "log", "command")


def _integrity(settings: Settings, key: NodeKey) -> dict:
    finding = check(settings.layout, key, thorough=True)
    if not finding.recorded:
        return {"state": "unrecorded", "problems": []}
    problems = finding.as_json()["problems"]
    return {"state": "damaged" if problems else "intact", "problems": problems}


def provenance(settings: Settings, key: NodeKey) -> dict:
    """One published module's provenance as JSON-able data (``show --json`` prints it as is)."""
    tree, module = key
    layout = settings.layout
    manifest = read_manifest(layout, tree, module)
    if manifest is None:
        raise BadInput(module, f"published in {tree} without a manifest: modlib has no provenance for it")
    record = records.read(manifest["record"]) if manifest.get("record") else None
    build = {field: (record or {}).get(field) for field in _RECORDED}
    if build["sources"] is not None:
        build["sources"] = [{**s, "digest": digest(s["checksum"])} for s in build["sources"]]
    if build["start"] is not None and build["end"] is not None:
        build["seconds"] = round(build["end"] - build["start"], 1)
    now = file_sha256(manifest["easyconfig"])
    return {
        "module": module, "tree": tree, "published": manifest.get("published"), "prefix": manifest.get("prefix"),
        "easyconfig": {"path": manifest["easyconfig"], "sha256": manifest["sha256"],
                       "changed_since": None if now is None else now != manifest["sha256"]},
        "record": manifest.get("record"), "recorded": record is not None,
        "not_recorded": [f for f in _RECORDED if (record or {}).get(f) is None],
        "build": build, "integrity": _integrity(settings, key),
        "dependents": [d for d in dependents(settings, module) if d != f"{tree}/{module}"],
    }


def _when(stamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(stamp)) if stamp is not None else "not recorded"


def digest(spec: object) -> str:
    """EasyBuild's checksum spec as people read it: a bare 64-character string is a sha256, a
    (type, value) pair is that type's, a dict keyed by the one file names its checksum."""
    if isinstance(spec, str):
        return {64: "sha256:", 128: "sha512:"}.get(len(spec), "") + spec
    if isinstance(spec, list | tuple) and len(spec) == 2 and all(isinstance(s, str) for s in spec):
        return f"{spec[0]}:{spec[1]}"
    if isinstance(spec, dict) and len(spec) == 1:
        return digest(next(iter(spec.values())))
    return "none" if spec is None else json.dumps(spec)


def lines(info: dict) -> list[str]:
    """``show``'s text: one fact a line, "not recorded" where the build record lacks it."""
    build, missing = info["build"], "not recorded"
    opts = build["options"]
    out = [f"{info['tree']}/{info['module']}",
           f"  easyconfig      {info['easyconfig']['path']}",
           f"  sha256          {info['easyconfig']['sha256']}"
           + (" (the file has changed since: drifted)" if info["easyconfig"]["changed_since"] else ""),
           f"  EasyBuild       {build['easybuild_version'] or missing}",
           f"  hooks sha256    {build['hooks_sha256'] or missing}",
           "  options         " + (", ".join(f"{k}={text(v)}" for k, v in sorted(opts.items()))
                                   if opts is not None else missing),
           f"  built           {_when(build['start'])} to {_when(build['end'])}"
           + (f" ({build['seconds']} s)" if "seconds" in build else ""),
           f"  executor        {build['executor'] or missing} on {build['where'] or missing}"
           f" (recorded by {build['host'] or missing})",
           *(["  sandbox         none: built UNISOLATED (sandbox.unisolated), it could write what the runner could"]
             if UNISOLATED in str(build["where"]) else []),
           f"  prefix          {info['prefix']}",
           f"  published       {_when(info['published'])}",
           f"  build record    {info['record'] or missing}",
           f"  build log       {build['log'] or missing}",
           f"  integrity       {info['integrity']['state']}"]
    out += [f"    {problem}" for problem in info["integrity"]["problems"]]
    sources = build["sources"]
    out.append(f"  sources         {len(sources)}" if sources is not None else f"  sources         {missing}")
    out += [f"    {s['file']}  {s['digest']}" for s in sources or []]
    out.append(f"  dependents      {', '.join(info['dependents']) or 'none'}")
    return out
