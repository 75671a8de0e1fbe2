"""The site repository as it was at a git ref, extracted into a temporary folder.

``modlib plan --diff`` plans the repository at the merge request's base beside the working tree. The
admin's checkout is never touched (no checkout, no stash, no worktree entry in ``.git``): ``git
archive`` writes the ref's tree into a tar file, and ``tar`` unpacks it into a folder of our own.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from builder import proc
from builder.errors import BadInput, RunFailed


def _git(args: list[str], cwd: Path, problem: str) -> str:
    """git's answer; a refusal is bad input (``problem``, with git's last line of complaint)."""
    try:
        done = proc.run(["git", *args], cwd=cwd)
    except OSError as err:
        raise RunFailed(f"git: {err.strerror}") from None
    if done.returncode != 0:
        said = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise BadInput(cwd, f"{problem} ({said})")
    return done.stdout.strip()


def repository_of(config_file: Path) -> Path:
    """The top of the git repository holding library.yaml: the site repository a merge request changes."""
    return Path(_git(["rev-parse", "--show-toplevel"], config_file.parent,
                     f"{config_file.name} is not in a git repository: --diff compares with a git ref of it"))


@contextlib.contextmanager
def checked_out(repo: Path, ref: str) -> Iterator[tuple[Path, str]]:
    """The repository's files at ``ref`` in a temporary folder (removed afterwards), and its commit."""
    commit = _git(["rev-parse", "--verify", "--end-of-options", f"{ref}^{{commit}}"], repo,
                  f"--diff {ref}: not a commit of this repository")
    with tempfile.TemporaryDirectory(prefix="modlib-ref-") as tmp:
        tree, archive = Path(tmp) / "tree", Path(tmp) / "tree.tar"
        tree.mkdir()
        _git(["archive", "--format=tar", f"--output={archive}", commit], repo, f"cannot archive {ref}")
        unpacked = proc.run(["tar", "-xf", str(archive), "-C", str(tree)])
        if unpacked.returncode != 0:
            raise RunFailed(f"tar: cannot unpack {ref}: {unpacked.stderr.strip()}")
        yield tree, commit
