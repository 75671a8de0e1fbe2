# The notebook image's Jupyter startup hook, installed as <venv>/etc/jupyter/jupyter_server_config.py
# (every Jupyter server of that Python reads it first). jupyter-lmod runs inside the server process,
# which reads no shell startup file, and kernels, terminals and launchers inherit the server's
# environment: so the server takes the environment a login shell gets from /etc/profile.d (Lmod's
# init, then modlib.sh, which sources the target's env.sh or says why it cannot), and jupyter-lmod's
# settings from the live view. A publish changes them for servers started after it.
# `c` is the config object Jupyter hands to this file.
import asyncio
import json
import os
import subprocess
import sys
import urllib.parse
from pathlib import Path

from traitlets.config import Config

PROFILE_HOOKS = ["/etc/profile.d/lmod.sh", "/etc/profile.d/modlib.sh"]
SHELL_ONLY = {"_", "PWD", "OLDPWD", "SHLVL"}

# The tools' launcher wrapper, installed beside this hook; their tiles' category in JupyterLab's launcher.
LAUNCH = Path(sys.prefix, "etc", "jupyter", "modlib_launch.py")
CATEGORY = "Module library"


def profile_environment() -> dict[str, str]:
    """The variables Lmod's init and modlib.sh set, as a login shell would have them."""
    hooks = [h for h in PROFILE_HOOKS if os.path.exists(h)]
    done = subprocess.run(["bash", "-c", 'for hook; do . "$hook"; done; env -0', "modlib-hooks", *hooks],
                          capture_output=True, text=True, check=True)
    if done.stderr.strip():
        print(done.stderr.strip(), file=sys.stderr)  # modlib.sh's own message: no library, or no such target
    pairs = (item.split("=", 1) for item in done.stdout.split("\0") if "=" in item)
    return {k: v for k, v in pairs if k not in SHELL_ONLY}


def root_dir() -> str:
    """The folder JupyterLab's file browser shows (the server's, once it runs), where the tools' logs go."""
    from jupyter_server.serverapp import ServerApp

    return ServerApp.instance().root_dir if ServerApp.initialized() else os.environ.get("HOME", "/tmp")


def proxied(name: str, title: str, command: list[str], module: str | None, timeout: float, path_info: str = "",
            new_browser_tab: bool = True) -> dict:
    """jupyter-server-proxy's settings of one tool, run by modlib_launch.py: it loads the module, keeps the
    tool's output in launcher-logs/<name>.log under the server's root folder, and answers on the tool's port
    with a page saying why when the tool exits or does not answer within ``timeout`` (so the proxy, which
    waits a little longer, never restarts it in a loop)."""
    def literal(text: str) -> str:  # the proxy formats every argument with {port} and {base_url}
        return text.replace("{", "{{").replace("}", "}}")

    def argv(port: int, base_url: str) -> list[str]:
        root = root_dir()
        log = Path(root, "launcher-logs", f"{name}.log")
        url = base_url + "lab/tree/" + urllib.parse.quote(str(log.relative_to(root)))
        return [literal(a) for a in (sys.executable, str(LAUNCH), "--title", title, "--port", str(port),
                                     "--timeout", str(timeout), "--log", str(log), "--log-url", url)] + \
            (["--module", literal(module)] if module else []) + ["--", *command]

    return {"command": argv, "timeout": timeout + 10, "new_browser_tab": new_browser_tab,
            "launcher_entry": {"title": title, "category": CATEGORY, "path_info": f"{name}/{path_info}"}}


def servers(target: Path) -> dict[str, dict]:
    """The library's launchers (launchers.json: library.yaml's notebook.launchers, each with the featured
    module it loads), and the catalogue page of the target, served from the live view."""
    launchers = json.loads((target / "launchers.json").read_text()) if (target / "launchers.json").is_file() else {}
    out = {name: proxied(name, entry["title"], entry["command"], entry["module"], entry["timeout"],
                         entry["path_info"], entry["new_browser_tab"]) for name, entry in launchers.items()}
    if (target / "catalogue.html").is_file():
        serve = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(target.parent),
                 "{port}"]
        out["catalogue"] = proxied("catalogue", "Module catalogue", serve, None, 15, f"{target.name}/catalogue.html")
    return out


