"""Read easyconfigs/library.yaml into one frozen Settings object that the CLI passes down.

The file is data checked against a schema kept in the repository (builder/schemas), so a typo
in a key is reported with the file and the key's path instead of surfacing mid-build.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from builder import jsonfile
from builder.cache_files import prune, read_entry, secret, sign, signed
from builder.errors import BadInput
from builder.layout import Layout
from builder.read import k8s_overrides

DEFAULT_CONFIG = Path("easyconfigs") / "library.yaml"
DEFAULT_HOOKS = "hooks/modlib_hooks.py"
DEFAULT_PYPI_SIMPLE = "https://pypi.org/simple"
#: Where Debian's lmod package puts Lmod: the fallback when no LMOD_CMD names another install.
DEBIAN_LMOD = Path("/usr/share/lmod/lmod")


@dataclass(frozen=True)
class KubernetesPlacement:
    """Where a target's build Jobs run (Kubernetes only): GPUs are requested only by cuda targets,
    and only by default."""

    requests: tuple[tuple[str, str], ...] = (("cpu", "2"), ("memory", "4Gi"))
    limits: tuple[tuple[str, str], ...] = (("cpu", "2"), ("memory", "8Gi"))
    gpus: int = 0
    node_selector: tuple[tuple[str, str], ...] = ()
    tolerations: tuple[tuple[tuple[str, object], ...], ...] = ()
    pod_overrides: dict = field(default_factory=dict, hash=False)  # merged last into the pod spec
    container_overrides: dict = field(default_factory=dict, hash=False)  # merged into the build container


GPU_PLACEMENT = {"gpus": 1, "node_selector": {"nvidia.com/gpu.present": "true"},
                 "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]}


@dataclass(frozen=True)
class KubernetesSettings:
    """The cluster side of the library (Kubernetes only): the image, the volume claim, the Jobs' limits."""

    namespace: str = "modlib"
    image: str = "ghcr.io/modlib/builder:0.1.0"
    image_pull_policy: str = "IfNotPresent"
    claim: str = "modlib-library"
    mount_path: str = "/srv/modlib"  # the claim's path in the cluster's pods: the root the library is built for
    service_account: str = "modlib-builder"
    user: int = 1000
    scratch_path: str = "/tmp"
    scratch_size: str = "20Gi"
    backoff_limit: int = 2
    active_deadline_seconds: int = 86400
    ttl_seconds_after_finished: int = 604800
    poll_seconds: float = 10.0
    lmod_cmd: str = str(DEBIAN_LMOD / "libexec" / "lmod")  # the builder image's Lmod
    pod_overrides: dict = field(default_factory=dict, hash=False)  # merged last into every pod spec
    container_overrides: dict = field(default_factory=dict, hash=False)  # merged into every build container
    kubeconfig: str | None = None  # --kubeconfig / $KUBECONFIG; None: in-cluster or ~/.kube/config


@dataclass(frozen=True)
class Target:
    name: str
    kind: str  # "cpu" or "cuda"
    tree: str
    easystacks: tuple[Path, ...]
    easybuild_options: tuple[tuple[str, object], ...] = ()
    layers_over: str | None = None
    arch: str = "generic"
    parallel: int | None = None
    jobs: int = 2
    kubernetes: KubernetesPlacement = KubernetesPlacement()

    def options(self) -> dict[str, object]:
        return dict(self.easybuild_options)


@dataclass(frozen=True)
class Featured:
    name: str
    version: str | None = None
    category: str | None = None
    launcher: str | None = None
    targets: tuple[str, ...] = ()  # empty: every target


@dataclass(frozen=True)
class Settings:
    config_file: Path
    #: Of the bytes these settings were read from: what a plan or a published view records as its config,
    #: even when the file is edited during a run.
    config_sha256: str
    repo_root: Path
    root: Path
    #: The notebook image's Python (library.yaml's ``python``, a migration path): packages built for it.
    #: None: the library's own Python module, which every Python package module depends on.
    python: str | None
    python_version: str | None
    hooks: Path
    easyconfig_paths: tuple[Path, ...]
    targets: dict[str, Target] = field(hash=False)
    featured: tuple[Featured, ...] = ()
    defaults: tuple[tuple[str, str], ...] = ()  # module name -> default version
    hidden: tuple[str, ...] = ()  # retired modules: hidden, still loadable
    cache_dir: Path | None = None  # parsed-easyconfig cache ($MODLIB_CACHE); None: no cache
    cached_loads: bool = False  # LMOD_CACHED_LOADS in notebooks' env.sh (measured slower: docs/performance.md)
    kernels: tuple[str, ...] | None = None  # modules with a Jupyter kernel; None: the featured Python packages
    grace_period_hours: float = 24.0  # how long a prefix nothing names any more stays
    unisolated_ok: bool = False  # builds and parses may run without a sandbox where none can be made
    sandbox_user: tuple[int, int] = (65534, 65534)  # uid, gid a root runner's builds and parses run as
    lmod_prefix: Path = DEBIAN_LMOD  # Lmod here (holds libexec/ and init/); builds and publishing use it
    pypi_simple: str = DEFAULT_PYPI_SIMPLE  # where the source pre-fetch finds Python distributions
    kubernetes: KubernetesSettings = KubernetesSettings()

    @property
    def layout(self) -> Layout:
        """The library root's paths (builder/layout.py)."""
        return Layout(self.root)

    def target(self, name: str) -> Target:
        if name not in self.targets:
            known = ", ".join(sorted(self.targets))
            raise BadInput(self.config_file, f"unknown target '{name}' (targets: {known})")
        return self.targets[name]

    def first_cpu_target(self) -> Target:
        return next(t for t in self.targets.values() if t.kind == "cpu")

    def target_of_tree(self, tree: str) -> Target:
        """The target that owns a tree: its options build every node placed there."""
        owners = [t for t in self.targets.values() if t.tree == tree]
        return next((t for t in owners if t.kind == "cpu"), owners[0])

    def trees(self) -> list[str]:
        """Every tree of the library, sorted: what publishing, checks and clean-up go over."""
        return sorted({t.tree for t in self.targets.values()})

    def layered_trees(self, target: Target) -> list[str]:
        """Trees a target sees, highest priority first: a cuda tree before the cpu tree it layers over."""
        trees = [target.tree]
        if target.layers_over:
            trees += self.layered_trees(self.targets[target.layers_over])
        return trees


