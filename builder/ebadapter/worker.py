"""Parsing easyconfigs in a sandbox: worker processes that parse what the runner asks and answer data.

An easyconfig is Python that EasyBuild runs while parsing it, with the site hooks; the runner holds
write access to the library and, in a cluster, its service account's token. So the runner parses in
workers (``python -m builder.ebadapter.worker``) that a sandbox wraps (builder/execute/sandbox.py): each
configures EasyBuild as the runner's session is configured, then reads a question a line on stdin
(``parse PATH``; ``sources PATH``: what a build of it fetches; ``tweak PATH``: the easyconfigs an entry's
``--try-*`` options make of it, which EasyBuild writes into the worker's private ``/tmp``) and writes one
JSON answer a line. The runner trusts none of it: an answer must have the shape of a parse
(``Session.from_data``), of a source list (``SourceFile.from_data``) or of tweaked files (plain ``*.eb``
names and texts, which the runner writes and never parses itself), dependencies are looked up again by
the runner's own robot, and an error is at most a bounded message. A worker that dies fails the
question it was given.
"""

from __future__ import annotations

import json
import os
import queue
import re
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from builder import jsonfile, proc
from builder.ebadapter import ParsedEasyconfig, Session, configured
from builder.ebadapter.sources import SourceFile
from builder.errors import BadInput, ModlibError, RunFailed, rebuilt

#: The longest answer read from a worker, and the longest message of one that failed.
_MAX_ANSWER, _MAX_MESSAGE = 1 << 20, 2000

#: A tweaked easyconfig's file name, as the runner accepts it: a plain name in one folder.
_EB_NAME = re.compile(r"[A-Za-z0-9_+][A-Za-z0-9._+-]*\.eb")


def _answer(eb: Session, question: str) -> dict:
    """``parse PATH``: the parse; ``sources PATH``: the files a build of it fetches; ``tweak PATH``: the
    easyconfigs the session's ``--try-*`` options make of it."""
    op, _, path = question.partition(" ")
    try:
        if op == "sources":
            return {"sources": [f.data() for f in eb.source_files(Path(path))]}
        if op == "tweak":
            return {"tweaked": _tweaked(eb, Path(path))}
        return {"parsed": eb.parse(Path(path)).data()}
    except ModlibError as err:
        return {"error": "bad" if isinstance(err, BadInput) else "failed", "message": str(err)}


def _tweaked(eb: Session, path: Path) -> dict:
    """The tweaked easyconfig's name and every file EasyBuild wrote for it, by folder: 0 for the listed
    one (first in the robot path), 1 for the dependencies it tweaked too (last)."""
    spec = eb.tweak(path)
    folders = [Path(d) for d in eb.tweak_dirs or ()]
    files = [[i, f.name, f.read_text()] for i, d in enumerate(folders) if d.is_dir() for f in sorted(d.glob("*.eb"))]
    return {"spec": spec.name if spec.parent == folders[0] else "", "files": files}


def main() -> None:
    """The worker: a session configured by the first line, then one answer per question."""
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # what EasyBuild or an easyconfig prints goes to stderr, not among the answers
    request = json.loads(sys.stdin.readline())
    try:
        with configured([Path(p) for p in request["robot_paths"]], Path(request["hooks"]) if request["hooks"] else None,
                        request["options"], request["origin"]) as eb:
            answers.write('{"ready": true}\n')
            answers.flush()
            for line in sys.stdin:
                answers.write(json.dumps(_answer(eb, line.rstrip("\n"))) + "\n")
                answers.flush()
    except ModlibError as err:
        answers.write(json.dumps({"error": "bad" if isinstance(err, BadInput) else "failed", "message": str(err)}))


