import hashlib
import json
from pathlib import Path

import pytest
import yaml

from builder.errors import EXIT_BAD_INPUT, ModlibError
from builder.read.config import load_settings
from tests.helpers import REPO, write_config

CPU = {"kind": "cpu", "tree": "cpu", "easystacks": [str(REPO / "easyconfigs" / "cpu.easystack.yaml")]}


def test_demo_config_is_valid():
    settings = load_settings(REPO / "easyconfigs" / "library.yaml", env={})
    assert settings.root == REPO / "library"
    assert settings.layered_trees(settings.target("cuda")) == ["cuda", "cpu"]
    assert settings.target_of_tree("cpu").name == "cpu"


def test_modlib_root_overrides(tmp_path):
    cfg = write_config(tmp_path, {"cpu": CPU})
    settings = load_settings(cfg, env={"MODLIB_ROOT": str(tmp_path / "vol")})
    assert settings.root == tmp_path / "vol"


def test_lmod_and_the_pypi_index_are_settings_resolved_once(tmp_path):
    cfg = write_config(tmp_path, {"cpu": CPU}, extra={"sources": {"pypi_simple": "https://mirror.example/simple/"}})
    plain = load_settings(cfg, env={})
    assert plain.lmod_prefix == Path("/usr/share/lmod/lmod") and plain.pypi_simple == "https://mirror.example/simple"
    lmod = tmp_path / "opt" / "lmod" / "8.7" / "libexec"
    lmod.mkdir(parents=True)
    (lmod / "lmod").write_text("")
    env = {"LMOD_CMD": str(lmod / "lmod"), "MODLIB_PYPI_SIMPLE": "http://127.0.0.1:9/simple"}
    custom = load_settings(cfg, env=env)
    assert custom.lmod_prefix == lmod.parent and custom.pypi_simple == "http://127.0.0.1:9/simple"


@pytest.mark.parametrize("mutate, expect", [
    (lambda d: d.update(colour="blue"), "Additional properties are not allowed ('colour'"),
    (lambda d: d["targets"]["cpu"].update(kind="gpu"), "at 'targets.cpu.kind'"),
    (lambda d: d["targets"].update(cuda={"kind": "cuda", "tree": "cuda", "easystacks": CPU["easystacks"]}),
     "'layers_over' is a required property"),
    (lambda d: d["targets"]["cpu"].update(arch="pentium9000"), "unknown CPU microarchitecture 'pentium9000'"),
    (lambda d: d["targets"]["cpu"].update(easystacks=["nope.yaml"]), "easystack file"),
    (lambda d: d["python"].update(version="3"), "at 'python.version'"),
    (lambda d: d.update(featured=[{"name": "MLflow", "launcher": "mlflow"}]),
     "featured MLflow: unknown launcher 'mlflow' (notebook.launchers defines: none)"),
    (lambda d: d.update(notebook={"launchers": {"catalogue": {"title": "Mine", "command": ["x"]}}}),
     "at 'notebook.launchers'"),
    (lambda d: d.update(notebook={"launchers": {"board": {"title": "Board"}}}), "'command' is a required property"),
])
def test_invalid_config_names_file_and_key(tmp_path, mutate, expect):
    cfg = write_config(tmp_path, {"cpu": dict(CPU)})
    data = yaml.safe_load(cfg.read_text())
    mutate(data)
    cfg.write_text(yaml.safe_dump(data))
    with pytest.raises(ModlibError) as err:
        load_settings(cfg, env={})
    assert err.value.exit_code == EXIT_BAD_INPUT
    assert str(cfg) in str(err.value) and expect in str(err.value)


def test_launchers_are_jupyter_server_proxy_settings_a_featured_entry_names(tmp_path):
    board = {"title": "Board", "command": ["board", "--port", "{port}"]}
    cfg = write_config(tmp_path, {"cpu": CPU}, extra={"notebook": {"launchers": {"board": board}},
                                                      "featured": [{"name": "Board", "launcher": "board"}]})
    launcher = load_settings(cfg, env={}).launchers["board"]
    assert launcher.command == ("board", "--port", "{port}") and launcher.title == "Board"
    assert (launcher.timeout, launcher.path_info, launcher.new_browser_tab) == (60, "", True)  # the schema's defaults


