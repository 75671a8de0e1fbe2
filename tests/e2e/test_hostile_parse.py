"""Parsing an easyconfig runs its Python: the runner parses in bubblewrap's sandbox, where that code
cannot write the library, the repository or the parse cache, reach the network, or read the runner's
environment or see its processes, neither when the plan parses it nor when its sources are listed, nor
when an entry's ``--try-*`` options make EasyBuild tweak it. What the code found out it tells through
the only channel it has, the parse itself: its module name (and, where it could write, the files it wrote)."""

import contextlib
import json
import socket
import threading
from pathlib import Path

import pytest
import yaml

from tests.helpers import modlib, write_config

pytestmark = pytest.mark.e2e

HOSTILE = """easyblock = 'Bundle'
name = 'hostile'
version = '1.0'
homepage = 'https://example.org'
description = "code at parse time"
toolchain = {{'name': 'system', 'version': 'system'}}
import os, socket
try:
    socket.create_connection(('127.0.0.1', {port}), timeout=2).close()
    reached = 'online'
except OSError:
    reached = 'offline'
runner = [p for p in os.listdir('/proc') if p.isdigit()
          and b'/modlib\\x00plan\\x00' in open('/proc/%s/cmdline' % p, 'rb').read()]
found = '%s-%s-%s' % (os.environ.get('RUNNER_SECRET_TOKEN', 'nosecret'), reached, 'sawrunner' if runner else 'blind')
wrote = []
for target in {targets!r}:
    try:
        open(target, 'w').write(found)
        wrote.append('wrote')
    except OSError:
        pass
versionsuffix = '-%s-%s' % (found, 'wrote' if wrote else 'readonly')
moduleclass = 'tools'
"""


def _record_caller(listener: socket.socket, reached: list[str]) -> None:
    """Whoever connects is recorded; a listener that times out or is closed first records nothing."""
    with contextlib.suppress(OSError):  # TimeoutError included
        reached.append(str(listener.accept()[1]))


def _hostile(tmp_path, entry: object) -> tuple:
    """A site repository with the hostile easyconfig, listed in an easystack as ``entry``; a listener it tries
    to reach; the files it tries to write; the config; and the runner's environment, which holds a secret."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(60)
    reached: list[str] = []
    threading.Thread(target=_record_caller, args=(listener, reached), daemon=True).start()
    root, cache, site = tmp_path / "library", tmp_path / "cache", tmp_path / "site"
    targets = [root / "parse-escaped", tmp_path / "parse-escaped", cache / "parse-escaped", site / "parse-escaped"]
    (site / "h" / "hostile").mkdir(parents=True)
    (site / "h" / "hostile" / "hostile-1.0.eb").write_text(
        HOSTILE.format(targets=[str(t) for t in targets], port=listener.getsockname()[1]))
    (tmp_path / "easyconfigs").mkdir()
    stack = tmp_path / "easyconfigs" / "cpu.yaml"
    stack.write_text(yaml.safe_dump({"easyconfigs": [entry]}))
    config = write_config(tmp_path, {"cpu": {"kind": "cpu", "tree": "cpu", "easystacks": [str(stack)]}},
                          easyconfig_paths=[str(site)])
    root.mkdir()
    cache.mkdir()
    return listener, reached, targets, config, {"RUNNER_SECRET_TOKEN": "s3cr3t", "MODLIB_CACHE": str(cache)}


def _escaped(targets: list) -> dict:
    """What the parse wrote where it could: its findings (the secret, the network, the runner's process)."""
    return {str(t): t.read_text() for t in targets if t.exists()}


def test_a_hostile_parse_cannot_write_reach_the_network_or_read_the_runner(tmp_path):
    listener, reached, targets, config, env = _hostile(tmp_path, "hostile-1.0.eb")
    result = modlib("plan", "--json", "--config", str(config), env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    modules = [n["module"] for n in json.loads(result.stdout)["nodes"]]
    assert modules == ["hostile/1.0-nosecret-offline-blind-readonly"], modules
    # listing its sources runs the easyconfig again: in the sandbox too
    listing = modlib("plan", "--check-sources", "--config", str(config), env=env)
    listener.close()
    assert listing.returncode == 0, listing.stdout + listing.stderr
    assert reached == [] and _escaped(targets) == {}


def test_a_hostile_easyconfig_tweaked_by_its_entry_is_parsed_in_the_sandbox_too(tmp_path):
    """EasyBuild's ``--try-*`` tweak parses the listed easyconfig (and runs its code, with the site hooks):
    in the sandbox, as every parse; the runner only writes the tweaked files it answers."""
    entry = {"hostile-1.0.eb": {"options": {"try-software-version": "2.0"}}}
    listener, reached, targets, config, env = _hostile(tmp_path, entry)
    result = modlib("plan", "--json", "--config", str(config), env=env)
    listener.close()
    assert result.returncode == 0, result.stdout + result.stderr
    nodes = json.loads(result.stdout)["nodes"]
    assert [n["module"] for n in nodes] == ["hostile/2.0-nosecret-offline-blind-readonly"], nodes
    # the tweak names the file it writes by its own parse of it: that parse saw nothing either
    tweaked = Path(nodes[0]["easyconfig"])
    assert tweaked.name == "hostile-2.0-nosecret-offline-blind-readonly.eb", tweaked
    assert 'version = "2.0"' in tweaked.read_text() and tweaked.is_relative_to(tmp_path / "cache" / "generated")
    assert reached == [] and _escaped(targets) == {}
