"""Configuration checks with messages a user can act on.

Snakemake's ``validate`` (jsonschema) decides whether a config is valid; this module turns its
findings into one message per problem that names the key and what is allowed there, and adds the
cross-key checks a schema cannot express.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import yaml

__all__ = ["ConfigError", "config_problems", "load_schema"]


class ConfigError(ValueError):
    """The configuration is invalid; the message lists every problem."""


def load_schema(path: str | Path) -> dict:
    """Load a YAML JSON-schema file."""
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _key_path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "<top level>"


def _subschema(schema: dict, error: jsonschema.ValidationError) -> dict:
    """The schema node an error was raised against, with $ref resolved (local refs only)."""
    node = error.schema
    while isinstance(node, dict) and "$ref" in node and "properties" not in node:
        node = schema
        for part in error.schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
    return node if isinstance(node, dict) else {}


def _describe(schema: dict, error: jsonschema.ValidationError) -> str:
    where = _key_path(error)
    node = _subschema(schema, error)
    if error.validator == "additionalProperties":
        allowed = sorted(node.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        prefix = "" if where == "<top level>" else where + "."
        return (f"unknown key(s) {', '.join(prefix + k for k in extra)}; "
                f"allowed at {where}: {', '.join(allowed)}")
    if error.validator == "enum":
        return f"{where} = {error.instance!r} is not allowed; choose one of {error.validator_value}"
    if error.validator == "type":
        return f"{where} = {error.instance!r} has the wrong type; expected {error.validator_value}"
    if error.validator == "required":
        return f"missing key at {where}: {error.message}"
    return f"{where}: {error.message}"


def config_problems(config: dict[str, Any], schema: dict) -> list[str]:
    """Every problem of ``config`` against ``schema`` and the cross-key rules, as sentences.

    Returns an empty list for a valid config.
    """
    validator_cls = jsonschema.validators.validator_for(schema)
    validator = validator_cls(schema)
    problems = [_describe(schema, e) for e in
                sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))]
    if problems:
        return problems
    epochs = config["checkpoints"]
    if list(epochs) != sorted(epochs):
        problems.append(f"checkpoints must be ascending, got {epochs}")
    for regime in ("distilled_student", "baseline"):
        if epochs[-1] != config[regime]["epochs"]:
            problems.append(
                f"checkpoints end at epoch {epochs[-1]} but {regime}.epochs = "
                f"{config[regime]['epochs']}; the last checkpoint must be the final epoch")
    q = config["quantify"]
    if q["boost_after"] >= q["steps"]:
        problems.append(f"quantify.boost_after ({q['boost_after']}) must be < quantify.steps ({q['steps']})")
    if q["sigma_min"] > q["sigma_max"]:
        problems.append("quantify.sigma_min must not exceed quantify.sigma_max")
    if config["metrics"]["effective"] > q["candidates"]:
        problems.append(f"metrics.effective ({config['metrics']['effective']}) cannot exceed "
                        f"quantify.candidates ({q['candidates']})")
    if config["teacher"]["init"] == "pretrain" and not config["dataset"]["pretrain_root"]:
        problems.append("teacher.init = 'pretrain' needs dataset.pretrain_root")
    return problems