def _schema_text() -> str:
    return resources.files("builder.schemas").joinpath("library.schema.json").read_text()


def _load_yaml(path: Path) -> tuple[bytes, object]:
    try:
        raw = path.read_bytes()
        return raw, yaml.safe_load(raw)
    except FileNotFoundError:
        raise BadInput(path, "configuration file not found") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise BadInput(path, f"malformed YAML{where}: {getattr(err, 'problem', err)}") from None


def _remembered(memo: Path, key: bytes) -> bool:
    try:
        stored = json.loads(read_entry(memo))
    except (OSError, ValueError):
        return False
    return isinstance(stored, dict) and signed(key, stored.get("mac"), memo.name.encode())


def _validated(path: Path, sha256: str, data: object, cache: Path) -> dict:
    """``data`` (the file's bytes have ``sha256``) checked against the schema. Importing jsonschema takes
    longer (about 40 ms) than a cached plan takes to load, and every ``modlib`` command reads this file,
    so a document that passed is remembered in ``cache`` by its digest and the schema's: the same bytes
    always parse to the same data. A document that fails is never remembered, so its error is reported
    every time. The memo holds its name's MAC under the cache's secret: one forged by whoever can write
    the folder lets nothing skip the schema."""
    schema = _schema_text()
    digest = hashlib.sha256(f"{schema}\0{sha256}".encode()).hexdigest()
    memo, mac_key = cache / f"valid-{digest}.json", secret(cache)
    if not (mac_key and _remembered(memo, mac_key)):
        import jsonschema

        validator = jsonschema.Draft202012Validator(json.loads(schema))
        errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
        if errors:
            err = errors[0]
            key = ".".join(str(p) for p in err.absolute_path) or "(top level)"
            raise BadInput(path, f"invalid configuration at '{key}': {err.message}")
        with contextlib.suppress(OSError):  # a read-only cache: validated again next time
            if mac_key:
                jsonfile.write(memo, {"mac": sign(mac_key, memo.name.encode())})
                prune(cache)
    assert isinstance(data, dict)  # the schema's top level is an object
    return data


def _check_targets(path: Path, targets: dict[str, Target]) -> None:
    for target in targets.values():
        if target.kind == "cuda":
            base = targets.get(target.layers_over or "")
            if base is None or base.kind != "cpu":
                raise BadInput(path, f"target '{target.name}': layers_over must name a cpu target, "
                                      f"not '{target.layers_over}'")
        if target.arch != "generic":
            import archspec.cpu

            if target.arch not in archspec.cpu.TARGETS:
                raise BadInput(path, f"target '{target.name}': unknown CPU microarchitecture '{target.arch}'")
    trees: dict[str, str] = {}
    for target in targets.values():
        if target.tree in trees:
            raise BadInput(path, f"targets '{trees[target.tree]}' and '{target.name}' share tree '{target.tree}'")
        trees[target.tree] = target.name
        for stack in target.easystacks:
            if not stack.is_file():
                raise BadInput(path, f"target '{target.name}': easystack file {stack} not found")


def default_cache_dir(env: dict[str, str]) -> Path:
    if env.get("MODLIB_CACHE"):
        return Path(env["MODLIB_CACHE"])
    return Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "modlib"


def _placement(kind: str, data: dict) -> KubernetesPlacement:
    data = {**(GPU_PLACEMENT if kind == "cuda" else {}), **data}
    res = data.get("resources", {})
    base = KubernetesPlacement()
    return KubernetesPlacement(requests=tuple(sorted(res.get("requests", dict(base.requests)).items())),
                               limits=tuple(sorted(res.get("limits", dict(base.limits)).items())),
                               gpus=data.get("gpus", 0),
                               node_selector=tuple(sorted(data.get("node_selector", {}).items())),
                               tolerations=tuple(tuple(sorted(t.items())) for t in data.get("tolerations", [])),
                               pod_overrides=data.get("pod_overrides", {}),
                               container_overrides=data.get("container_overrides", {}))


