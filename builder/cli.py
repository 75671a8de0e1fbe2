"""The modlib command line: parse, build the Settings once, call the pipeline, map errors to exit codes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

import click

from builder.errors import EXIT_BUILD_FAILED, BadInput, ModlibError
from builder.execute.executors import EXECUTORS
from builder.read.config import Settings, load_settings

if TYPE_CHECKING:
    from rich.console import Console

    from builder.execute.expected import Expected
    from builder.plan.graph import NodeKey, Plan
    from builder.report.estimates import RunEstimate

config_option = click.option("--config", "config", type=click.Path(path_type=Path), default=None,
                             help="library.yaml (default: easyconfigs/library.yaml, or $MODLIB_CONFIG).")


kubeconfig_option = click.option("--kubeconfig", envvar="KUBECONFIG", type=click.Path(dir_okay=False),
                                 help="Cluster to run Jobs on (default: $KUBECONFIG, the pod's own service "
                                      "account inside a cluster, or ~/.kube/config).")


def _settings(config: Path | None, kubeconfig: str | None) -> Settings:
    return load_settings(config, options={"kubeconfig": kubeconfig})


class ModlibGroup(click.Group):
    """The one exit point: a ModlibError becomes one message on stderr and its class's exit code;
    anything else is modlib's own bug (exit 1), with the traceback under --debug. Everything below
    only raises."""

    def invoke(self, ctx: click.Context):
        try:
            done = super().invoke(ctx)
            sys.stdout.flush()  # here, where a reader that went away is caught, not at the interpreter's exit
            return done
        except BrokenPipeError:
            # `modlib status | head`: the reader took what it wanted; stop as a shell tool stopped by SIGPIPE
            # does, quietly, with 128 + SIGPIPE (Python ignores the signal and would raise at every write)
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(128 + signal.SIGPIPE)
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


def _console() -> Console:
    """rich is imported by the commands that print through it: ``plan --json`` and ``status`` run often
    (scripts, the notebook side) and never need it."""
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def _to_stderr(message: str) -> None:
    click.echo(message, err=True)


def _targets(settings: Settings, name: str | None):
    return [settings.target(name)] if name else list(settings.targets.values())


@main.command()
@config_option
@click.option("--target", help="Plan this target only (default: all).")
@click.option("--easystack", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="Plan this easystack alone, for --target (default: the first cpu target).")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON (the CLI contract's shape).")
@click.option("--diff", "ref", metavar="REF", help="Compare with the plan at this git ref of the site repository: "
              "what a merge adds, drops and would rebuild, per target (--target: that one).")
@click.option("--format", "fmt", type=click.Choice(["markdown", "json"]), default="markdown", show_default=True,
              help="With --diff: Markdown for a merge-request comment, JSON for bots.")
@click.option("--check-sources", is_flag=True,
              help="Fetch and verify (checksums) into the source cache what building the plan would fetch; "
                   "build nothing.")
def plan(config: Path | None, target: str | None, easystack: Path | None, as_json: bool, ref: str | None,
         fmt: str, check_sources: bool) -> None:
    """Resolve the curated lists into one dependency graph and show what is missing and what drifted."""
    from builder.plan.planner import make_plan
    from builder.publish.live import drifted
    from builder.report.estimates import estimate_run

    settings = load_settings(config)
    targets = _targets(settings, target)
    if ref is not None:
        from builder.report.diff_markdown import render
        from builder.report.plan_diff import plan_diff

        if easystack is not None:
            raise BadInput("--easystack", "--diff compares the whole site repository; it takes no --easystack")
        diff = plan_diff(settings, ref)
        if target:
            diff.targets = {target: diff.targets[target]}
        fmt = "json" if as_json else fmt
        click.echo(json.dumps(diff.as_json(), indent=1) if fmt == "json" else render(diff), nl=fmt == "json")
        return
    if easystack is not None:
        targets = [settings.target(target) if target else settings.first_cpu_target()]
    result = make_plan(settings, targets, easystack)
    if check_sources:
        from builder.commands.run import check_root, fetch_sources, list_sources

        check_root(settings)
        fetch_sources(settings, list_sources(settings, result.missing(), _to_stderr), _to_stderr)
    drift = {n.key: drifted(settings.layout, n) is not None for n in result.nodes}
    run = estimate_run(settings.layout, result.missing(), max(t.jobs for t in targets))
    if as_json:
        nodes = [{**n.as_json(), "drift": drift[n.key], **_estimate_json(run.costs.get(n.key))} for n in result.nodes]
        click.echo(json.dumps({"nodes": nodes, "estimate": run.as_json()}, indent=1))
        return
    _print_plan(result, drift, run)


def _estimate_json(exp: Expected | None) -> dict:
    if exp is None:
        return {}
    return {"estimate": {"seconds": round(exp.seconds, 1), "from": exp.basis,
                         "peak_memory_bytes": exp.peak_memory_bytes, "memory_from": exp.memory_basis}}


def _print_plan(result: Plan, drift: dict[NodeKey, bool], run: RunEstimate) -> None:
    from rich.console import Console
    from rich.table import Table

    from builder.report.estimates import duration, label

    table = Table(title=f"plan: {len(result.nodes)} modules, {len(result.missing())} to build, "
                  f"{sum(drift.values())} drifted")
    # module names whole at any width (a pipe's 80 columns): the other columns wrap instead
    table.add_column("module", no_wrap=True, min_width=max((len(n.module) for n in result.nodes), default=6))
    for name in ("tree", "target", "deps", "state", "build time"):
        table.add_column(name)
    for node in result.nodes:
        state = "[bold]to build[/]" if not node.installed else "installed, [bold]drifted[/]" if drift[node.key] \
            else "installed"
        exp = run.costs.get(node.key)
        table.add_row(node.module, node.tree, node.target, str(len(node.deps)), state, label(exp) if exp else "")
    console = Console()
    if not console.is_terminal:  # a pipe or a file: as wide as the table, not rich's default 80 columns
        console = Console(width=max(80, Console(width=1000).measure(table).maximum))
    console.print(table)
    for name in dict.fromkeys(n.target for n in result.nodes):
        builds = [n for n in result.missing() if n.target == name]
        if builds:
            console.print(f"{name}: {len(builds)} to build, ~{duration(run.work(builds))} one after another")
    if run.costs:
        console.print(f"the run: ~{duration(run.makespan)} at {run.jobs} builds at once (the targets' jobs), "
                      "ordered as `modlib build` orders them")


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
    from builder.commands.run import run_build

    console = _console()
    result = run_build(settings, targets, executor=executor, jobs=jobs, rebuild=list(rebuild), wait=wait,
                       report=lambda msg: console.print(msg, markup=False))
    _summary(console, result)
    if result.failed or result.blocked or result.altered:
        sys.exit(EXIT_BUILD_FAILED)


def _summary(console: Console, result) -> None:
    skipped = len(result.plan.nodes) - len(result.todo)
    console.print(f"\nbuilt {len(result.built)}, already published {skipped}, failed {len(result.failed)}, "
                  f"not built because a dependency failed {len(result.blocked)} ({result.seconds:.1f} s)",
                  markup=False)
    for warning in result.warnings:
        console.print(f"warning: {warning}", markup=False)
    for damage in result.altered:
        console.print(f"warning: {damage}: no generation was published over this damage (`modlib verify` shows "
                      "it; `modlib build --rebuild` of a damaged module stores a fresh file)", markup=False)
    for key, tail in result.failed.items():
        console.print(f"\n--- {'/'.join(key)} failed; last lines of its log:\n{tail}", markup=False)
    for key, cause in result.blocked.items():
        console.print(f"not built: {'/'.join(key)} (needs {'/'.join(cause)})", markup=False)


@main.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.option("--where", "where", multiple=True, metavar="KEY=VALUE|KEY!=VALUE",
              help="Only list published modules built with (=) or without (!=) an option value, such as "
                   "cuda-compute-capabilities!=9.0 or easybuild-version=5.4.1 (repeatable: all must hold).")
def status(config: Path | None, as_json: bool, where: tuple[str, ...]) -> None:
    """Per target: published, missing, failed (with build record), drifted, damaged, not live, orphaned;
    the run in progress and the last run. A target whose easyconfigs do not parse shows its error."""
    from builder.commands.status import library_status, plan_targets

    settings = load_settings(config)
    if where:
        _where(settings, list(where), as_json)
        return
    info = library_status(settings, plan_targets(settings))
    if as_json:
        click.echo(json.dumps(info, indent=1, default=str))
        return
    for name, t in info["targets"].items():
        click.echo(f"{name}: {len(t['published'])} published, {len(t['missing'])} missing, "
                   f"{len(t['failed'])} failed, {len(t['drifted'])} drifted, {len(t['damaged'])} damaged, "
                   f"{len(t['not_live'])} not live, {len(t['orphaned'])} orphaned")
        for line in _target_lines(t):
            click.echo(f"  {line}")
    for problem in info["damage"]:
        click.echo(f"damaged: {problem}")
    run = info["run_in_progress"]
    if run:
        click.echo(f"run in progress: {run['holder']} on {run['host']}, process {run['pid']}, "
                   f"since {_when(run['started'])}, last heartbeat {time.time() - run['heartbeat']:.0f} s ago"
                   + (" (its holder looks gone: the next run takes the lock over)" if run["gone"] else ""))
    last = info["last_run"]
    if last:
        click.echo(f"last run: {_when(last['finished'])} on {last['host']}, {len(last['built'])} built, "
                   f"{len(last['failed'])} failed, {len(last['blocked'])} not built ({last['seconds']} s)")
    else:
        click.echo("last run: none")


def _where(settings: Settings, conditions: list[str], as_json: bool) -> None:
    from builder.report.where import conditions_of, query

    found = query(settings, conditions_of(conditions))
    if as_json:
        click.echo(json.dumps(found, indent=1))
        return
    click.echo(f"{len(found['modules'])} published modules built with {' and '.join(found['where'])}")
    for m in found["modules"]:
        click.echo(f"  {m['tree']}/{m['module']}  ({', '.join(f'{k}={v}' for k, v in m['values'].items())})")
    for m in found["not_recorded"]:
        click.echo(f"  not recorded: {m['tree']}/{m['module']} (its build record predates recorded options)")
    if found["not_applicable"]:
        trees = sorted({m["tree"] for m in found["not_applicable"]})
        click.echo(f"not applicable: {len(found['not_applicable'])} modules of the {', '.join(trees)} tree(s), "
                   "whose target and builds do not set the option")


@main.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print the provenance as JSON.")
@click.argument("module")
def show(config: Path | None, as_json: bool, module: str) -> None:
    """Where a published module came from: easyconfig and digest, EasyBuild, hooks, options, sources,
    when and where it was built, its prefix, its integrity now and what loads it."""
    from builder.report.provenance import lines, provenance
    from builder.report.published import published_keys, resolve

    settings = load_settings(config)
    info = provenance(settings, resolve(published_keys(settings.layout, settings.trees()), module))
    click.echo(json.dumps(info, indent=1) if as_json else "\n".join(lines(info)))


@main.command()
@config_option
@click.option("--path", "path_only", is_flag=True, help="Print the log's path, not the log.")
@click.option("--all", "every", is_flag=True, help="List every recorded run of the module.")
@click.argument("module")
def logs(config: Path | None, path_only: bool, every: bool, module: str) -> None:
    """The last build log of a module (built or failed)."""
    from builder.report.build_logs import last_log, run_lines, runs
    from builder.report.published import recorded_keys, resolve

    settings = load_settings(config)
    key = resolve(recorded_keys(settings.layout, settings.trees()), module)
    if every:
        click.echo("\n".join(run_lines(runs(settings.layout, key))))
        return
    log = last_log(settings.layout, key)
    if path_only:
        click.echo(str(log))
        return
    with open(log, "rb") as fh:
        shutil.copyfileobj(fh, sys.stdout.buffer)


def _when(stamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(stamp))


def _target_lines(t: dict) -> list[str]:
    """One line per thing an admin should look at in one target's status."""
    lines = [f"error: {t['error']} (this target could not be planned; its trees' published modules are listed)"
             ] if t["error"] else []
    lines += [f"drift: {d['module']} ({d['easyconfig']} changed since it was built)" for d in t["drifted"]]
    lines += [f"damaged: {d['tree']}/{d['module']}: {'; '.join(d['problems'])}" for d in t["damaged"]]
    lines += [f"not live: {d['tree']}/{d['module']}: {d['why']}" for d in t["not_live"]]
    lines += [f"orphaned: {d['tree']}/{d['module']} (published, in no curated list any more)" for d in t["orphaned"]]
    lines += [f"unrecorded: {d['tree']}/{d['module']} (published before integrity records; verify cannot check it)"
              for d in t["unrecorded"]]
    lines += [f"python: {p['module']} was built for Python {p['python']}, notebooks run another"
              for p in t["python_mismatch"]]
    lines += [f"unisolated: {d['tree']}/{d['module']} (built without a sandbox, as sandbox.unisolated allowed)"
              for d in t["unisolated"]]
    lines += [f"failed: {f['module']} (exit {f['record']['exit_code']}, log {f['record']['log']})" for f in t["failed"]]
    return lines


