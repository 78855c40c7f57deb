"""Configuration checks with messages a user can act on, all before any job runs.

Snakemake's ``validate`` (jsonschema) decides whether a config has the right shape; this module
turns its findings into one message per problem that names the key and what is allowed there,
and adds every check that can be made before a job runs: the rules between keys, the layer
names and the image size against the architecture, the teacher's init, the grid against the
prepared image size, the DVC stages, the palette, finite numbers. A value that is refused here
never costs a trained network or a prepared dataset (Snakemake deletes a job's old outputs
before the job runs, so a check inside the job would come too late).
"""

from __future__ import annotations

import copy
import functools
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import yaml

__all__ = ["architecture_configs", "config_file_problems", "config_problems", "load_schema",
           "dvc_stage_outputs", "dataset_image_size", "overlay_problems", "run_name"]

# The analysed network -> the config section of its training schedule.
_SCHEDULES = {"distilled_student": "distilled_student", "logit_student": "logit_student",
              "baseline": "baseline"}
# The params.yaml key of each shipped DVC data stage, whose image_size says the prepared size.
_STAGE_PARAMS = {"synthetic": "synthetic", "synthetic_bias": "synthetic", "prepare_cub": "prepare_cub",
                 "prepare_voc": "prepare_voc", "prepare_ilsvrc": "prepare_ilsvrc"}