def test_malformed_yaml(tmp_path):
    cfg = tmp_path / "easyconfigs" / "library.yaml"
    cfg.parent.mkdir()
    cfg.write_text("root: library\ntargets: [unclosed\n")
    with pytest.raises(ModlibError, match=r"library.yaml: malformed YAML \(line 3"):
        load_settings(cfg, env={})


def test_unknown_target(tmp_path):
    settings = load_settings(write_config(tmp_path, {"cpu": CPU}), env={})
    with pytest.raises(ModlibError, match="unknown target 'gpu' \\(targets: cpu\\)"):
        settings.target("gpu")


def test_schema_file_is_valid_json_schema():
    import json

    import jsonschema

    schema = json.loads((REPO / "builder" / "schemas" / "library.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    assert Path(REPO / "easyconfigs" / "library.yaml").is_file()


def test_a_file_that_passed_is_remembered_and_one_that_failed_never(tmp_path, monkeypatch):
    """jsonschema is skipped for text that passed with this schema; failing text is checked every time."""
    import jsonschema

    from builder.read import config

    cfg, env = write_config(tmp_path, {"cpu": dict(CPU)}), {"MODLIB_CACHE": str(tmp_path / "cache")}
    load_settings(cfg, env=env)
    assert len(list((tmp_path / "cache").glob("valid-*.json"))) == 1

    def no_validator(*args, **kwargs):
        raise AssertionError("remembered text must not be validated again")

    with monkeypatch.context() as patch:
        patch.setattr(jsonschema, "Draft202012Validator", no_validator)
        assert load_settings(cfg, env=env).targets["cpu"].tree == "cpu"
        schema = config._schema_text()
        patch.setattr(config, "_schema_text", lambda: f"{schema} ")
        with pytest.raises(AssertionError, match="must not be validated"):  # another schema: checked again
            load_settings(cfg, env=env)
    cfg.write_text(cfg.read_text() + "colour: blue\n")
    for _ in range(2):
        with pytest.raises(ModlibError, match="Additional properties are not allowed"):
            load_settings(cfg, env=env)
    assert len(list((tmp_path / "cache").glob("valid-*.json"))) == 1


def test_a_forged_memo_lets_nothing_skip_the_schema(tmp_path):
    """The memo's name is public (the schema's and the file's digests): one written by whoever can write the
    cache folder, without the folder's secret, does not stand for a validation."""
    from builder.read import config

    cfg, cache = write_config(tmp_path, {"cpu": dict(CPU)}), tmp_path / "cache"
    cfg.write_text(cfg.read_text() + "colour: blue\n")
    memo_key = config._schema_text() + "\0" + hashlib.sha256(cfg.read_bytes()).hexdigest()
    name = f"valid-{hashlib.sha256(memo_key.encode()).hexdigest()}.json"
    cache.mkdir()
    (cache / name).write_text(json.dumps({"mac": hashlib.sha256(name.encode()).hexdigest()}))
    with pytest.raises(ModlibError, match="Additional properties are not allowed"):
        load_settings(cfg, env={"MODLIB_CACHE": str(cache)})


def test_the_schemas_defaults_are_the_settings_defaults(tmp_path, monkeypatch):
    """A setting library.yaml leaves out takes its ``default`` keyword from the schema: change it there and
    the Settings follow (no second copy of the default in the code)."""
    from builder.read import config

    cfg = write_config(tmp_path, {"cpu": dict(CPU)}, own_python=True)
    plain = load_settings(cfg, env={})
    cpu = plain.target("cpu")
    assert (cpu.arch, cpu.jobs, cpu.kubernetes.gpus, plain.cached_loads, plain.grace_period_hours) == \
        ("generic", 2, 0, False, 24.0)
    assert plain.kubernetes.mount_path == "/srv/modlib" and plain.pypi_simple == config.DEFAULT_PYPI_SIMPLE
    schema = json.loads(config._schema_text())
    target = schema["$defs"]["target"]["properties"]
    target["jobs"]["default"], target["arch"]["default"] = 5, "haswell"
    schema["properties"]["notebook"]["properties"]["cached_loads"]["default"] = True
    schema["properties"]["installs"]["properties"]["grace_period_hours"]["default"] = 1.5
    monkeypatch.setattr(config, "_schema_text", lambda: json.dumps(schema))
    moved = load_settings(cfg, env={})
    cpu = moved.target("cpu")
    assert (cpu.arch, cpu.jobs, moved.cached_loads, moved.grace_period_hours) == ("haswell", 5, True, 1.5)


def test_a_cuda_targets_gpu_placement_is_its_default_and_the_file_wins(tmp_path):
    """The cuda branch of the schema gives a GPU, its node label and toleration; what the file says wins,
    and a placement shared by YAML alias with a cpu target does not carry the cpu target's defaults over."""
    cuda: dict[str, object] = {"kind": "cuda", "tree": "cuda", "layers_over": "cpu", "easystacks": CPU["easystacks"]}
    cfg = write_config(tmp_path, {"cpu": dict(CPU), "cuda": cuda})
    settings = load_settings(cfg, env={})
    gpu = settings.target("cuda").kubernetes
    assert gpu.gpus == 1 and gpu.node_selector == (("nvidia.com/gpu.present", "true"),)
    assert gpu.tolerations == ((("effect", "NoSchedule"), ("key", "nvidia.com/gpu"), ("operator", "Exists")),)
    assert gpu.requests == gpu.limits == ()  # nothing pinned: the Job asks for what the records compute
    assert settings.target("cpu").kubernetes.gpus == 0 and settings.target("cpu").kubernetes.node_selector == ()
    alias = "  cpu:\n    kubernetes: &k {resources: {limits: {cpu: '4'}}}\n    kind: cpu\n"
    text = cfg.read_text().replace("  cpu:\n    kind: cpu\n", alias)
    cfg.write_text(text.replace("    kind: cuda\n", "    kind: cuda\n    kubernetes: *k\n"))
    shared = load_settings(cfg, env={})
    assert shared.target("cpu").kubernetes.limits == shared.target("cuda").kubernetes.limits == (("cpu", "4"),)
    assert (shared.target("cpu").kubernetes.gpus, shared.target("cuda").kubernetes.gpus) == (0, 1)
    cuda["kubernetes"] = {"gpus": 0}
    settings = load_settings(write_config(tmp_path, {"cpu": dict(CPU), "cuda": cuda}), env={})
    assert settings.target("cuda").kubernetes.gpus == 0 and settings.target("cuda").kubernetes.node_selector


def test_the_command_line_wins_over_the_environment_over_the_file(tmp_path):
    cfg = write_config(tmp_path, {"cpu": dict(CPU)}, extra={"sources": {"pypi_simple": "https://file.example/simple"}})
    assert load_settings(cfg, env={}).kubernetes.kubeconfig is None
    env = {"KUBECONFIG": "/env/kubeconfig", "MODLIB_PYTHON": "python3.11", "MODLIB_PYPI_SIMPLE": "https://env.example/"}
    from_env = load_settings(cfg, env=env)
    assert from_env.kubernetes.kubeconfig == "/env/kubeconfig" and from_env.python == "python3.11"
    assert from_env.pypi_simple == "https://env.example"
    assert load_settings(cfg, env=env, options={"kubeconfig": "/cli/kubeconfig"}).kubernetes.kubeconfig == \
        "/cli/kubeconfig"
    assert load_settings(cfg, env=env, options={"kubeconfig": None}).kubernetes.kubeconfig == "/env/kubeconfig"
    own = load_settings(write_config(tmp_path, {"cpu": dict(CPU)}, own_python=True), env=env)
    assert own.python is None  # MODLIB_PYTHON only overrides a library that names a python
