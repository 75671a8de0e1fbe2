"""Read easyconfigs/library.yaml into one frozen Settings object that the CLI passes down.

The file is data checked against a schema kept in the repository (builder/schemas), so a typo
in a key is reported with the file and the key's path instead of surfacing mid-build. The schema's
``default`` keywords are the only defaults of the file's settings: the dataclasses below hold none, so
a default cannot be changed in one place and missed in another.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from builder import jsonfile, schemas
from builder.cache_files import prune, read_entry, secret, sign, signed
from builder.errors import BadInput, malformed_yaml
from builder.layout import Layout
from builder.read import k8s_overrides

DEFAULT_CONFIG = Path("easyconfigs") / "library.yaml"
#: Where Debian's lmod package puts Lmod: the fallback when no LMOD_CMD names another install.
DEBIAN_LMOD = Path("/usr/share/lmod/lmod")
#: Where the environment and the command line override library.yaml: the setting's place in the file's data,
#: its variable, its option (the option wins). One applies only where the setting's section is in the data
#: (MODLIB_PYTHON only for a library with ``python:``).
OVERRIDES: tuple[tuple[tuple[str, ...], str, str | None], ...] = (
    (("root",), "MODLIB_ROOT", None),
    (("python", "executable"), "MODLIB_PYTHON", None),
    (("sources", "pypi_simple"), "MODLIB_PYPI_SIMPLE", None),
    (("kubernetes", "kubeconfig"), "KUBECONFIG", "kubeconfig"),  # no file setting: None where neither names one
)


@dataclass(frozen=True)
class KubernetesPlacement:
    """Where a target's build Jobs run (Kubernetes only): GPUs are requested only by cuda targets,
    and only by default."""

    requests: tuple[tuple[str, str], ...]
    limits: tuple[tuple[str, str], ...]
    gpus: int
    node_selector: tuple[tuple[str, str], ...]
    tolerations: tuple[tuple[tuple[str, object], ...], ...]
    pod_overrides: dict = field(hash=False)  # merged last into the pod spec
    container_overrides: dict = field(hash=False)  # merged into the build container


@dataclass(frozen=True)
class KubernetesSettings:
    """The cluster side of the library (Kubernetes only): the image, the volume claim, the Jobs' limits."""

    namespace: str
    image: str
    image_pull_policy: str
    claim: str
    mount_path: str  # the claim's path in the cluster's pods: the root the library is built for
    service_account: str
    user: int
    scratch_path: str
    scratch_size: str
    backoff_limit: int
    active_deadline_seconds: int
    ttl_seconds_after_finished: int
    poll_seconds: float
    lmod_cmd: str  # the builder image's Lmod
    pod_overrides: dict = field(hash=False)  # merged last into every pod spec
    container_overrides: dict = field(hash=False)  # merged into every build container
    kubeconfig: str | None  # --kubeconfig / $KUBECONFIG; None: in-cluster or ~/.kube/config


@dataclass(frozen=True)
class BuildResources:
    """library.yaml's ``resources`` of a target: bounds and defaults of what one build asks for (memory in
    bytes, whole cores), which builder/execute/resources.py fills in from the build records."""
    memory_default: int
    memory_min: int
    memory_max: int
    cpu_default: int
    cpu_min: int
    cpu_max: int
    margin: float


@dataclass(frozen=True)
class LocalPool:
    """library.yaml's ``local``: the memory budget the local executor's running builds share, as bytes or as
    a share of the host's memory (which only the executor, on the build host, knows)."""
    memory_budget_text: str

    def memory_budget(self, host_bytes: int) -> int:
        text = self.memory_budget_text
        return host_bytes * int(text[:-1]) // 100 if text.endswith("%") else quantity_bytes(text)


@dataclass(frozen=True)
class Target:
    name: str
    kind: str  # "cpu" or "cuda"
    tree: str
    easystacks: tuple[Path, ...]
    easybuild_options: tuple[tuple[str, object], ...]
    layers_over: str | None
    arch: str
    parallel: int | None
    jobs: int
    kubernetes: KubernetesPlacement
    resources: BuildResources

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
class Launcher:
    """A web tool jupyter-server-proxy starts from a tile, with its featured module loaded (library.yaml's
    notebook.launchers): its settings are jupyter-server-proxy's own, the notebook image's hook reads them."""
    title: str
    command: tuple[str, ...]
    timeout: float
    path_info: str
    new_browser_tab: bool


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
    featured: tuple[Featured, ...]
    defaults: tuple[tuple[str, str], ...]  # module name -> default version
    hidden: tuple[str, ...]  # retired modules: hidden, still loadable
    cache_dir: Path | None  # parsed-easyconfig cache ($MODLIB_CACHE); None: no cache
    cached_loads: bool  # LMOD_CACHED_LOADS in notebooks' env.sh (measured slower: docs/performance.md)
    kernels: tuple[str, ...] | None  # modules with a Jupyter kernel; None: the featured Python packages
    launchers: dict[str, Launcher] = field(hash=False)  # by name, which a featured entry's launcher names
    grace_period_hours: float  # how long a prefix nothing names any more stays
    unisolated_ok: bool  # builds and parses may run without a sandbox where none can be made
    sandbox_user: tuple[int, int]  # uid, gid a root runner's builds and parses run as
    local: LocalPool
    lmod_prefix: Path  # Lmod here (holds libexec/ and init/); builds and publishing use it
    pypi_simple: str  # where the source pre-fetch finds Python distributions
    kubernetes: KubernetesSettings

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
    return resources.files(schemas).joinpath("library.schema.json").read_text()


