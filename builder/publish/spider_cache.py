"""One Lmod spider cache per tree, updated for just the module names that changed since the last publish.

Lmod reads several system caches (``scDescriptT`` takes a list) and merges them by module path, so each
tree has its own cache, shared by every target that sees the tree. Within a tree's cache, each module
name (``spiderT[mpath][name]``) depends only on that name's folder, and the text Lmod's serializer writes
for it is the same whatever else the tree holds. A publish therefore runs Lmod's ``spider`` over a
folder of links to the changed names only, has Lmod's own serializer (``serializeTbl``) write each name's
part, and splices those parts into the previous cache's text by the offsets kept beside it: the result is
byte for byte what Lmod's ``spider -o spiderT`` over the whole tree writes
(tests/integration/test_incremental_publish.py checks this). A publish from scratch goes the same way
over every name.

The ``.modulerc.lua`` entries Lmod collects (``mrcT``, ``mrcMpathT``) are kept per name too, in
``mrc.json``, because they are serialized as one table per tree.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from builder import proc
from builder.errors import RunFailed

#: Run by Lmod's Lua: Lmod's own spider (``spider -o spiderT`` over the plan's tree) in this
#: process, keeping the tables it hands Lmod's serializer (and, from the same tables, its software page
#: for the catalogue). Reading the cache text back would not do: a
#: long string loses its first newline when Lua reads it, so the text would differ from Lmod's. Then:
#: the names' parts serialized by Lmod at the depth they have in the cache (``parts``, sorted, offsets in
#: the JSON on stdout), the header (``head``: timestampFn, mrcT, mrcMpathT), the .modulerc entries per
#: name for the next update, and whether anything beyond a flat tree turned up.
SPIDER_LUA = r"""
local prefix, plan_fn, out_dir = arg[1], arg[2], arg[3]
package.path = prefix .. "/tools/?.lua;" .. prefix .. "/tools/?/init.lua;" .. prefix .. "/shells/?.lua;"
               .. prefix .. "/libexec/?.lua;" .. package.path
package.cpath = prefix .. "/lib/?.so;" .. package.cpath
local json = require("json")
local function read(fn) local f = assert(io.open(fn)); local s = f:read("a"); f:close(); return s end
local function write(fn, s) local f = assert(io.open(fn, "w")); f:write(s); f:close() end
local plan = json.decode(read(plan_fn))

-- Lmod's spider, run here as `spider -o spiderT <tree>`, keeps what it hands its serializer
require("serializeTbl")
local serialize, cache = serializeTbl, {}
serializeTbl = function(options) cache[options.name] = options.value; return serialize(options) end
local stdout = io.stdout
io.stdout = io.open("/dev/null", "w")
arg = {[0] = prefix .. "/libexec/spider", "-o", "spiderT", plan.walk}
dofile(arg[0])
io.stdout = stdout