class _StrictLoader(yaml.SafeLoader):
    """A YAML loader that refuses a key repeated in one mapping (plain YAML lets the last win)."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is repeated (first at line {seen[key]}); the second "
                    f"would silently replace the first", key_node.start_mark)
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def config_file_problems(path: str | Path) -> list[str]:
    """What is wrong with a config file as YAML, naming the file, line and column: a syntax
    error, or a key repeated in one mapping (two ``quantify:`` blocks, say, of which Snakemake's
    loader would keep the second without a word). An empty list for a sound file."""
    try:
        with open(path, encoding="utf-8") as handle:
            yaml.load(handle, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader subclass)
    except FileNotFoundError:
        return [f"{path}: no such file"]
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        return [f"{path}{where}: {error.problem or error.context}"]
    except yaml.YAMLError as error:
        return [f"{path}: {error}"]
    return []


def run_name(config_files: list[str | Path], default: str) -> str:
    """The run a config makes (its folder under ``results/``): the ``run`` key of the last config
    file that sets it, else the stem of the first ``--configfile`` (the run's own config; later
    files are overlays of it), else ``default`` (config/config.yaml's)."""
    explicit = None
    for path in config_files:
        with open(path, encoding="utf-8") as handle:
            loaded = yaml.safe_load(handle) or {}
        if isinstance(loaded, dict) and "run" in loaded:
            explicit = loaded["run"]
    if explicit is not None:
        return str(explicit)
    return Path(config_files[0]).stem if config_files else default


def overlay_problems(path: str | Path) -> list[str]:
    """What an overlay (a ``--configfile``) asks for that merging would silently ignore: Snakemake
    merges a mapping into the default's key by key, so ``architectures: {}`` would keep the
    default's architectures instead of removing them."""
    with open(path, encoding="utf-8") as handle:
        loaded = yaml.safe_load(handle) or {}
    problems = []
    for key in ("architectures", "sweep"):
        if isinstance(loaded, dict) and loaded.get(key) == {}:
            problems.append(f"{path}: {key}: {{}} is refused: an overlay's mapping is merged into the "
                            f"default's, so {{}} would keep the default's {key}; write {key}: null "
                            f"for none, or list what you want")
    return problems


def load_schema(path: str | Path) -> dict:
    """Load a YAML JSON-schema file; its ``$id`` is set to the file, so that relative ``$ref``s
    (the quantify section's ``sigma.schema.yaml``) resolve as Snakemake's ``validate`` does."""
    path = Path(path).resolve()
    with open(path, encoding="utf-8") as fh:
        schema = yaml.safe_load(fh)
    schema["$id"] = path.as_uri()
    return schema


def _registry():
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    def retrieve(uri: str):
        from urllib.parse import urlparse
        from urllib.request import url2pathname
        with open(url2pathname(urlparse(uri).path), encoding="utf-8") as fh:
            return Resource.from_contents(yaml.safe_load(fh), default_specification=DRAFT202012)

    return Registry(retrieve=retrieve)


def _key_path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "<top level>"


def _describe(error: jsonschema.ValidationError) -> str:
    where = _key_path(error)
    prefix = "" if where == "<top level>" else where + "."
    if error.validator in ("additionalProperties", "unevaluatedProperties"):
        node = error.schema
        allowed = set(node.get("properties", {}))
        if "$ref" in node:  # the quantify section: the method's keys come from its own schema
            from kdconcepts.quantify.config import sigma_schema
            allowed |= set(sigma_schema()["properties"])
        extra = sorted(set(error.instance) - allowed)
        return (f"unknown key(s) {', '.join(prefix + k for k in extra)}; "
                f"allowed at {where}: {', '.join(sorted(allowed))}")
    if error.validator == "enum":
        return f"{where} = {error.instance!r} is not allowed; choose one of {error.validator_value}"
    if error.validator == "type":
        hint = ""
        if isinstance(error.instance, str):
            try:
                float(error.instance)
                hint = " (YAML reads 1e-4 as text: write 1.0e-4)"
            except ValueError:
                pass
        return f"{where} = {error.instance!r} has the wrong type; expected {error.validator_value}{hint}"
    if error.validator == "required":
        return f"missing key at {where}: {error.message}"
    if error.validator == "oneOf":
        return f"{where} = {error.instance!r}: {error.schema.get('description', error.message)}"
    if where != "<top level>" and not isinstance(error.instance, (dict, list)):
        return f"{where} = {error.instance!r}: {error.message}"
    return f"{where}: {error.message}"


def _non_finite(node: Any, where: str = "") -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _non_finite(value, f"{where}.{key}" if where else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _non_finite(value, f"{where}[{i}]")
    elif isinstance(node, float) and not math.isfinite(node):
        yield f"{where} = {node!r} is not a finite number"


def dvc_stage_outputs(dvc_yaml: str | Path) -> dict[str, list[str]]:
    """Stage name -> its ``outs`` paths, from ``dvc.yaml``; matrix stages are expanded to their
    items (``name@value``) with ``${item.<key>}`` filled in."""
    document = yaml.safe_load(Path(dvc_yaml).read_text(encoding="utf-8")) or {}
    stages = {}
    for name, stage in (document.get("stages") or {}).items():
        outs = [o if isinstance(o, str) else next(iter(o)) for o in stage.get("outs", [])]
        matrix = stage.get("matrix")
        if not matrix:
            stages[name] = outs
            continue
        if len(matrix) != 1:  # DVC names items of several keys a-b; ours have one key
            raise ValueError(f"{dvc_yaml}: stage {name}: only one matrix key is supported here")
        (key, values), = matrix.items()
        for value in values:
            stages[f"{name}@{value}"] = [o.replace(f"${{item.{key}}}", str(value)) for o in outs]
    return stages


def dataset_image_size(root: str | Path, stage: str, params_yaml: str | Path) -> int | None:
    """The prepared image side of a dataset: ``meta.json`` if the data exists, else the stage's
    ``image_size`` in ``params.yaml``; None if neither says."""
    meta = Path(root) / "meta.json"
    if meta.is_file():
        try:
            return int(json.loads(meta.read_text(encoding="utf-8"))["image_size"])
        except (ValueError, KeyError, TypeError):
            return None  # a broken meta.json is reported by the reader, naming the file
    base = stage.split("@")[0]
    key = _STAGE_PARAMS.get(base, base)  # a stage's own key (prepare_cub_quick), or its family's
    if not Path(params_yaml).is_file():
        return None
    section = (yaml.safe_load(Path(params_yaml).read_text(encoding="utf-8")) or {}).get(key) or {}
    size = section.get("image_size")
    return int(size) if isinstance(size, int) else None


def _under(path: str, outs: list[str]) -> bool:
    path = Path(path).as_posix().rstrip("/")
    return any(path == o.rstrip("/") or path.startswith(o.rstrip("/") + "/") for o in outs)


def config_problems(config: dict[str, Any], schema: dict, *, workdir: str | Path = ".",
                    deep: bool = True) -> list[str]:
    """Every problem of ``config`` against ``schema`` and the cross-key rules, as sentences.

    Args:
        config: the merged config.
        schema: from :func:`load_schema`.
        workdir: the workflow folder (``dvc.yaml``, ``params.yaml``, the datasets).
        deep: also the checks that build the architecture (layer names, input size); a
            cluster job re-reading the Snakefile skips them, the submitting run made them.

    Returns an empty list for a valid config.
    """
    validator_cls = jsonschema.validators.validator_for(schema)
    validator = validator_cls(schema, registry=_registry())
    problems = [_describe(e) for e in
                sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))]
    problems += list(_non_finite(config))
    if problems:
        return problems
    from kdconcepts.quantify.config import SigmaConfig

    workdir = Path(workdir)
    problems += SigmaConfig.problems(config["quantify"], prefix="quantify.")
    problems += _network_problems(config) + _axis_problems(config) + _teacher_problems(config)
    problems += _data_problems(config, workdir)
    size = dataset_image_size(workdir / config["dataset"]["root"], config["dataset"]["dvc_stage"],
                              workdir / "params.yaml")
    problems += _size_problems(config, size)
    problems += _checked_once(workdir, {"palette": config["report"]["palette"]},
                              lambda: _palette_problems(config))
    if deep:
        for arch in architecture_configs(config):
            problems += _checked_once(workdir, {"arch": arch, "layers": config["layers"], "size": size},
                                      lambda arch=arch: _architecture_problems(arch, config["layers"], size))
    return problems