#: The source pre-fetch's index where no Settings name one: the schema's default, read where it is written.
DEFAULT_PYPI_SIMPLE: str = json.loads(_schema_text())["properties"]["sources"]["properties"]["pypi_simple"]["default"]


def _load_yaml(path: Path) -> tuple[bytes, object]:
    try:
        raw = path.read_bytes()
        return raw, yaml.safe_load(raw)
    except FileNotFoundError:
        raise BadInput(path, "configuration file not found") from None
    except yaml.YAMLError as err:
        raise malformed_yaml(path, err) from None


def _remembered(memo: Path, key: bytes) -> bool:
    try:
        stored = json.loads(read_entry(memo))
    except (OSError, ValueError):
        return False
    return isinstance(stored, dict) and signed(key, stored.get("mac"), memo.name.encode())


def _validated(path: Path, sha256: str, data: object, cache: Path, schema: str) -> dict:
    """``data`` (the file's bytes have ``sha256``) checked against the schema. Importing jsonschema takes
    longer (about 40 ms) than a cached plan takes to load, and every ``modlib`` command reads this file,
    so a document that passed is remembered in ``cache`` by its digest and the schema's: the same bytes
    always parse to the same data. A document that fails is never remembered, so its error is reported
    every time. The memo holds its name's MAC under the cache's secret: one forged by whoever can write
    the folder lets nothing skip the schema."""
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


def _placement(data: dict) -> KubernetesPlacement:
    return KubernetesPlacement(requests=tuple(sorted(data["resources"]["requests"].items())),
                               limits=tuple(sorted(data["resources"]["limits"].items())),
                               gpus=data["gpus"], node_selector=tuple(sorted(data["node_selector"].items())),
                               tolerations=tuple(tuple(sorted(t.items())) for t in data["tolerations"]),
                               pod_overrides=data["pod_overrides"],
                               container_overrides=data["container_overrides"])


