"""Parsing an easyconfig runs its Python: the runner parses in bubblewrap's sandbox, where that code
cannot write the library, the repository or the parse cache, reach the network, or read the runner's
environment or see its processes, neither when the plan parses it nor when its sources are listed.
What the code found out it tells through the only channel it has, the parse itself: its module name."""

import json
import socket
import threading

import pytest

from tests.helpers import modlib, write_config, write_easystack

pytestmark = pytest.mark.e2e

HOSTILE = """easyblock = 'Bundle'
name = 'hostile'
version = '1.0'
homepage = 'https://example.org'
description = "code at parse time"
toolchain = {{'name': 'system', 'version': 'system'}}
import os, socket
wrote = []
for target in {targets!r}:
    try:
        open(target, 'w').write('written by a parse')
        wrote.append('wrote')
    except OSError:
        pass
try:
    socket.create_connection(('127.0.0.1', {port}), timeout=2).close()
    reached = 'online'
except OSError:
    reached = 'offline'
runner = [p for p in os.listdir('/proc') if p.isdigit()
          and b'/modlib\\x00plan\\x00' in open('/proc/%s/cmdline' % p, 'rb').read()]
versionsuffix = '-%s-%s-%s-%s' % (os.environ.get('RUNNER_SECRET_TOKEN', 'nosecret'), reached,
                                  'sawrunner' if runner else 'blind', 'wrote' if wrote else 'readonly')
moduleclass = 'tools'
"""


def test_a_hostile_parse_cannot_write_reach_the_network_or_read_the_runner(tmp_path):
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(60)
    reached: list[str] = []
    threading.Thread(target=lambda: reached.append(str(listener.accept()[1])), daemon=True).start()
    root, cache, site = tmp_path / "library", tmp_path / "cache", tmp_path / "site"
    targets = [root / "parse-escaped", tmp_path / "parse-escaped", cache / "parse-escaped", site / "parse-escaped"]
    (site / "h" / "hostile").mkdir(parents=True)
    (site / "h" / "hostile" / "hostile-1.0.eb").write_text(
        HOSTILE.format(targets=[str(t) for t in targets], port=listener.getsockname()[1]))
    (tmp_path / "easyconfigs").mkdir()
    stack = write_easystack(tmp_path / "easyconfigs" / "cpu.yaml", ["hostile-1.0.eb"])
    config = write_config(tmp_path, {"cpu": {"kind": "cpu", "tree": "cpu", "easystacks": [str(stack)]}},
                          easyconfig_paths=[str(site)])
    root.mkdir()
    cache.mkdir()
    env = {"RUNNER_SECRET_TOKEN": "s3cr3t", "MODLIB_CACHE": str(cache)}
    result = modlib("plan", "--json", "--config", str(config), env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    modules = [n["module"] for n in json.loads(result.stdout)["nodes"]]
    assert modules == ["hostile/1.0-nosecret-offline-blind-readonly"], modules
    # listing its sources runs the easyconfig again: in the sandbox too
    listing = modlib("plan", "--check-sources", "--config", str(config), env=env)
    listener.close()
    assert listing.returncode == 0, listing.stdout + listing.stderr
    assert reached == [] and not any(t.exists() for t in targets)