@main.command()
@config_option
@click.option("--quick", is_flag=True, help="Read only files whose size or mtime differ from the record.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.argument("modules", nargs=-1, metavar="[MODULE]...")
def verify(config: Path | None, quick: bool, as_json: bool, modules: tuple[str, ...]) -> None:
    """Check published modules (all, or these: full names or bare software names) against their integrity
    records and the live view; exit 1 when any is damaged."""
    from builder.commands.verify import select
    from builder.commands.verify import verify as check

    settings = load_settings(config)
    report = check(settings.layout, select(settings.layout, settings.trees(), list(modules)),
                   thorough=not quick, trees=[] if modules else settings.trees())
    if as_json:
        click.echo(json.dumps(report.as_json(), indent=1))
    else:
        for problem in report.library:
            click.echo(f"damaged: {problem}")
        for finding in report.damaged():
            click.echo(f"damaged: {finding.tree}/{finding.module}")
            for problem in finding.as_json()["problems"]:
                click.echo(f"  {problem}")
        for finding in report.unrecorded():
            click.echo(f"unrecorded: {finding.tree}/{finding.module} (published before integrity records)")
        click.echo(f"verified {len(report.findings)} modules in {report.seconds:.2f} s: {len(report.damaged())} "
                   f"damaged, {len(report.unrecorded())} without a record, {len(report.library)} other damage")
    if not report.clean():
        sys.exit(EXIT_BUILD_FAILED)


@main.command()
@config_option
@click.argument("modules", nargs=-1, required=True, metavar="MODULE...")
def remove(config: Path | None, modules: tuple[str, ...]) -> None:
    """Unpublish modules (full names); their prefixes expire after the grace period."""
    from builder.commands.remove import remove as remove_modules

    console = _console()
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
              help="Folder for the manifests (one file per Job, plus a Kustomization).")
