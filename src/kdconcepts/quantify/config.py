"""Settings of the sigma (information-discarding) estimation, SPEC section 2.

What each setting accepts is written once, in ``sigma.schema.yaml`` beside this file (ranges,
types, defaults, descriptions), plus the rules between settings in :meth:`SigmaConfig.problems`.
The pipeline's config schema refers to the same file and ``kdconcepts.config`` calls the same
``problems``, so a value the library refuses is refused by the pipeline too, with the same words.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping
from importlib import resources
from typing import Any

import jsonschema
import yaml

# Keys of the config's `quantify:` section that steer the pipeline or the engine but do
# not change the method: they are accepted and ignored by `SigmaConfig.from_mapping`.
PIPELINE_ONLY_KEYS = frozenset({"candidates", "max_batch", "precision", "schedule", "round_size", "threads"})

ENTROPY_OFFSET = 0.5 * math.log(2 * math.pi) + 0.5  # 0.5 * log(2 pi e): H_i = log sigma_i + this


@functools.lru_cache(maxsize=1)
def sigma_schema() -> dict:
    """The JSON schema of the method's settings (``sigma.schema.yaml``)."""
    text = resources.files("kdconcepts.quantify").joinpath("sigma.schema.yaml").read_text("utf-8")
    return yaml.safe_load(text)


def _finite_problems(values: Mapping[str, Any], prefix: str) -> list[str]:
    return [f"{prefix}{key} = {value!r} is not a finite number" for key, value in values.items()
            if isinstance(value, float) and not math.isfinite(value)]