#: What the remembered checks depend on beside their inputs: these packages and our own code.
_CHECKED_WITH = ("torch", "torchvision", "seaborn", "matplotlib")


@functools.cache
def _checked_with_stamp() -> bytes:
    """The package versions and the kdconcepts sources, hashed once per process (the Snakefile
    asks once per architecture and for the palette)."""
    import hashlib
    from importlib import metadata

    digest = hashlib.sha256()
    for package in _CHECKED_WITH:
        try:
            digest.update(f"{package}=={metadata.version(package)};".encode())
        except metadata.PackageNotFoundError:
            digest.update(f"{package} absent;".encode())
    for source in sorted(Path(__file__).parent.rglob("*.py")):
        digest.update(source.read_bytes())
    return digest.digest()


def _checked_once(workdir: Path, inputs: dict[str, Any], check) -> list[str]:
    """``check()``'s problems, remembered in ``<workdir>/.snakemake/kdconcepts_checks.json``.

    The palette and architecture checks import seaborn, torch and torchvision (about 6 s of CPU
    at every `snakemake` call, dry runs included). Their answer depends only on ``inputs``, the
    versions of those packages and the kdconcepts sources, so it is kept under a hash of all three
    and recomputed when any of them changes.
    """
    import hashlib

    key = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode() + _checked_with_stamp()).hexdigest()
    store = Path(workdir) / ".snakemake" / "kdconcepts_checks.json"
    try:
        known = json.loads(store.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    if isinstance(known, dict) and isinstance(known.get(key), list):
        return known[key]
    problems = check()
    known = known if isinstance(known, dict) else {}
    known[key] = problems
    try:
        store.parent.mkdir(parents=True, exist_ok=True)
        partial = store.with_name(f".{store.name}.{os.getpid()}")
        partial.write_text(json.dumps(known), encoding="utf-8")
        os.replace(partial, store)
    except OSError:
        pass  # a read-only folder: the checks simply run each time
    return problems


def _network_problems(config: dict[str, Any]) -> list[str]:
    """The analysed networks, the checkpoints against their schedules, the images wanted."""
    problems, networks = [], config["networks"]
    lacking = []
    if "baseline" not in networks:
        lacking.append("the baseline (baseline: every student is compared with it)")
    if not [n for n in networks if n != "baseline"]:
        lacking.append("a student (distilled_student or logit_student)")
    if lacking:
        problems.append(f"networks = {networks} lacks {' and '.join(lacking)}; it must list the "
                        "baseline and at least one student")
    epochs = config["checkpoints"]
    if list(epochs) != sorted(epochs):
        problems.append(f"checkpoints must be ascending, got {epochs}")
    for network in networks:
        section = _SCHEDULES[network]
        if epochs[-1] != config[section]["epochs"]:
            problems.append(
                f"checkpoints end at epoch {epochs[-1]} but {section}.epochs = "
                f"{config[section]['epochs']}; the last checkpoint must be the final epoch")
    q, m = config["quantify"], config["metrics"]
    if m["effective"] > q["candidates"]:
        problems.append(f"metrics.effective ({m['effective']}) cannot exceed "
                        f"quantify.candidates ({q['candidates']})")
    return problems


def _axis_problems(config: dict[str, Any]) -> list[str]:
    """The architecture axis (or the sweep) and each architecture's learning rates."""
    problems, axis = [], config["architectures"]
    if axis and config["sweep"]:
        problems.append("architectures and sweep are both set; a run has one axis of output trees "
                        "(one per architecture or one per sweep value): set one of them to null")
    if axis and config["architecture"] not in axis:
        problems.append(f"architecture = {config['architecture']!r} is not one of architectures "
                        f"({', '.join(axis)}); with architectures set, each tree's architecture is its key")
    for arch, of_arch in architecture_configs(config).items():
        where = f" (architectures.{arch})" if axis else ""
        for key in ("lr_start", "lr_end"):
            rates = of_arch["distilled_student"][key]
            if isinstance(rates, dict):
                missing = [layer for layer in config["layers"] if layer not in rates]
                extra = [layer for layer in rates if layer not in config["layers"]]
                if missing:
                    problems.append(f"distilled_student.{key}{where} gives no rate for layer(s) {missing}")
                if extra:
                    problems.append(f"distilled_student.{key}{where} names layer(s) {extra} that are not "
                                    "in layers")
        for section in ("logit_student", "baseline"):
            for key in ("lr_start", "lr_end"):
                if isinstance(of_arch[section][key], dict):
                    problems.append(f"{section}.{key}{where} must be one number (per-layer rates are "
                                    "for the distilled student only)")
        if config["teacher"]["init"] == "imagenet" and arch.startswith("small_"):
            problems.append(f"teacher.init = 'imagenet' but architecture = {arch!r} has no ImageNet "
                            "weights; use teacher.init = 'pretrain' (or 'none')")
    return problems


def _teacher_problems(config: dict[str, Any]) -> list[str]:
    problems, teacher, dataset = [], config["teacher"], config["dataset"]
    if teacher["init"] == "pretrain" and not dataset["pretrain_root"]:
        problems.append("teacher.init = 'pretrain' needs dataset.pretrain_root")
    if teacher["init"] != "imagenet" and teacher["weights"]:
        problems.append(f"teacher.weights is set but teacher.init = {teacher['init']!r} does not use it")
    if teacher["init"] == "imagenet" and dataset["normalize"] != "imagenet":
        problems.append(f"teacher.init = 'imagenet' but dataset.normalize = {dataset['normalize']!r}: "
                        "ImageNet weights expect ImageNet-normalised inputs (SPEC section 7); set "
                        "dataset.normalize: imagenet")
    return problems


def _data_problems(config: dict[str, Any], workdir: Path) -> list[str]:
    """The DVC stages that make the data: they must exist and produce the configured folders."""
    problems, dataset = [], config["dataset"]
    dvc_yaml = workdir / "dvc.yaml"
    stages = dvc_stage_outputs(dvc_yaml) if dvc_yaml.is_file() else {}
    wanted = [("dataset.dvc_stage", dataset["dvc_stage"], [dataset["root"]] + (
        [dataset["pretrain_root"]] if dataset["pretrain_root"] else []))]
    sweep = config["sweep"]
    if sweep:
        for value in sweep["values"]:
            wanted.append((f"sweep.dvc_stage (value {value})", f"{sweep['dvc_stage']}@{value}",
                           [sweep["root"].format(value=value)]))
    for key, stage, roots in wanted:
        if stage not in stages:
            problems.append(f"{key} = {stage!r} is not a stage of {dvc_yaml.name}; stages: "
                            f"{', '.join(sorted(stages)) or 'none'}")
            continue
        for root in roots:
            if not _under(root, stages[stage]):
                problems.append(f"the data folder {root} is not made by DVC stage {stage!r} "
                                f"(its outputs: {', '.join(stages[stage])})")
    return problems


def _size_problems(config: dict[str, Any], size: int | None) -> list[str]:
    """The grid and the crop against the prepared image size."""
    if size is None:
        return []
    problems, grid = [], config["quantify"]["grid"]
    if size % grid:
        problems.append(f"quantify.grid = {grid} does not divide the prepared image size "
                        f"{size} px of {config['dataset']['root']}")
    crop = config["augment"]["crop_resize"]
    if crop is not None and crop < size:
        problems.append(f"augment.crop_resize = {crop} is smaller than the images ({size} px)")
    return problems


def _palette_problems(config: dict[str, Any]) -> list[str]:
    try:
        import seaborn as sns
        sns.color_palette(config["report"]["palette"])
    except (ValueError, KeyError):
        return [f"report.palette = {config['report']['palette']!r} is not a seaborn or "
                f"matplotlib palette name (e.g. colorblind, deep, viridis)"]
    return []


def architecture_configs(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Architecture -> the config its output tree runs with.

    Without an architecture axis (``architectures: null``), ``{architecture: config}``. With
    one, per listed architecture a copy of ``config`` whose ``architecture`` is that key and whose
    learning rates are replaced by the ones it lists (a deep merge, as Snakemake merges
    ``--configfile`` overlays); everything else is shared, so every tree has the same jobs.
    """
    from snakemake.utils import update_config  # the merge --configfile itself uses

    if not config.get("architectures"):
        return {config["architecture"]: config}
    out = {}
    for arch, rates in config["architectures"].items():
        of_arch = copy.deepcopy(config)
        update_config(of_arch, copy.deepcopy(rates or {}))
        of_arch["architecture"] = arch
        out[arch] = of_arch
    return out


def _architecture_problems(arch: str, layers: list[str], size: int | None) -> list[str]:
    """Layer names and input size against the architecture (built on the meta device: no
    weights are allocated)."""
    from kdconcepts.models import analysed_weight, check_input_size, resolve_layer
    problems = []
    for layer in layers:
        try:
            resolve_layer(arch, layer)
            analysed_weight(None, arch, layer)
        except ValueError as error:
            problems.append(f"layers: {error}")
    if size is not None:
        problem = check_input_size(arch, size)
        if problem:
            problems.append(problem)
    return problems