def render(config: Path | None, target: str, out: Path) -> None:
    """Write the Kubernetes Jobs of one run: one per module still to build."""
    from builder.commands.render import render_run, root_warning

    settings = load_settings(config)
    warning = root_warning(settings)
    if warning:
        click.echo(f"modlib: warning: {warning}", err=True)
    files, inputs, asked = render_run(settings, settings.target(target), out)
    for line in asked:
        click.echo(line)
    click.echo(f"wrote {len(files)} Job manifest(s) to {out}: `kubectl apply -f {out}` or `kubectl apply -k {out}`")
    click.echo(f"their pods read the site easyconfigs from {inputs} on the library volume "
               f"(staged by `modlib build --executor kubernetes`)")


@main.command("new-pypi")
@config_option
@click.option("--target", help="Look for its requirements in this target's trees (default: the first cpu target).")
@click.argument("spec", metavar="NAME==VERSION")
def new_pypi(config: Path | None, target: str | None, spec: str) -> None:
    """Write a site easyconfig for a PyPI package (robot layout) and print the easystack line to add."""
    from builder.commands.new_pypi import new_pypi as write_easyconfig

    settings = load_settings(config)
    chosen = settings.target(target) if target else settings.first_cpu_target()
    made = write_easyconfig(settings, spec, chosen)
    click.echo(f"wrote {made.path}")
    for home in made.ignored:
        click.echo(f"  ignored PyPI's {home}")
    if made.python:
        click.echo(f"  depends on {made.python}: the library's Python")
    for module in made.found:
        click.echo(f"  depends on {module} (published)")
    for requirement in made.missing:
        click.echo(f"  needs {requirement}: not in the library; add an easyconfig for it first (modlib new-pypi)")
    click.echo(f"add this line to an easystack of target '{chosen.name}' ({chosen.easystacks[0]}):")
    click.echo(made.easystack_line)
