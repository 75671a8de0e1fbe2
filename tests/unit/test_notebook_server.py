"""The browser tests, the browser benchmark and `make notebook` show the notebook image's /etc/profile.d:
every file install.sh puts there, with the same text as install.sh writes (its venv path aside)."""

from __future__ import annotations

import re
import subprocess

import pytest

from bench.notebook_server import IMAGE, _library, image_profile_d

INSTALL = IMAGE / "install.sh"


def test_the_servers_profile_d_holds_what_install_sh_puts_in_the_images(tmp_path):
    installed = set(re.findall(r"/etc/profile\.d/([\w.-]+\.sh)", INSTALL.read_text()))
    folder = image_profile_d(tmp_path / "profile.d", tmp_path / "venv")
    assert installed == {"lmod.sh", "modlib.sh", "venv.sh"}  # Debian lmod's own, then the image's two
    assert {p.name for p in folder.iterdir()} == installed


def test_venv_sh_is_the_one_install_sh_writes_and_puts_the_venv_first(tmp_path):
    """install.sh's own line that writes venv.sh, run with the server's venv, writes the same file; sourced
    after /etc/profile reset PATH, it puts that venv first, once."""
    venv = tmp_path / "venv"
    folder = image_profile_d(tmp_path / "profile.d", venv)
    line = next(line for line in INSTALL.read_text().splitlines() if line.rstrip().endswith("/etc/profile.d/venv.sh"))
    made = tmp_path / "made-by-install.sh"
    subprocess.run(["sh", "-c", line.replace("/etc/profile.d/venv.sh", str(made))], check=True,
                   env={"PATH": "/usr/bin:/bin", "SRC": str(IMAGE), "VENV": str(venv)})
    assert made.read_text() == (folder / "venv.sh").read_text()
    path = subprocess.run(["sh", "-c", f'PATH=/usr/bin:/bin; . {folder}/venv.sh; . {folder}/venv.sh; echo "$PATH"'],
                          capture_output=True, text=True, check=True).stdout.strip()
    assert path == f"{venv}/bin:/usr/bin:/bin"


def test_make_notebook_names_what_is_missing(tmp_path):
    with pytest.raises(SystemExit, match=r"no published library at .*: run `make demo`"):
        _library(tmp_path, "cpu")
    (tmp_path / "live" / "targets" / "cpu").mkdir(parents=True)
    (tmp_path / "live" / "targets" / "cpu" / "env.sh").write_text("")
    assert _library(tmp_path, "cpu") == tmp_path
    with pytest.raises(SystemExit, match=r"has no target 'cuda' \(its targets: cpu\)"):
        _library(tmp_path, "cuda")