@dataclasses.dataclass(frozen=True)
class SigmaConfig:
    """Hyper-parameters of one sigma-map estimation (defaults: the paper's / authors' code).

    Attributes:
        grid: G, the sigma map is G x G cells (each cell covers (H/G) x (W/G) pixels).
        steps: T, the most optimisation steps (80).
        boost_after: the decision point: after step ``boost_after - 1`` (= T - 20 - 1),
            if max over steps so far of the mean entropy is <= H*, lambda is multiplied
            by ``boost_factor`` and optimisation continues to T; otherwise it stops.
        samples: K, noise samples eps ~ N(0, I) drawn per step (and for sigma_f).
        lr: learning rate of plain SGD on sigma itself.
        lam: lambda, weight of the entropy term (7 for VGG/AlexNet, 6 for ResNet).
        boost_factor: lambda multiplier at the decision point (1.5).
        target_entropy: H*, the mean entropy at which the snapshot is selected (-2.8).
        sigma_init: initial sigma of every cell; also the uniform sigma used for sigma_f
            (the authors' code uses one variable, 0.01, for both).
        sigma_min: lower clamp of sigma, applied before every forward.
        sigma_max: upper clamp of sigma, applied before every forward.
        stop: ``full`` (the authors' loop) or ``settled``, the early stop below.
        settle_margin, settle_steps: the settled rule's margin (nats) and length M.

    The settled stop (``stop="settled"``): an image ends after step t when its trace of mean
    entropy has passed H* (some recorded value lies on the far side of H* from the start) and
    each of the last ``settle_steps`` recorded snapshots is farther from H* than the best one
    so far by more than ``settle_margin``. Why the selected snapshot practically cannot change
    after that: the entropy term pushes every log sigma_i up by lr * lam / (G^2 sigma_i^2)
    each step, so past H* the trace moves away from H* steadily (on the default's nets the
    selected step is 38 +- 1 for every image); to be selected, a later snapshot would have to
    come back by more than the margin after M steps of moving away, against that push. An
    image that has not passed H* is never cut short, so an image that may still be boosted
    always runs to its decision step. The answer changes only if such a reversal happens;
    ``benchmarks/bench_settled.py`` counts how often it does.
    """

    grid: int = 16
    steps: int = 80
    boost_after: int = 60
    samples: int = 96
    lr: float = 1e-4
    lam: float = 7.0
    boost_factor: float = 1.5
    target_entropy: float = -2.8
    sigma_init: float = 0.01
    sigma_min: float = 1e-3
    sigma_max: float = 1.0
    stop: str = "full"
    settle_margin: float = 0.02
    settle_steps: int = 3

    def __post_init__(self) -> None:
        problems = self.problems(dataclasses.asdict(self))
        if problems:
            raise ValueError("invalid SigmaConfig: " + "; ".join(problems))

    @staticmethod
    def problems(values: Mapping[str, Any], prefix: str = "") -> list[str]:
        """Every problem of a mapping of settings, as sentences naming the key (``prefix`` +
        key); an empty list if they are valid. Keys not given take their defaults.

        The pipeline checks its ``quantify`` section with this (``prefix="quantify."``).
        """
        schema = sigma_schema()
        known = {k: v for k, v in values.items() if k in schema["properties"]}
        problems = []
        for error in sorted(jsonschema.Draft202012Validator(schema).iter_errors(known),
                            key=lambda e: list(e.absolute_path)):
            key = ".".join(str(p) for p in error.absolute_path)
            problems.append(f"{prefix}{key} = {error.instance!r}: {error.message}")
        for key, value in known.items():  # bools pass as integers in JSON schema
            if isinstance(value, bool) and schema["properties"][key].get("type") in ("integer", "number"):
                problems.append(f"{prefix}{key} = {value!r} is not a number")
        problems += _finite_problems(known, prefix)
        if problems:
            return problems
        merged = {f.name: f.default for f in dataclasses.fields(SigmaConfig)} | known
        if merged["boost_after"] >= merged["steps"]:
            problems.append(f"{prefix}boost_after ({merged['boost_after']}) must be < "
                            f"{prefix}steps ({merged['steps']})")
        low, high = merged["sigma_min"], merged["sigma_max"]
        if low > high:
            problems.append(f"{prefix}sigma_min ({low}) must not exceed {prefix}sigma_max ({high})")
        elif not low <= merged["sigma_init"] <= high:
            problems.append(f"{prefix}sigma_init ({merged['sigma_init']}) must lie in "
                            f"[{prefix}sigma_min, {prefix}sigma_max] = [{low}, {high}]")
        else:
            reachable = (math.log(low) + ENTROPY_OFFSET, math.log(high) + ENTROPY_OFFSET)
            if not reachable[0] <= merged["target_entropy"] <= reachable[1]:
                problems.append(
                    f"{prefix}target_entropy ({merged['target_entropy']}) cannot be reached: with "
                    f"sigma in [{low}, {high}] the mean entropy lies in [{reachable[0]:.4f}, "
                    f"{reachable[1]:.4f}] (log sigma + 0.5 log(2 pi e))")
        return problems

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> SigmaConfig:
        """Builds a config from the ``quantify:`` section of ``config/config.yaml``.

        Pipeline-only keys (``candidates``, ``max_batch``, ``precision``, ``schedule``,
        ``round_size``) are ignored; any other unknown key is an error, so a typo cannot pass
        silently.

        Example:
            >>> SigmaConfig.from_mapping({"grid": 8, "max_batch": 512}).grid
            8
        """
        if not isinstance(mapping, Mapping):
            raise TypeError(f"expected a mapping, got {type(mapping).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(mapping) - set(fields) - PIPELINE_ONLY_KEYS)
        if unknown:
            raise ValueError(f"unknown quantify keys {unknown}; known: "
                             f"{sorted(fields) + sorted(PIPELINE_ONLY_KEYS)}")
        kwargs = {}
        for key, value in mapping.items():
            if key not in fields:
                continue
            # YAML may give 7 for 7.0; coerce ints to the float fields, keep ints strict.
            if fields[key].type in ("float", float) and isinstance(value, int) \
                    and not isinstance(value, bool):
                value = float(value)
            kwargs[key] = value
        return cls(**kwargs)

    @property
    def entropy_offset(self) -> float:
        """0.5 * log(2 pi e): H_i = log sigma_i + this."""
        return ENTROPY_OFFSET
