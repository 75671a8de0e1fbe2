"""A publish that runs out of disk (a small tmpfs as the library root) fails the run, leaves the live
view and the last complete generations as they were, and the next publish cleans up after it."""

import json
import subprocess
import sys
import textwrap

from tests.helpers import REPO, write_config, write_easystack

SCRIPT = textwrap.dedent('''
    import errno, json, os, sys
    sys.path.insert(0, {repo!r})
    from builder.read.config import load_settings
    from builder.publish import view
    from tests.integration.test_incremental_publish import put

    settings = load_settings({config!r}, env={{"MODLIB_ROOT": {root!r}}})
    root = settings.root
    for version in ("1.0", "1.1", "1.2"):
        put(root, "cpu", f"zlib/{{version}}")
        view.publish_view(settings)
    before = {{"live": os.readlink(root / "live"), "views": sorted(p.name for p in (root / "views").iterdir())}}
    put(root, "cpu", "zlib/1.3")
    with open(root / "filler", "wb") as filler:  # the volume fills up under the run
        try:
            while True:
                filler.write(b"x" * 65536)
                filler.flush()
        except OSError as err:
            assert err.errno == errno.ENOSPC
    try:
        view.publish_view(settings)
        failed = None
    except OSError as err:
        failed = err.errno
    after = {{"live": os.readlink(root / "live"), "views": sorted(p.name for p in (root / "views").iterdir())}}
    (root / "filler").unlink()
    gen, _ = view.publish_view(settings)
    final = {{"live": os.readlink(root / "live"), "views": sorted(p.name for p in (root / "views").iterdir()),
             "complete": sorted(p.name for p in view.generations(settings.layout) if (p / "inputs.json").is_file())}}
    print(json.dumps({{"before": before, "failed": failed, "after": after, "final": final, "gen": gen.name}}))
''')


def test_a_full_disk_during_a_publish_keeps_live_and_the_last_complete_generations(tmp_path):
    (tmp_path / "easyconfigs").mkdir()
    stack = str(write_easystack(tmp_path / "easyconfigs" / "cpu.yaml", []))
    config = write_config(tmp_path, {"cpu": {"kind": "cpu", "tree": "cpu", "easystacks": [stack]}})
    root = tmp_path / "library"
    root.mkdir()
    script = tmp_path / "publish.py"
    script.write_text(SCRIPT.format(repo=str(REPO), config=str(config), root=str(root)))
    result = subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size=4m tmpfs {root} && "
                             f"{sys.executable} {script}"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.splitlines()[-1])
    assert out["failed"] == 28  # ENOSPC
    assert out["after"]["live"] == out["before"]["live"]  # notebooks saw nothing
    assert set(out["before"]["views"]) <= set(out["after"]["views"])  # no complete generation was lost
    final = out["final"]
    assert final["live"] == f"views/{out['gen']}"
    assert final["views"] == final["complete"] and len(final["views"]) == 3  # the half-made one went first
    assert out["before"]["live"].removeprefix("views/") in final["views"]  # the previously live one is kept