def featured_first(featured: list[str]) -> None:
    """jupyter-lmod 5.3 sorts `module avail` by name and has no setting for an order: its client's
    avail is wrapped so that the library's featured modules come first, in featured.json's order."""
    import module  # jupyter-lmod's Lmod client: it reads LMOD_CMD when imported, so only now

    avail = module.ModuleAPI.avail
    rank = {name: i for i, name in enumerate(featured)}

    async def ordered(self, *args):
        return sorted(await avail(self, *args), key=lambda name: rank.get(name, len(rank)))

    module.ModuleAPI.avail = ordered


def listing_from_cache() -> None:
    """The panel's list is `$LMOD_CMD python --terse avail`, which Lmod answers from the library's spider
    cache only with LMOD_CACHED_LOADS=yes, else it walks every tree: 20 s on 1,099 modules behind a 1 ms
    file system, again after each Load click (jupyter-lmod drops its list then). So the list is asked with
    cached loads on, whatever env.sh says; loads, kernels and terminals keep env.sh's setting
    (notebook.cached_loads), measured slower on deep loads (docs/performance.md)."""
    import module  # jupyter-lmod's Lmod client: it reads LMOD_CMD when imported, so only now

    run = module.module

    async def listed(command, *args):
        if command != "avail" or not module.MODULE_CMD:
            return await run(command, *args)
        proc = await asyncio.create_subprocess_exec(
            *module.MODULE_CMD.split(), "python", "--terse", "avail", *args, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env={**os.environ, "LMOD_CACHED_LOADS": "yes"})
        _, stderr = await proc.communicate()
        return stderr.decode() or None  # Lmod's terse avail is on stderr, as jupyter-lmod's own call reads it

    module.module = listed


def panel_file() -> None:
    """jupyter-lmod's panel loads into this server's environment, and Jupyter restarts a kernel with the
    environment of its session's start: so after each of the panel's changes the server writes what it has
    loaded (LOADEDMODULES) to a file named in MODLIB_PANEL_MODULES, which every kernel inherits. The library's
    kernel.sh loads from it at each start and restart; a running kernel compares it with what it started with."""
    import module  # jupyter-lmod's Lmod client: it reads LMOD_CMD when imported, so only now
    from jupyter_core.paths import jupyter_runtime_dir

    path = Path(jupyter_runtime_dir(), f"modlib-panel-{os.getpid()}.modules")
    path.parent.mkdir(parents=True, exist_ok=True)
    os.environ["MODLIB_PANEL_MODULES"] = str(path)
    run = module.module

    def write() -> None:
        draft = path.with_suffix(".draft")
        draft.write_text(os.environ.get("LOADEDMODULES", "") + "\n")
        os.replace(draft, path)  # a kernel starting meanwhile reads the old line or the new, never half

    async def tracked(command, *args):
        try:
            return await run(command, *args)
        finally:
            if command in ("load", "unload", "purge", "reset", "restore", "use", "unuse"):
                write()

    module.module = tracked
    write()


def configure(config: Config) -> None:
    os.environ.update(profile_environment())
    target = Path(os.environ.get("MODLIB_ROOT", "/srv/modlib"), "live", "targets", os.environ.get("MODLIB_TARGET", "cpu"))
    if not (target / "env.sh").is_file():
        return  # modlib.sh said why
    settings = json.loads((target / "jupyter_server_config.json").read_text())
    config.merge(Config(settings))  # jupyter-lmod's launcher_pins and launcher_module_map
    featured = [m["module"] for m in json.loads((target / "featured.json").read_text())["modules"]]
    config.ServerProxy.servers = servers(target)
    # jupyter-lmod shows a tool's tile only while its module is loaded, unless the tool is pinned
    pinned = settings.get("Lmod", {}).get("launcher_pins", [])
    config.Lmod.launcher_pins = sorted({*pinned, *config.ServerProxy.servers})
    featured_first(featured)
    listing_from_cache()
    panel_file()


configure(c)  # type: ignore[name-defined]  # noqa: F821