local function moved(s, from, to)
  if type(s) == "string" and s:sub(1, #from) == from and (#s == #from or s:sub(#from + 1, #from + 1) == "/") then
    return to .. s:sub(#from + 1)
  end
  return s
end
local function rewrite(v, from, to)
  if type(v) ~= "table" then return moved(v, from, to) end
  local t = {}
  for k, x in pairs(v) do t[moved(k, from, to)] = rewrite(x, from, to) end
  return t
end

-- .modulerc entries go to the name they start with when this run covers it, else they are global (a site rc)
local function split_mrc(mrc, covered, byname, slot, global)
  for kind, entries in pairs(mrc or {}) do
    for key, value in pairs(entries) do
      local name = key:match("^([^/]+)/") or key
      local t = global
      if covered(name) then
        byname[name] = byname[name] or {}
        byname[name][slot] = byname[name][slot] or {}
        t = byname[name][slot]
      end
      t[kind] = t[kind] or {}
      t[kind][key] = value
    end
  end
end
local function merged(byname, slot, global, seed)
  local out = {}
  for kind in pairs(seed or {}) do out[kind] = {} end
  local function add(kinds)
    for kind, entries in pairs(kinds or {}) do
      out[kind] = out[kind] or {}
      for k, v in pairs(entries) do out[kind][k] = v end
    end
  end
  add(global)
  for _, parts in pairs(byname) do add(parts[slot]) end
  return out
end

local from, names = plan.walk, {}
for _, n in ipairs(plan.names or {}) do names[n] = true end
local function covered(n) return plan.names == nil or names[n] == true end
local byname = {}
for n, parts in pairs(plan.mrc or {}) do if not covered(n) then byname[n] = parts end end
local globalT, globalM = {}, {}
split_mrc(cache.mrcT, covered, byname, "mrcT", globalT)
split_mrc((cache.mrcMpathT or {})[from], covered, byname, "mrcMpathT", globalM)
local mpathT, mrcMpathT = merged(byname, "mrcMpathT", globalM), {}
if next(mpathT) ~= nil then mrcMpathT[plan.live] = mpathT end
write(out_dir .. "/head", serialize{name = "timestampFn", value = cache.timestampFn, indent = true}
      .. serialize{name = "mrcT", value = merged(byname, "mrcT", globalT, cache.mrcT), indent = true} .. "\n"
      .. serialize{name = "mrcMpathT", value = mrcMpathT, indent = true})
local entries, sns, index, text, offset = cache.spiderT[from] or {}, {}, {}, {}, 0
for sn in pairs(entries) do sns[#sns + 1] = sn end
table.sort(sns)
for _, sn in ipairs(sns) do
  -- written at the depth it has inside spiderT[mpath], closed as a member of that table
  local part = serialize{name = sn, value = rewrite(entries[sn], from, plan.live), indent = "    "}
  text[#text + 1] = part:sub(1, -2) .. ",\n"
  index[#index + 1] = {sn, offset, #text[#text]}
  offset = offset + #text[#text]
end
write(out_dir .. "/parts", table.concat(text))
local others = {}
for mpath in pairs(cache.spiderT) do
  if mpath ~= "version" and mpath ~= from then others[#others + 1] = mpath end
end
-- the catalogue page's data (builder/publish/catalogue.py) from the same walk: what `spider -o
-- jsonSoftwarePage` prints, made as Lmod makes it (its Spider:buildDbT, the spider's softwarePage)
local dbT = {}
require("Spider"):new():buildDbT({from}, cache.mpathMapT or {}, cache.spiderT, dbT)
write(out_dir .. "/software.json", json.encode(softwarePage(dbT)))
local result = {parts = index, mrc = byname, version = cache.spiderT.version, others = others,
                mpathMapT = next(cache.mpathMapT or {}) ~= nil}
io.stdout:write(json.encode(result))
"""


@dataclass(frozen=True)
class TreeSource:
    """One tree's part of an update: the module path spider walks, how notebooks see it, what it covers."""

    walk: Path  # the generation's tree, or a folder of links to the changed names in it
    live: Path  # the same tree as MODULEPATH names it in notebooks
    names: tuple[str, ...] | None  # top-level names covered; None: every name (a cache from scratch)
    previous: Path | None  # the previous generation's cache folder of this tree (with names given)


@functools.lru_cache(maxsize=4)
def lua_version(interpreter: str) -> str:
    return proc.run([interpreter, "-e", 'io.write((_VERSION:gsub("Lua ", "")))'], check=True).stdout.strip()


def _interpreter(prefix: Path) -> str:
    """The Lua that Lmod's spider runs on (its #! line): Lmod's C modules are built for it."""
    first = (prefix / "libexec" / "spider").read_text().split("\n", 1)[0]
    return first[2:].strip().split()[-1] if first.startswith("#!") else "lua"


def link_farm(folder: Path, tree: Path, names: Sequence[str]) -> Path:
    """A module path holding only ``names`` of ``tree`` (links to their folders), for Lmod to walk."""
    folder.mkdir(parents=True)
    for name in names:
        if (tree / name).is_dir():
            (folder / name).symlink_to(tree / name)
    return folder


def update(prefix: Path, source: TreeSource, dest: Path) -> list[dict]:
    """Write the cache of ``source``'s tree into ``dest`` (a tree at a time: Lmod's spider gathers the
    hidden modules of every tree it walks into one table). Returns Lmod's software page (what `spider -o
    jsonSoftwarePage` prints) of the names walked, with paths under ``source.walk``: one walk for both."""
    lua = _interpreter(prefix)
    with tempfile.TemporaryDirectory(prefix="modlib-spider-") as tmp:
        scratch = Path(tmp)
        plan = {"walk": str(source.walk), "live": str(source.live), "names": source.names,
                "mrc": _previous_mrc(source)}
        (scratch / "plan.json").write_text(json.dumps(plan))
        (scratch / "spider.lua").write_text(SPIDER_LUA)
        result = proc.run([lua, str(scratch / "spider.lua"), str(prefix), str(scratch / "plan.json"), str(scratch)])
        if result.returncode != 0:
            raise RunFailed(f"Lmod's spider failed on {source.walk}: {result.stderr.strip()[-500:]}")
        split = json.loads(result.stdout, strict=False)
        if split["mpathMapT"] or split["others"]:
            raise RunFailed("a module file extends MODULEPATH (a hierarchical tree): the library's caches "
                              f"hold flat trees only ({', '.join(split['others'])})")
        new = (scratch / "parts").read_bytes()
        parts = {name: new[start:start + length] for name, start, length in split["parts"]}
        _write(dest, source, (scratch / "head").read_bytes(), parts, split, lua)
        software = json.loads((scratch / "software.json").read_text())
    return software if isinstance(software, list) else []  # Lmod's json writes an empty list as {}


def _previous_mrc(source: TreeSource) -> dict:
    return {} if source.previous is None else json.loads((source.previous / "mrc.json").read_text())


def _write(dest: Path, source: TreeSource, head: bytes, new_parts: dict[str, bytes], tree: dict, lua: str) -> None:
    """spiderT.lua as Lmod's spider writes it for this one tree, its compiled twin, and the offsets of each name."""
    parts = _spliced(new_parts, source)
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "timestamp").touch()  # first: Lmod trusts a cache that is no older than its timestamp file
    head += f'spiderT = {{\n  ["{source.live}"] = {{'.encode() + (b"\n" if parts else b"},\n")
    body, index, offset = [], {}, len(head)
    for name in sorted(parts, key=str.encode):  # Lmod's order: its serializer sorts keys bytewise
        index[name] = [offset, len(parts[name])]
        body.append(parts[name])
        offset += len(parts[name])
    tail = (b"  },\n" if parts else b"") + f"  version = {tree['version']},\n}}\nmpathMapT = {{}}\n\n".encode()
    (dest / "spiderT.lua").write_bytes(head + b"".join(body) + tail)
    (dest / "index.json").write_text(json.dumps(index, sort_keys=True))
    (dest / "mrc.json").write_text(json.dumps(tree["mrc"] or {}, sort_keys=True))
    version = lua_version(lua)
    luac = shutil.which(f"luac{version}") or shutil.which("luac")
    if luac:  # Lmod reads the compiled twin first
        proc.run([luac, "-o", str(dest / f"spiderT.luac_{version}"), str(dest / "spiderT.lua")], check=True)


def _spliced(new_parts: dict[str, bytes], source: TreeSource) -> dict[str, bytes]:
    """Every name's serialized part: the new ones, and the previous cache's bytes for the names not covered."""
    parts: dict[str, bytes] = {}
    if source.names is not None and source.previous is not None:
        text = (source.previous / "spiderT.lua").read_bytes()
        covered = set(source.names)
        for name, (start, length) in json.loads((source.previous / "index.json").read_text()).items():
            if name.split("/")[0] not in covered:
                parts[name] = text[start:start + length]
    parts.update(new_parts)
    return parts


def reuse(previous: Path, dest: Path) -> None:
    """A tree without changes keeps its cache: hard links to the previous generation's files (never rewritten)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in os.listdir(previous):
        os.link(previous / name, dest / name)