_QUANTITY_SUFFIX = {"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
                    "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40}


def quantity_bytes(text: str) -> int:
    """A Kubernetes quantity the schema let through ("4Gi", "500M") as a whole number."""
    return round(quantity_value(text))


def quantity_value(text: str) -> float:
    """A Kubernetes quantity the schema let through as a number ("500m" cores: 0.5)."""
    number = text.rstrip("mkKMGTi")
    return float(number) * _QUANTITY_SUFFIX[text[len(number):]]


def quantity(count: int) -> str:
    """Bytes as the shortest exact Kubernetes quantity ("4Gi", "1536Mi", "1000"): a Job's memory and a report's."""
    for suffix in ("Ti", "Gi", "Mi", "Ki"):
        unit = _QUANTITY_SUFFIX[suffix]
        if count and count % unit == 0:
            return f"{count // unit}{suffix}"
    return str(count)


def _build_resources(path: Path, target: str, data: dict) -> BuildResources:
    memory, cpu = data["memory"], data["cpu"]
    out = BuildResources(memory_default=quantity_bytes(memory["default"]), memory_min=quantity_bytes(memory["min"]),
                         memory_max=quantity_bytes(memory["max"]), cpu_default=cpu["default"], cpu_min=cpu["min"],
                         cpu_max=cpu["max"], margin=float(data["margin"]))
    for what, low, default, high in (("memory", out.memory_min, out.memory_default, out.memory_max),
                                     ("cpu", out.cpu_min, out.cpu_default, out.cpu_max)):
        if not low <= default <= high:
            raise BadInput(path, f"target '{target}': resources.{what}: default must lie within min and max")
    return out


def _kubernetes(data: dict) -> KubernetesSettings:
    data = dict(data)
    scratch = data.pop("scratch")
    return KubernetesSettings(**data, **{f"scratch_{k}": v for k, v in scratch.items()})


def _with_defaults(schema: dict, node: dict, data: dict) -> dict:
    """``data`` with what it leaves out and ``node`` (a part of ``schema``) has a ``default`` for, filled
    in, through properties, additional properties and ``$ref``; first the ``allOf`` branches whose ``if``
    (consts of properties) holds, so a cuda target's GPU placement wins over the general one. Copies every
    object it fills, never writes into the file's data (YAML aliases share objects between targets)."""
    if "$ref" in node:
        node = functools.reduce(lambda part, key: part[key], node["$ref"].removeprefix("#/").split("/"), schema)
    filled = dict(data)
    for branch in node.get("allOf", []):
        if all(filled.get(key) == cond["const"] for key, cond in branch["if"]["properties"].items()):
            filled = _with_defaults(schema, branch["then"], filled)
    properties, extra = node.get("properties", {}), node.get("additionalProperties")
    for key in [*properties, *(k for k in filled if k not in properties)]:
        sub = properties[key] if key in properties else extra if isinstance(extra, dict) else {}
        if key in filled or "default" in sub:
            value = filled[key] if key in filled else copy.deepcopy(sub["default"])
            filled[key] = _with_defaults(schema, sub, value) if isinstance(value, dict) else value
    return filled


def _resolved(schema: dict, data: dict, env: Mapping[str, str], options: Mapping[str, str | None]) -> dict:
    """Every setting of the file's ``data`` by precedence, lowest first: the schema's defaults, the file,
    the environment, the command line's ``options`` (``OVERRIDES``). The one place they meet; relative
    paths are taken from the repository root later, whichever of them gave the path."""
    resolved = _with_defaults(schema, schema, data)
    for path, variable, option in OVERRIDES:
        value = (options.get(option) if option else None) or env.get(variable) or None
        sections = [resolved]
        for key in path[:-1]:
            sections = [section[key] for section in sections if key in section]
        for section in sections:
            if value or path[-1] not in section:
                section[path[-1]] = value
    return resolved


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


def load_settings(config_file: Path | None = None, env: dict[str, str] | None = None,
                  options: Mapping[str, str | None] | None = None) -> Settings:
    """Build the Settings from the config file; ``env`` (default os.environ) and the command line's
    ``options`` (by name: ``kubeconfig``) supply the overrides."""
    env = dict(os.environ if env is None else env)
    path = Path(config_file or env.get("MODLIB_CONFIG") or DEFAULT_CONFIG)
    raw, data = _load_yaml(path)
    sha256 = hashlib.sha256(raw).hexdigest()
    schema = _schema_text()
    data = _resolved(json.loads(schema), _validated(path, sha256, data, default_cache_dir(env), schema), env,
                     options or {})
    k8s_overrides.check(path, data)
    repo = repo_root_of(path)

    def rel(value: str) -> Path:
        p = Path(os.path.expandvars(value))
        return p if p.is_absolute() else repo / p

    targets = {
        name: Target(name=name, kind=t["kind"], tree=t["tree"],
                     easystacks=tuple(rel(s) for s in t["easystacks"]),
                     easybuild_options=tuple(sorted(t["easybuild_options"].items())),
                     layers_over=t.get("layers_over"), arch=t["arch"], parallel=t.get("parallel"), jobs=t["jobs"],
                     kubernetes=_placement(t["kubernetes"]), resources=_build_resources(path, name, t["resources"]))
        for name, t in data["targets"].items()
    }
    _check_targets(path, targets)
    if not any(t.kind == "cpu" for t in targets.values()):
        raise BadInput(path, "at least one cpu target is needed")
    launchers = {name: Launcher(**{**entry, "command": tuple(entry["command"])})
                 for name, entry in data["notebook"]["launchers"].items()}
    for entry in data["featured"]:
        for name in entry.get("targets", []):
            if name not in targets:
                raise BadInput(path, f"featured {entry['name']}: unknown target '{name}'")
        if "launcher" in entry and entry["launcher"] not in launchers:
            raise BadInput(path, f"featured {entry['name']}: unknown launcher '{entry['launcher']}' "
                                 f"(notebook.launchers defines: {', '.join(sorted(launchers)) or 'none'})")
    kernels = data["notebook"].get("kernels")  # absent: the featured Python packages get kernels
    return Settings(
        config_file=path.resolve(), config_sha256=sha256, repo_root=repo, root=rel(data["root"]).resolve(),
        python=_python(data["python"]["executable"], rel) if "python" in data else None,
        python_version=data["python"]["version"] if "python" in data else None,
        hooks=rel(data["hooks"]),
        easyconfig_paths=tuple(rel(p) for p in data["easyconfig_paths"]),
        targets=targets,
        featured=tuple(Featured(**{**f, "targets": tuple(f.get("targets", ()))}) for f in data["featured"]),
        defaults=tuple(sorted(data["modules"]["defaults"].items())),
        hidden=tuple(data["modules"]["hidden"]),
        cache_dir=default_cache_dir(env),
        cached_loads=data["notebook"]["cached_loads"],
        kernels=None if kernels is None else tuple(kernels),
        launchers=launchers,
        grace_period_hours=data["installs"]["grace_period_hours"],
        unisolated_ok=data["sandbox"]["unisolated"],
        sandbox_user=(data["sandbox"]["uid"], data["sandbox"]["gid"]),
        local=LocalPool(memory_budget_text=data["local"]["memory_budget"]),
        lmod_prefix=lmod_prefix(env),
        pypi_simple=data["sources"]["pypi_simple"].rstrip("/"),
        kubernetes=_kubernetes(data["kubernetes"]),
    )