class Workers:
    """Sandboxed parse workers for one planning session, started when first needed, at most ``limit``."""

    def __init__(self, wrap: Callable[[list[str]], list[str]], env: Mapping[str, str], robot_paths: Sequence[Path],
                 hooks: Path | None, options: Mapping[str, object], origin: object, limit: int):
        self.wrap, self.env, self.limit = wrap, dict(env), limit
        self.request = json.dumps({"robot_paths": [str(p) for p in robot_paths], "hooks": str(hooks) if hooks else None,
                                   "options": dict(options), "origin": str(origin)}, default=str)
        self.running: list[tuple[proc.Process, tempfile._TemporaryFileWrapper]] = []

    def _start(self) -> tuple[proc.Process, tempfile._TemporaryFileWrapper]:
        log = tempfile.NamedTemporaryFile(prefix="modlib-parse-")
        child = proc.start_piped(self.wrap([sys.executable, "-I", "-m", "builder.ebadapter.worker"]), env=self.env,
                                 stderr=log)
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write(self.request + "\n")
        child.stdin.flush()
        ready = _read(child, log)
        if ready != {"ready": True}:
            child.kill()
            child.wait()
            err = _error(ready, f"the sandboxed parse worker did not start: {_tail(log)}")
            log.close()
            raise err
        return child, log

    def parse(self, eb: Session, paths: list[Path]) -> list[ParsedEasyconfig]:
        """Each path's parse; the first path's error in order is raised, as parsing one by one would."""
        try:
            return [eb.from_data(answer["parsed"], path) for path, answer in self._ask("parse", paths, "parsed")]
        except ValueError as err:
            raise RunFailed(f"the sandboxed parse answered no parse: {err}") from None

    def sources(self, paths: list[Path]) -> list[list[SourceFile]]:
        """The files a build of each easyconfig fetches, as ``Session.source_files`` lists them."""
        try:
            return [[SourceFile.from_data(f, path) for f in _listed(answer["sources"])]
                    for path, answer in self._ask("sources", paths, "sources")]
        except ValueError as err:
            raise RunFailed(f"the sandboxed parse answered no source list: {err}") from None

    def tweak(self, eb: Session, path: Path) -> Path:
        """The easyconfig the session's ``--try-*`` options make of ``path``, as ``Session.tweak`` gives it,
        made in the sandbox: the files it answers are written into ``eb``'s own ``tweak_dirs``, by name."""
        ((_, answer),) = self._ask("tweak", [path], "tweaked")
        try:
            return _written(answer["tweaked"], eb.tweak_dirs)
        except ValueError as err:
            raise RunFailed(f"{path}: the sandboxed tweak answered no tweaked easyconfigs: {err}") from None

    def _ask(self, op: str, paths: list[Path], key: str) -> list[tuple[Path, dict]]:
        """Each path's answer to ``op``, by the workers (more of them for a larger batch)."""
        want = min(self.limit, max(1, len(paths) // 4))
        while len(self.running) < want:
            self.running.append(self._start())
        todo: queue.SimpleQueue[int] = queue.SimpleQueue()
        for i in range(len(paths)):
            todo.put(i)
        answers: list[dict | None] = [None] * len(paths)
        questions = [f"{op} {p}" for p in paths]
        threads = [threading.Thread(target=self._serve, args=(w, questions, todo, answers)) for w in list(self.running)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for path, answer in zip(paths, answers, strict=True):
            if answer is None or key not in answer:
                raise _error(answer, f"{path}: no sandboxed parse worker answered")
        return list(zip(paths, answers, strict=True))  # type: ignore[arg-type]

    def _serve(self, worker: tuple[proc.Process, tempfile._TemporaryFileWrapper], questions: list[str],
               todo: queue.SimpleQueue[int], answers: list[dict | None]) -> None:
        child, log = worker
        assert child.stdin is not None
        while True:
            try:
                i = todo.get_nowait()
            except queue.Empty:
                return
            try:
                child.stdin.write(f"{questions[i]}\n")
                child.stdin.flush()
            except OSError:
                answer = None
            else:
                answer = _read(child, log)
            if answer is None or not isinstance(answer, dict):
                ended = f"{questions[i]}: the sandboxed parse worker ended: {_tail(log)}"
                answers[i] = {"error": "failed", "message": ended}
                self.running.remove(worker)
                return
            answers[i] = answer

    def close(self) -> None:
        for child, log in self.running:
            assert child.stdin is not None
            child.stdin.close()
            child.wait()
            log.close()
        self.running = []


def _read(child: proc.Process, log: tempfile._TemporaryFileWrapper) -> dict | None:
    """One answer, or None where the worker ended or wrote something that is not one."""
    assert child.stdout is not None
    line = child.stdout.readline(_MAX_ANSWER)
    try:
        answer = json.loads(line)
    except ValueError:
        return None
    return answer if isinstance(answer, dict) else None


def _written(answer: object, folders: tuple[str, str] | None) -> Path:
    """The files of a tweak's answer written into ``folders`` (plain ``*.eb`` names, each once), and the
    path of the tweaked listed easyconfig, the only one in the first folder (a dependency's there would
    shadow the site's); anything else is a ValueError, before any is written."""
    if folders is None or not isinstance(answer, dict):
        raise ValueError(f"not a tweak: {str(answer)[:200]}")
    files: dict[Path, str] = {}
    for item in _listed(answer.get("files")):
        if not (isinstance(item, list) and len(item) == 3 and item[0] in (0, 1) and type(item[0]) is int
                and isinstance(item[1], str) and _EB_NAME.fullmatch(item[1]) and ".." not in item[1]
                and isinstance(item[2], str)):
            raise ValueError(f"not a tweaked easyconfig file: {str(item)[:200]}")
        target = Path(folders[item[0]]) / item[1]
        if target in files:
            raise ValueError(f"{item[1]} answered twice")
        files[target] = item[2]
    spec = Path(folders[0]) / str(answer.get("spec"))
    if [f for f in files if f.parent == spec.parent] != [spec]:  # the first robot folder: it shadows every other
        raise ValueError(f"the tweaked easyconfig {str(answer.get('spec'))[:200]!r} is not the one file of its folder")
    for target, text in files.items():
        jsonfile.write_text(target, text)
    return spec


def _listed(value: object) -> list:
    if not isinstance(value, list):
        raise ValueError(f"not a list: {str(value)[:200]}")
    return value


def _tail(log: tempfile._TemporaryFileWrapper) -> str:
    log.seek(0, os.SEEK_END)
    log.seek(max(0, log.tell() - _MAX_MESSAGE))
    return log.read().decode(errors="replace").strip() or "no output"


def _error(answer: dict | None, default: str) -> ModlibError:
    """The error a worker answered (bounded; a hostile easyconfig writes it), or ``default``."""
    if answer and answer.get("error") in ("bad", "failed") and isinstance(answer.get("message"), str):
        return rebuilt(BadInput if answer["error"] == "bad" else RunFailed, answer["message"][:_MAX_MESSAGE])
    return RunFailed(default)


if __name__ == "__main__":
    main()
