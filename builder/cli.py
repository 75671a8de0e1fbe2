"""The modlib command line: parse, build the Settings once, call the pipeline, map errors to exit codes."""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from builder.errors import EXIT_BUILD_FAILED, ModlibError
from builder.execute.executors import EXECUTORS
from builder.read.config import Settings, load_settings

config_option = click.option("--config", "config", type=click.Path(path_type=Path), default=None,
                             help="library.yaml (default: easyconfigs/library.yaml, or $MODLIB_CONFIG).")


kubeconfig_option = click.option("--kubeconfig", envvar="KUBECONFIG", type=click.Path(dir_okay=False),
                                 help="Cluster to run Jobs on (default: $KUBECONFIG, the pod's own service "
                                      "account inside a cluster, or ~/.kube/config).")


def _settings(config: Path | None, kubeconfig: str | None) -> Settings:
    env = {**os.environ, **({"KUBECONFIG": kubeconfig} if kubeconfig else {})}
    return load_settings(config, env)


class ModlibGroup(click.Group):
    """The one exit point: a ModlibError becomes one message on stderr and its class's exit code;
    anything else is modlib's own bug (exit 1), with the traceback under --debug. Everything below
    only raises."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ModlibError as err:
            if ctx.params.get("debug"):
                traceback.print_exc()
            click.echo(f"modlib: error: {err}", err=True)
            sys.exit(err.exit_code)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as err:
            if ctx.params.get("debug"):
                traceback.print_exc()
            hint = "" if ctx.params.get("debug") else " (run with --debug for the traceback)"
            click.echo(f"modlib: internal error: {type(err).__name__}: {err}{hint}", err=True)
            sys.exit(EXIT_BUILD_FAILED)


@click.group(cls=ModlibGroup)
@click.version_option(package_name="modlib")
@click.option("--debug", is_flag=True, help="Show the traceback of an error.")
def main(debug: bool) -> None:
    """Build a shared Lmod module library from curated EasyBuild easystacks."""


def _targets(settings: Settings, name: str | None):
    return [settings.target(name)] if name else list(settings.targets.values())


@main.command()
@config_option
@click.option("--target", help="Plan this target only (default: all).")
@click.option("--easystack", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="Plan this easystack alone, for --target (default: the first cpu target).")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON (the CLI contract's shape).")
def plan(config: Path | None, target: str | None, easystack: Path | None, as_json: bool) -> None:
    """Resolve the curated lists into one dependency graph and show what is missing."""
    from builder.plan.planner import make_plan

    settings = load_settings(config)
    targets = _targets(settings, target)
    if easystack is not None:
        targets = [settings.target(target) if target else settings.first_cpu_target()]
    result = make_plan(settings, targets, easystack)
    if as_json:
        click.echo(json.dumps(result.as_json(), indent=1))
        return
    table = Table("module", "tree", "target", "deps", "state", title=f"plan: {len(result.nodes)} modules, "
                  f"{len(result.missing())} to build")
    for node in result.nodes:
        table.add_row(node.module, node.tree, node.target, str(len(node.deps)),
                      "installed" if node.installed else "[bold]to build[/]")
    Console().print(table)


@main.command()
@config_option
@click.option("--target", help="Build this target only (default: all).")
@click.option("--executor", type=click.Choice(list(EXECUTORS)), default="local", show_default=True,
              help="local: a process pool here; kubernetes: one Job per module on the cluster.")
@kubeconfig_option
@click.option("--jobs", type=click.IntRange(min=1), help="Builds at once (default: the targets' jobs).")
@click.option("--dry-run", is_flag=True, help="Show what would be built, build nothing.")
@click.option("--rebuild", multiple=True, metavar="MODULE", help="Rebuild this installed module (repeatable).")
@click.option("--wait", is_flag=True, help="Wait for another run's lock instead of exiting with code 3.")
def build(config: Path | None, target: str | None, executor: str, kubeconfig: str | None, jobs: int | None,
          dry_run: bool, rebuild: tuple[str, ...], wait: bool) -> None:
    """Fetch sources, then build every missing module with EasyBuild and publish it."""
    settings = _settings(config, kubeconfig)
    targets = _targets(settings, target)
    if dry_run:
        from builder.plan.planner import make_plan

        todo = make_plan(settings, targets).select(list(rebuild))
        for node in todo:
            click.echo(f"would build {node.tree}/{node.module}  ({node.easyconfig.name})")
        click.echo(f"{len(todo)} to build")
        return
    from builder.run import run_build

    console = Console(highlight=False, soft_wrap=True)
    result = run_build(settings, targets, executor=executor, jobs=jobs, rebuild=list(rebuild), wait=wait,
                       report=lambda msg: console.print(msg, markup=False))
    _summary(console, result)
    if result.failed or result.blocked:
        sys.exit(EXIT_BUILD_FAILED)


def _summary(console: Console, result) -> None:
    skipped = len(result.plan.nodes) - len(result.todo)
    console.print(f"\nbuilt {len(result.built)}, already published {skipped}, failed {len(result.failed)}, "
                  f"not built because a dependency failed {len(result.blocked)} ({result.seconds:.1f} s)",
                  markup=False)
    for warning in result.warnings:
        console.print(f"warning: {warning}", markup=False)
    for key, tail in result.failed.items():
        console.print(f"\n--- {'/'.join(key)} failed; last lines of its log:\n{tail}", markup=False)
    for key, cause in result.blocked.items():
        console.print(f"not built: {'/'.join(key)} (needs {'/'.join(cause)})", markup=False)


@main.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status(config: Path | None, as_json: bool) -> None:
    """Per target: published, missing, failed (with build record), drifted, and the last run."""
    from builder.plan.planner import make_plan
    from builder.status import library_status

    settings = load_settings(config)
    plans = {t.name: make_plan(settings, [t]) for t in settings.targets.values()}
    info = library_status(settings, plans)
    if as_json:
        click.echo(json.dumps(info, indent=1, default=str))
        return
    for name, t in info["targets"].items():
        click.echo(f"{name}: {len(t['published'])} published, {len(t['missing'])} missing, "
                   f"{len(t['failed'])} failed, {len(t['drifted'])} drifted")
        for d in t["drifted"]:
            click.echo(f"  drift: {d['module']} ({d['easyconfig']} changed since it was built)")
        for p in t["python_mismatch"]:
            click.echo(f"  python: {p['module']} was built for Python {p['python']}, notebooks run another")
        for f in t["failed"]:
            click.echo(f"  failed: {f['module']} (exit {f['record']['exit_code']}, log {f['record']['log']})")
    last = info["last_run"]
    if last:
        when = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(last["finished"]))
        click.echo(f"last run: {when} on {last['host']}, {len(last['built'])} built, {len(last['failed'])} failed, "
                   f"{len(last['blocked'])} not built ({last['seconds']} s)")
    else:
        click.echo("last run: none")


@main.command()
@config_option
@click.argument("modules", nargs=-1, required=True, metavar="MODULE...")
def remove(config: Path | None, modules: tuple[str, ...]) -> None:
    """Unpublish modules (full names); their prefixes expire after the grace period."""
    from builder.remove import remove as remove_modules

    console = Console(highlight=False, soft_wrap=True)
    remove_modules(load_settings(config), list(modules), lambda msg: console.print(msg, markup=False))


@main.command()
@config_option
@click.option("--target", required=True, help="The target a notebook image uses.")
def env(config: Path | None, target: str) -> None:
    """Print the shell lines a notebook image sources to see a target's modules."""
    from builder.publish.notebook_env import env_lines

    for line in env_lines(load_settings(config), target):
        click.echo(line)


@main.command()
@config_option
@click.option("--target", required=True, help="The target whose build Jobs to write.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the manifests (one file per Job, plus kustomization.yaml).")
def render(config: Path | None, target: str, out: Path) -> None:
    """Write the Kubernetes Jobs of one run: one per module still to build."""
    from builder.execute.render import render_run

    settings = load_settings(config)
    files, inputs = render_run(settings, settings.target(target), out)
    click.echo(f"wrote {len(files)} Job manifest(s) and kustomization.yaml to {out}")
    click.echo(f"their pods read the site easyconfigs from {inputs} on the library volume "
               f"(staged by `modlib build --executor kubernetes`)")
