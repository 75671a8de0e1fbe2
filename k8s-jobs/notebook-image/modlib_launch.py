"""How the notebook image starts a launcher's tool for jupyter-server-proxy (installed beside the Jupyter
startup hook, which names it in each launcher's command; the image's Python runs it, standard library only).

jupyter-server-proxy only learns that a tool answers HTTP on its port: a tool that exits is restarted
again and again until the proxy's timeout, and the user gets "could not start ... in time" while the reason
is in the server's log alone. So this runs the tool (with its module loaded through Lmod) with its output
in a log file under the server's root folder, which JupyterLab opens; when the tool exits, or does not
answer on its port in time, it answers on that port itself, with a page naming the module, the command, why,
and the log's last lines. The page stays until the Jupyter server stops, so the tool is not retried in a loop.
"""

from __future__ import annotations

import argparse
import html
import http.server
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

LOAD = '. "$LMOD_PKG/init/bash" && module load "$1" && shift && exec "$@"'
TAIL_LINES = 40
POLL_S = 0.2


def arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="modlib_launch")
    parser.add_argument("--title", required=True)
    parser.add_argument("--module", help="the module loaded first (none: the command runs as it is)")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--timeout", type=float, required=True, help="seconds the tool may take to answer")
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--log-url", required=True, help="where JupyterLab opens the log")
    parser.add_argument("command", nargs="+")
    return parser.parse_args(argv)


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=POLL_S):
            return True
    except OSError:
        return False


def stop(child: subprocess.Popen) -> None:
    """The tool and whatever it started (its own process group)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(child.pid, sig)
            child.wait(timeout=5)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def start(args: argparse.Namespace) -> subprocess.Popen | str:
    """The tool, started with its output in the log; or why it could not be."""
    argv = ["bash", "-c", LOAD, "modlib-launch", args.module, *args.command] if args.module else args.command
    loaded = f"module load {args.module}, then " if args.module else ""
    try:
        args.log.parent.mkdir(parents=True, exist_ok=True)
        with args.log.open("wb") as log:
            log.write(f"modlib: {time.strftime('%Y-%m-%d %H:%M:%S')} {loaded}{shlex.join(args.command)}\n".encode())
            log.flush()
            return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
    except OSError as err:
        return f"could not be started: {err}"


def run(args: argparse.Namespace) -> str:
    """Runs the tool until it exits, or until its timeout when it has not answered yet: why it ended."""
    child = start(args)
    if isinstance(child, str):
        return child
    signal.signal(signal.SIGTERM, lambda *_: (stop(child), sys.exit(0)))  # the proxy stops it with the server
    deadline, ready = time.monotonic() + args.timeout, False
    while child.poll() is None:
        ready = ready or answers(args.port)
        if not ready and time.monotonic() > deadline:
            stop(child)
            return f"did not answer on its port within {args.timeout:g} s, and was stopped"
        time.sleep(POLL_S if not ready else 1)
    code = child.returncode
    return f"exited with status {code}" if code >= 0 else f"was killed by signal {-code}"


def page(args: argparse.Namespace, why: str) -> bytes:
    lines = args.log.read_text(errors="replace").splitlines()[-TAIL_LINES:] if args.log.is_file() else []
    what = f"module <code>{html.escape(args.module)}</code>" if args.module else "no module"
    return f"""<!doctype html><html><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>{html.escape(args.title)} could not start</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:70em}}pre{{background:#f4f4f4;padding:1em;overflow:auto}}
</style></head><body>
<h1>{html.escape(args.title)} could not start</h1>
<p>With {what} loaded, the command</p><pre>{html.escape(shlex.join(args.command))}</pre>
<p>{html.escape(why)}. The last lines of its output:</p>
<pre id="tail">{html.escape(chr(10).join(lines))}</pre>
<p>The whole log: <a href="{html.escape(args.log_url)}" target="_blank">{html.escape(str(args.log))}</a>
(in JupyterLab's file browser). This page stays until the Jupyter server restarts.</p>
</body></html>
""".encode()


def serve(port: int, body: bytes) -> None:
    """Every request on the tool's port gets the page (503), until the proxy stops this process."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(503)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_HEAD = do_POST = do_GET

        def log_message(self, *_) -> None:
            pass

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server = http.server.HTTPServer(("127.0.0.1", port), Handler)
    except OSError as err:  # something the tool left holds the port: the proxy's own timeout says so
        print(f"modlib: cannot answer on port {port}: {err}", file=sys.stderr)
        while True:  # exiting would have the proxy start it again, in a loop
            signal.pause()
    with server:
        server.serve_forever()


def main() -> None:
    args = arguments(sys.argv[1:])
    why = run(args)
    print(f"modlib: {args.title} {why}; log: {args.log}", file=sys.stderr)  # the server's log says it too
    serve(args.port, page(args, why))


if __name__ == "__main__":
    main()
