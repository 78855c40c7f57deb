"""Config validation: every shipped config is valid; bad ones are named key by key."""

import copy
from pathlib import Path

import pytest
import yaml

from kdconcepts.config import config_problems, load_schema

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = load_schema(ROOT / "workflow/schemas/config.schema.yaml")
CONFIGS = sorted([ROOT / "config/config.yaml", *ROOT.glob("config/paper/*.yaml"),
                  *ROOT.glob("config/quick/*.yaml"), *ROOT.glob("tests/configs/*.yaml")])


def _default():
    return yaml.safe_load((ROOT / "config/config.yaml").read_text())


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_shipped_configs_are_valid(path):
    """As Snakemake reads it: config/config.yaml, then the file over it (run and numerics come
    from the default, the run's name from the file: kdconcepts.config.run_name)."""
    from snakemake.utils import update_config

    from kdconcepts.config import run_name

    config = _default()
    update_config(config, yaml.safe_load(path.read_text()))
    config["run"] = run_name([path], config["run"])
    assert config_problems(config, SCHEMA, workdir=ROOT) == []


def test_every_schema_key_is_described_and_closed():
    from kdconcepts.quantify.config import sigma_schema

    def walk(node, where):
        if "$ref" in node and "properties" not in node:
            return
        assert "description" in node, f"{where} has no description"
        if "object" in (node.get("type") if isinstance(node.get("type"), list) else [node.get("type")]):
            closed = node.get("additionalProperties") is False or node.get("unevaluatedProperties") is False
            assert closed, where
            for key, sub in node["properties"].items():
                walk(sub, f"{where}.{key}")
    for key, sub in SCHEMA["properties"].items():
        walk(sub, key)
        assert "default" in sub or sub.get("type") == "object" or "$ref" in sub, key
    # The method's keys are described once, in the library's schema, which the pipeline's uses.
    assert SCHEMA["properties"]["quantify"]["$ref"].endswith("kdconcepts/quantify/sigma.schema.yaml")
    for key, sub in sigma_schema()["properties"].items():
        assert "description" in sub and "default" in sub, key


def _schema_defaults(node, value, resolver, where=""):
    """(key, schema default, config value) for every key of ``value`` whose schema gives one.
    ``resolver`` resolves ``$ref``s as validation does (kdconcepts.config's registry); a ref's
    own refs resolve against the schema it points into."""
    if "$ref" in node:
        resolved = resolver.lookup(node["$ref"])
        target, resolver = resolved.contents, resolved.resolver
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"},
                "properties": {**target.get("properties", {}), **node.get("properties", {})}}
    if isinstance(value, dict) and "properties" in node:
        for key, sub in node["properties"].items():
            if key in value:
                yield from _schema_defaults(sub, value[key], resolver, f"{where}.{key}".lstrip("."))
    elif "default" in node:
        yield where, node["default"], value


def test_schema_defaults_are_the_default_config():
    """The schema documents the defaults; they must be what config/config.yaml runs (a stale
    default misleads whoever writes a config from the schema)."""
    from kdconcepts.config import _registry

    resolver = _registry().resolver(base_uri=SCHEMA["$id"])
    compared = list(_schema_defaults(SCHEMA, _default(), resolver))
    assert len(compared) > 50
    differ = {key: (default, value) for key, default, value in compared if default != value}
    # The one intended difference: the library's SigmaConfig default is the authors' loop, the
    # pipeline runs the settled stop (identical maps, benchmarks/bench_settled.py).
    assert differ == {"quantify.stop": ("full", "settled")}


def test_unknown_key_names_key_and_allowed_keys():
    cfg = _default()
    cfg["quantify"]["stepz"] = 3
    (problem,) = config_problems(cfg, SCHEMA)
    assert "quantify.stepz" in problem and "steps" in problem and "boost_after" in problem


def test_wrong_type_and_enum_are_explained():
    cfg = _default()
    cfg["seeds"] = "zero"
    cfg["architecture"] = "vgg17"
    problems = "\n".join(config_problems(cfg, SCHEMA))
    assert "seeds = 'zero' has the wrong type; expected array" in problems
    assert "architecture = 'vgg17' is not allowed" in problems and "vgg16" in problems


def test_cross_key_rules():
    cfg = _default()
    bad = copy.deepcopy(cfg)
    bad["baseline"]["epochs"] = 30
    bad["quantify"]["boost_after"] = bad["quantify"]["steps"]
    bad["metrics"]["effective"] = bad["quantify"]["candidates"] + 1
    problems = "\n".join(config_problems(bad, SCHEMA))
    assert "baseline.epochs = 30" in problems
    assert "boost_after" in problems and "cannot exceed quantify.candidates" in problems


