"""A build is untrusted: locally it runs with the library (and the site's easyconfigs and the parse cache
the runner reads) read-only but for its own prefix and staging folder, and without network. A
tampering easyconfig's writes fail and nothing else changes."""

import hashlib
import os
from pathlib import Path

import pytest

from tests.helpers import bundle_easyconfig, copy_site_easyconfigs, link_sources, modlib, write_config, write_easystack

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(os.geteuid() != 0, reason="local isolation needs root")]

TAMPER = """postinstallcmds = ['''sh -c 'failed=0
  for f in {root}/cpu/modules/all/MarkupSafe/*.lua {root}/cpu/software/MarkupSafe-*/MarkupSafe/*/easybuild/*.eb \\
           {root}/live/targets/cpu/env.sh {site}/m/MarkupSafe/*.eb {cache}/parse-*.json; do
    echo "tampered by a build" >> "$f" && echo "WROTE $f" || failed=$((failed + 1))
  done
  echo "$failed writes failed"; exit 1' ''']"""

DOWNLOAD = "postinstallcmds = ['''python3 -c \"import urllib.request as u; u.urlopen('https://pypi.org/simple/')\"''']"


def library_digest(root: Path) -> dict[str, str]:
    """Every file of the library but the build records, which the run writes for each node."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()
            and ".modlib" not in p.relative_to(root).parts}


def test_a_tampering_build_writes_nothing_outside_its_prefix_and_a_downloading_one_fails(tmp_path, source_cache):
    root = tmp_path / "library"
    site = copy_site_easyconfigs(tmp_path / "site")
    cache = tmp_path / "cache"  # the parse cache the runner trusts on its next run
    tamper = TAMPER.format(root=root, site=site, cache=cache)
    for name, extra in (("tamper", tamper), ("download", DOWNLOAD)):
        (site / name[0] / name).mkdir(parents=True)
        (site / name[0] / name / f"{name}-1.0-GCCcore-system.eb").write_text(bundle_easyconfig(name, extra))
    (tmp_path / "easyconfigs").mkdir()
    stack = write_easystack(tmp_path / "easyconfigs" / "cpu.yaml", ["MarkupSafe-3.0.2-GCCcore-system.eb"])
    config = str(write_config(tmp_path, {"cpu": {"kind": "cpu", "tree": "cpu", "easystacks": [str(stack)]}},
                              easyconfig_paths=[str(site)]))
    link_sources(root, source_cache)
    env = {"MODLIB_CACHE": str(cache)}
    assert modlib("build", "--config", config, env=env).returncode == 0
    before = library_digest(root)
    easyconfigs = {p: p.read_bytes() for p in site.rglob("MarkupSafe*.eb")}

    write_easystack(stack, ["MarkupSafe-3.0.2-GCCcore-system.eb", "tamper-1.0-GCCcore-system.eb",
                            "download-1.0-GCCcore-system.eb"])
    result = modlib("build", "--config", config, env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "failed 2" in result.stdout
    after = library_digest(root)
    # its own prefix, and the runner's note that the failed builds' prefixes are unreferenced
    own = [k for k in after if k.startswith(("cpu/software/tamper-", "cpu/software/download-"))
           or k == "cpu/software/.unreferenced.json"]
    assert {k: v for k, v in after.items() if k not in own} == before  # not a byte outside its own prefix
    logs = {name: next((root / ".modlib" / "records" / "cpu").glob(f"{name}--1.0-GCCcore-system/*.log")).read_text()
            for name in ("tamper", "download")}
    assert "5 writes failed" in logs["tamper"] and "WROTE /" not in logs["tamper"]
    # what the runner parses next time: the site's easyconfigs as they were, the parse cache only as the
    # runner itself rewrote it (it parsed the two new easyconfigs)
    assert all(path.read_bytes() == data for path, data in easyconfigs.items())
    assert all(b"tampered" not in path.read_bytes() for path in cache.glob("parse-*.json"))
    # the build user may not write them (and the mounts are read-only besides)
    assert "Permission denied" in logs["tamper"] or "Read-only file system" in logs["tamper"]
    assert "urlopen error" in logs["download"] or "URLError" in logs["download"]