def _kubernetes(data: dict, env: dict[str, str]) -> KubernetesSettings:
    scratch = data.pop("scratch", {})
    return KubernetesSettings(**data, **{f"scratch_{k}": v for k, v in scratch.items()},
                              kubeconfig=env.get("KUBECONFIG"))


def lmod_prefix(env: dict[str, str]) -> Path:
    """Lmod's install prefix: that of $LMOD_CMD (Lmod's own variable, set by its init scripts and by
    sites with Lmod elsewhere), else Debian's. Checked where it is used: ``plan`` needs no Lmod."""
    return Path(env["LMOD_CMD"]).resolve().parent.parent if env.get("LMOD_CMD") else DEBIAN_LMOD


def _python(executable: str, rel) -> str:
    """A path is taken from the repository root; a bare name is looked up on PATH. MODLIB_PYTHON
    overrides it where the notebooks' Python lives elsewhere (the builder image's venv), only for a
    library that names one: a library with its own Python ignores it."""
    return str(rel(executable)) if "/" in executable else executable


def repo_root_of(config_file: Path) -> Path:
    """library.yaml lives in <repo>/easyconfigs/, so relative paths are taken from its parent's parent."""
    return config_file.resolve().parent.parent


def load_settings(config_file: Path | None = None, env: dict[str, str] | None = None) -> Settings:
    """Build the Settings from the config file; ``env`` (default os.environ) supplies the overrides."""
    env = dict(os.environ if env is None else env)
    path = Path(config_file or env.get("MODLIB_CONFIG") or DEFAULT_CONFIG)
    raw, data = _load_yaml(path)
    sha256 = hashlib.sha256(raw).hexdigest()
    data = _validated(path, sha256, data, default_cache_dir(env))
    k8s_overrides.check(path, data)
    repo = repo_root_of(path)

    def rel(value: str) -> Path:
        p = Path(os.path.expandvars(value))
        return p if p.is_absolute() else repo / p

    targets = {
        name: Target(name=name, kind=t["kind"], tree=t["tree"],
                     easystacks=tuple(rel(s) for s in t["easystacks"]),
                     easybuild_options=tuple(sorted(t.get("easybuild_options", {}).items())),
                     layers_over=t.get("layers_over"), arch=t.get("arch", "generic"),
                     parallel=t.get("parallel"), jobs=t.get("jobs", 2),
                     kubernetes=_placement(t["kind"], t.get("kubernetes", {})))
        for name, t in data["targets"].items()
    }
    _check_targets(path, targets)
    if not any(t.kind == "cpu" for t in targets.values()):
        raise BadInput(path, "at least one cpu target is needed")
    for entry in data.get("featured", []):
        for name in entry.get("targets", []):
            if name not in targets:
                raise BadInput(path, f"featured {entry['name']}: unknown target '{name}'")
    root = rel(env["MODLIB_ROOT"]) if env.get("MODLIB_ROOT") else rel(data["root"])
    kernels = data.get("notebook", {}).get("kernels")  # absent: the featured Python packages get kernels
    return Settings(
        config_file=path.resolve(), config_sha256=sha256, repo_root=repo, root=root.resolve(),
        python=_python(env.get("MODLIB_PYTHON") or data["python"]["executable"], rel) if "python" in data else None,
        python_version=data["python"]["version"] if "python" in data else None,
        hooks=rel(data.get("hooks", DEFAULT_HOOKS)),
        easyconfig_paths=tuple(rel(p) for p in data.get("easyconfig_paths", ["easyconfigs"])),
        targets=targets,
        featured=tuple(Featured(**{**f, "targets": tuple(f.get("targets", ()))}) for f in data.get("featured", [])),
        defaults=tuple(sorted(data.get("modules", {}).get("defaults", {}).items())),
        hidden=tuple(data.get("modules", {}).get("hidden", [])),
        cache_dir=default_cache_dir(env),
        cached_loads=data.get("notebook", {}).get("cached_loads", False),
        kernels=None if kernels is None else tuple(kernels),
        grace_period_hours=data.get("installs", {}).get("grace_period_hours", 24.0),
        unisolated_ok=data.get("sandbox", {}).get("unisolated", False),
        sandbox_user=(data.get("sandbox", {}).get("uid", 65534), data.get("sandbox", {}).get("gid", 65534)),
        lmod_prefix=lmod_prefix(env),
        pypi_simple=(env.get("MODLIB_PYPI_SIMPLE") or data.get("sources", {}).get("pypi_simple")
                     or DEFAULT_PYPI_SIMPLE).rstrip("/"),
        kubernetes=_kubernetes(dict(data.get("kubernetes", {})), env),
    )