def test_architecture_axis_gives_each_tree_its_rates_and_shares_the_rest():
    from kdconcepts.config import architecture_configs

    cfg = _default()
    per_arch = architecture_configs(cfg)
    assert list(per_arch) == ["small_vgg", "small_resnet"]
    vgg, resnet = per_arch["small_vgg"], per_arch["small_resnet"]
    assert (vgg["architecture"], resnet["architecture"]) == ("small_vgg", "small_resnet")
    assert vgg["baseline"] == cfg["baseline"] and vgg["teacher"] == cfg["teacher"]
    # The ResNet's rates replace only the rates: epochs, batch sizes and the rest stay shared.
    assert resnet["baseline"] == {**cfg["baseline"], "lr_start": 0.1, "lr_end": 0.01}
    assert resnet["teacher"]["finetune"] == {**cfg["teacher"]["finetune"], "lr_start": 0.01, "lr_end": 0.001}
    assert resnet["distilled_student"]["head"] == {**cfg["distilled_student"]["head"], "lr": 0.1}
    # The one shared pre-training may have its own length: 18 epochs for the VGG, 14 for the ResNet.
    assert (vgg["teacher"]["pretrain"]["epochs"], resnet["teacher"]["pretrain"]["epochs"]) == (18, 14)
    assert resnet["teacher"]["pretrain"]["batch_size"] == cfg["teacher"]["pretrain"]["batch_size"]
    assert {k: v for k, v in resnet.items() if k not in ("architecture", "teacher", "distilled_student", "baseline")} \
        == {k: v for k, v in cfg.items() if k not in ("architecture", "teacher", "distilled_student", "baseline")}
    assert cfg["architecture"] == "small_vgg" and cfg["baseline"]["lr_start"] == 0.01  # not changed in place
    single = {**cfg, "architectures": None}
    assert architecture_configs(single) == {"small_vgg": single}


def test_architecture_axis_refusals_name_the_key():
    cfg = _default()
    bad = copy.deepcopy(cfg)
    bad["architectures"]["vgg17"] = {}
    bad["architectures"]["small_resnet"]["baseline"]["epochs"] = 30  # only rates may differ
    problems = "\n".join(config_problems(bad, SCHEMA))
    assert "vgg17" in problems and "architectures.small_resnet.baseline.epochs" in problems
    bad = copy.deepcopy(cfg)
    bad["architecture"] = "vgg11"
    bad["sweep"] = yaml.safe_load((ROOT / "config/ablation/background_bias.yaml").read_text())["sweep"]
    bad["architectures"]["small_resnet"]["baseline"]["lr_start"] = {"conv": 0.1}
    bad["architectures"]["small_resnet"]["distilled_student"]["lr_start"] = {"fc1": 0.1}
    problems = "\n".join(config_problems(bad, SCHEMA, workdir=ROOT))
    assert "architectures and sweep are both set" in problems
    assert "architecture = 'vgg11' is not one of architectures (small_vgg, small_resnet)" in problems
    assert "baseline.lr_start (architectures.small_resnet) must be one number" in problems
    assert "distilled_student.lr_start (architectures.small_resnet) gives no rate for layer(s) ['conv']" in problems
    bad = copy.deepcopy(cfg)
    bad["architectures"] = {"small_vgg": {}}
    assert any("architectures" in p and "non-empty" not in p for p in config_problems(bad, SCHEMA))


def test_the_checks_that_import_torch_are_remembered_by_their_inputs(tmp_path):
    """The palette and architecture checks (seaborn, torch: seconds at every `snakemake` call)
    are kept under a hash of their inputs, the packages' versions and our code; a torn store is
    ignored."""
    from kdconcepts.config import _checked_once

    calls = []

    def check():
        calls.append(1)
        return ["a problem"]

    assert _checked_once(tmp_path, {"arch": "x"}, check) == ["a problem"]
    assert _checked_once(tmp_path, {"arch": "x"}, check) == ["a problem"] and len(calls) == 1
    assert _checked_once(tmp_path, {"arch": "y"}, lambda: []) == []
    (tmp_path / ".snakemake/kdconcepts_checks.json").write_text("{torn")
    assert _checked_once(tmp_path, {"arch": "x"}, check) == ["a problem"] and len(calls) == 2
    bad = _default()
    bad["layers"] = ["conv", "no_such_layer"]
    for _ in range(2):  # computed, then remembered: refused both times
        problems = [p for p in config_problems(bad, SCHEMA, workdir=tmp_path) if p.startswith("layers:")]
        assert len(problems) == len(bad["architectures"]) and "no_such_layer" in problems[0], problems
