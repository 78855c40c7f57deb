"""Seed-level inference: the verdict rule, its multiplicity adjustment, power and design.

The paper's claims are about training procedures ("distillation makes a net learn more
foreground concepts"), so the unit of replication is the **seed**: each seed trains its own
teacher, distilled student and baseline, and the evaluated images of a seed are repeated
measures of those networks, not replicates. The student-minus-baseline effect varies from seed
to seed (with standard deviation tau), and a rerun on another host is, in effect, a new draw of
that variation.

So every verdict is read from the S per-seed differences d_s = m_student(s) - m_baseline(s)
(each the difference of one seed's network metrics on that seed's image pairs), with a
one-sample t-test and interval with S - 1 degrees of freedom, and Holm's adjustment over the six
hypotheses of a row deciding. Its false call rate is the nominal one whatever tau is, which a
resampling of 3 seeds (10 distinct multisets) is not: ``tests/test_calibration.py`` checks it
by simulation at the default's design, and docs/ARCHITECTURE.md gives the figures.

The design (seeds x images per seed) follows from the variance of d_s,
``var(d_s) = tau^2 + sigma_w^2 / n`` with n image pairs per seed: :func:`power` and
:func:`minimum_detectable_effect` (benchmarks/design.py chooses the default's design with them).

Example:
    >>> import numpy as np
    >>> test = seed_test(np.array([1.0, 2.0, 3.0]))
    >>> round(float(test.mean), 3), round(float(test.p), 3)
    (2.0, 0.074)
    >>> verdict(2.0, 0.074, "up")
    'not significant'
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

__all__ = ["ALPHA", "POWER", "Decision", "SeedTest", "decide", "holm", "minimum_detectable_effect", "power", "seed_test",
           "smallest_wilcoxon_p", "stream", "t_interval", "verdict", "verdicts", "VERDICTS"]

#: The verdicts, in the paper's terms.
VERDICTS = ("held", "not significant", "reversed")
#: The power at which the minimum detectable effect is quoted.
POWER = 0.8
#: The default family-wise error rate of a row's six verdicts (1 - metrics.confidence).
ALPHA = 0.05


class SeedTest(NamedTuple):
    """The one-sample t-test of per-seed differences (arrays: one value per test)."""

    mean: np.ndarray
    sd: np.ndarray       #: sample standard deviation of the per-seed differences (ddof 1)
    n_seeds: np.ndarray
    ci_low: np.ndarray   #: the t-interval of the mean, S - 1 degrees of freedom
    ci_high: np.ndarray
    p: np.ndarray        #: two-sided; NaN with fewer than 2 seeds or no spread between them


def seed_test(differences: np.ndarray, confidence: float = 1 - ALPHA) -> SeedTest:
    """The t-test and t-interval of the mean of per-seed differences, along the last axis.

    NaNs (a seed without image pairs) are left out. With fewer than two seeds, or when every
    seed gives the same difference (no spread to scale it by), the interval and p are NaN: such
    a row cannot be tested and its verdict is ``not significant``.

    Args:
        differences: [..., S] per-seed student-minus-baseline differences.
        confidence: of the interval (the test's level is 1 - confidence).
    """
    from scipy import stats

    d = np.asarray(differences, dtype=float)
    n = np.sum(np.isfinite(d), axis=-1)
    with np.errstate(all="ignore"):
        mean = np.nanmean(d, axis=-1)
        sd = np.nanstd(d, axis=-1, ddof=1)
        se = sd / np.sqrt(n)
        df = np.where(n >= 2, n - 1, np.nan)
        testable = (n >= 2) & (sd > 0)
        t = np.where(testable, mean / se, np.nan)
        p = np.where(testable, 2 * stats.t.sf(np.abs(t), df), np.nan)
        half = stats.t.ppf(0.5 + confidence / 2, df) * se
    half = np.where(testable, half, np.nan)
    return SeedTest(mean, sd, n, mean - half, mean + half, p)


def t_interval(values: np.ndarray, confidence: float = 1 - ALPHA) -> tuple[float, float]:
    """The t-interval of the mean of per-seed values (NaN with fewer than two seeds)."""
    test = seed_test(np.asarray(values, dtype=float), confidence)
    if not np.isfinite(test.ci_low) and np.isfinite(test.mean) and test.sd == 0:
        return float(test.mean), float(test.mean)  # every seed equal: no spread
    return float(test.ci_low), float(test.ci_high)


def holm(p_values: np.ndarray | Sequence[float]) -> np.ndarray:
    """Holm's step-down adjustment of each family of p-values along the last axis.

    NaNs stay NaN and are outside the family (an untestable hypothesis can never be rejected).
    """
    p = np.asarray(p_values, dtype=float)
    finite = np.isfinite(p)
    m = finite.sum(axis=-1, keepdims=True)
    order = np.argsort(np.where(finite, p, np.inf), axis=-1, kind="stable")
    ranked = np.take_along_axis(p, order, axis=-1)
    adjusted = np.minimum(1.0, (m - np.arange(p.shape[-1])) * ranked)
    adjusted = np.fmax.accumulate(np.where(np.isfinite(ranked), adjusted, np.nan), axis=-1)
    out = np.empty_like(p)
    np.put_along_axis(out, order, adjusted, axis=-1)
    return np.where(finite, out, np.nan)


def verdicts(differences: np.ndarray, adjusted_p: np.ndarray, directions: np.ndarray | Sequence[str],
             alpha: float = ALPHA) -> np.ndarray:
    """:func:`verdict` element by element (arrays broadcast against each other)."""
    directions = np.asarray(directions)
    if not np.isin(directions, ("up", "down")).all():
        raise ValueError(f"direction must be 'up' or 'down', not {sorted(set(directions.ravel()))}")
    d = np.asarray(differences, dtype=float)
    with np.errstate(invalid="ignore"):
        called = (np.asarray(adjusted_p, dtype=float) < alpha) & np.isfinite(d) & (d != 0)
    paper = (d > 0) == (directions == "up")
    return np.where(called & paper, "held", np.where(called, "reversed", "not significant"))


def verdict(difference: float, adjusted_p: float, direction: str, alpha: float = ALPHA) -> str:
    """``held`` if the Holm-adjusted p is below ``alpha`` and the difference has the paper's sign,
    ``reversed`` if it is below ``alpha`` with the other sign, else ``not significant``."""
    return str(verdicts(np.array(difference), np.array(adjusted_p), np.array(direction), alpha))


class Decision(NamedTuple):
    """The verdicts of families of hypotheses (arrays [..., m]: one value per hypothesis)."""

    test: SeedTest
    holm_p: np.ndarray
    verdict: np.ndarray


def decide(differences: np.ndarray, directions: Sequence[str], confidence: float = 1 - ALPHA) -> Decision:
    """The verdict rule: per hypothesis the t-test of its per-seed differences, then Holm's
    adjustment over the family, at level 1 - ``confidence``.

    Args:
        differences: [..., m, S]: for each of m hypotheses (the last-but-one axis is the family),
            the S per-seed student-minus-baseline differences (NaN: a seed without a value).
        directions: the paper's direction (``up`` | ``down``) of each of the m hypotheses.
    """
    test = seed_test(differences, confidence)
    adjusted = holm(test.p)
    return Decision(test, adjusted, verdicts(test.mean, adjusted, np.asarray(directions), 1 - confidence))


def power(effect: float, sd: float, n_seeds: int, alpha: float = ALPHA) -> float:
    """Power of the two-sided one-sample t-test at level ``alpha`` with ``n_seeds`` seeds, when the
    per-seed differences have mean ``effect`` and standard deviation ``sd`` (noncentral t)."""
    from scipy import stats

    if n_seeds < 2 or not np.isfinite(sd) or sd <= 0:
        return float("nan")
    df = n_seeds - 1
    critical = stats.t.ppf(1 - alpha / 2, df)
    shift = abs(effect) / (sd / np.sqrt(n_seeds))  # (symmetric in the sign of the effect)
    # The far tail against the effect: scipy's noncentral t gives NaN where it is ~0.
    against = float(np.nan_to_num(stats.nct.cdf(-critical, df, shift), nan=0.0))
    return float(stats.nct.sf(critical, df, shift)) + against


def minimum_detectable_effect(sd: float, n_seeds: int, alpha: float = ALPHA,
                              target_power: float = POWER) -> float:
    """The smallest |mean difference| the t-test detects with ``target_power`` at level
    ``alpha``, for per-seed differences of standard deviation ``sd`` (NaN below two seeds)."""
    from scipy import optimize

    if n_seeds < 2 or not np.isfinite(sd) or sd <= 0:
        return float("nan")
    high = sd
    while power(high, sd, n_seeds, alpha) < target_power:
        high *= 2
    return float(optimize.brentq(lambda e: power(e, sd, n_seeds, alpha) - target_power, 0.0, high,
                                 xtol=1e-10 * sd))


def smallest_wilcoxon_p(n_pairs: int) -> float:
    """The smallest two-sided p the exact Wilcoxon signed-rank test can give on ``n_pairs``
    pairs: every sign the same, 2 / 2^n (4 pairs: 0.125)."""
    return 2.0 / 2.0 ** n_pairs if n_pairs > 0 else 1.0


def stream(seed: int, *names: object) -> np.random.Generator:
    """An independent random generator per named quantity (e.g. layer, student, metric, seed), so
    that adding a metric, a layer or a network leaves every other quantity's draws unchanged."""
    key = hashlib.sha256("\0".join(map(str, names)).encode()).digest()
    return np.random.default_rng([int(seed), *np.frombuffer(key[:16], dtype=np.uint32).tolist()])
