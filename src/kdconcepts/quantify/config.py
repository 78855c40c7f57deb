"""Settings of the sigma (information-discarding) estimation, SPEC section 2."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

# Keys of the config's `quantify:` section that steer the pipeline or the engine but do
# not change the method: they are accepted and ignored by `SigmaConfig.from_mapping`.
PIPELINE_ONLY_KEYS = frozenset({"candidates", "max_batch", "precision"})


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

    def __post_init__(self) -> None:
        problems = []
        for name in ("grid", "steps", "boost_after", "samples"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.append(f"{name} must be a positive int, got {value!r}")
        for name in ("lr", "lam", "boost_factor", "target_entropy", "sigma_init",
                     "sigma_min", "sigma_max"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value):
                problems.append(f"{name} must be a finite number, got {value!r}")
        if not problems:
            if self.boost_after > self.steps:
                problems.append(f"boost_after ({self.boost_after}) must be <= steps ({self.steps})")
            if not 0 < self.sigma_min <= self.sigma_max:
                problems.append(f"need 0 < sigma_min <= sigma_max, got "
                                f"{self.sigma_min}, {self.sigma_max}")
            if not self.sigma_init > 0:
                problems.append(f"sigma_init must be > 0, got {self.sigma_init}")
            if not self.lr > 0:
                problems.append(f"lr must be > 0, got {self.lr}")
        if problems:
            raise ValueError("invalid SigmaConfig: " + "; ".join(problems))

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> SigmaConfig:
        """Builds a config from the ``quantify:`` section of ``config/config.yaml``.

        Pipeline-only keys (``candidates``, ``max_batch``, ``precision``) are ignored;
        any other unknown key is an error, so a typo cannot pass silently.

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
            # YAML may give 7 for 7.0 or "1e-4" strings; coerce floats, keep ints strict.
            if fields[key].type in ("float", float) and isinstance(value, (int, str)) \
                    and not isinstance(value, bool):
                value = float(value)
            kwargs[key] = value
        return cls(**kwargs)

    @property
    def entropy_offset(self) -> float:
        """0.5 * log(2 pi e): H_i = log sigma_i + this."""
        return 0.5 * math.log(2 * math.pi) + 0.5
