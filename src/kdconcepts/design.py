"""The design (seeds x evaluated images per seed) from a finished run's variance and cost.

A verdict is the t-test of S per-seed differences d_s (:mod:`kdconcepts.stats`), so its power
depends on the variance of d_s, which a finished run estimates per metric:

- ``between_seeds`` (tau^2): how much the student-minus-baseline effect itself varies from one
  independent training to the next;
- ``between_images``: the variance of an image's value shared by the two networks (it cancels
  in the paired difference, but shows how much images differ);
- ``within``: each network's own noise on an image (the paired difference has twice it).

With n image pairs per seed, ``var(d_s) = tau^2 + w / n``, where ``w`` is the variance of one
image pair's contribution (``2 within`` for a mean over images; for D_std, a spread over
images, estimated by a paired bootstrap within each seed). A design's power at an effect and its
minimum detectable effect follow (:func:`kdconcepts.stats.power`), and its CPU cost from the
run's per-job benchmarks: ``fixed + S (per_seed + n per_image)``. ``benchmarks/design.py``
prints the table and the recommendation; docs/ARCHITECTURE.md says how the default's design was
chosen with it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from kdconcepts import metrics as M
from kdconcepts import stats

__all__ = ["Costs", "design_table", "recommend", "variance_components"]


def _within_seed_variance(student: np.ndarray, baseline: np.ndarray, metric: str, rng) -> float:
    """The sampling variance of one seed's difference over its image pairs (paired bootstrap)."""
    if len(student) < 2:
        return float("nan")
    idx = rng.integers(0, len(student), size=(2000, len(student)))
    values = M.statistic(metric, student[idx]) - M.statistic(metric, baseline[idx])
    return float(np.nanvar(values, ddof=1))


def variance_components(images: pd.DataFrame, students: Sequence[str], baseline: str = "baseline",
                        seed: int = 0) -> pd.DataFrame:
    """Per (layer, student, metric of the six): the variance components of a finished run.

    Returns:
        Columns ``layer, student, metric, direction, n_seeds, images_per_seed, effect`` (the mean
        per-seed difference), ``seed_sd`` (the observed standard deviation of d_s),
        ``between_seeds`` (tau^2, floored at 0), ``between_images``, ``within`` and ``w`` (the
        variance one image pair adds to a seed's difference, times the pairs).
    """
    rows = []
    for layer in dict.fromkeys(images["layer"]):
        for student in students:
            for metric, direction, _ in M.HYPOTHESES:
                pairs, _ = M.paired_values(images, layer, student, baseline, metric)
                if len(pairs) < 2:
                    continue
                of_student, of_baseline = M.seed_level(pairs, metric)
                d = of_student - of_baseline
                n = np.array([len(s) for s, _ in pairs.values()], dtype=float)
                rng = stats.stream(seed, "design", layer, student, metric)
                sampling = np.array([_within_seed_variance(s, b, metric, rng) for s, b in pairs.values()])
                w = float(np.nanmean(sampling * n))
                # Components of the per-image values (mean over seeds of the within-seed moments).
                cov = [np.cov(s, b)[0, 1] if len(s) > 1 else np.nan for s, b in pairs.values()]
                diff_var = [np.var(s - b, ddof=1) if len(s) > 1 else np.nan for s, b in pairs.values()]
                rows.append({"layer": layer, "student": student, "metric": metric, "direction": direction,
                             "n_seeds": len(pairs), "images_per_seed": float(n.mean()),
                             "effect": float(np.mean(d)), "seed_sd": float(np.std(d, ddof=1)),
                             "between_seeds": max(0.0, float(np.var(d, ddof=1) - np.nanmean(sampling))),
                             "between_images": float(np.nanmean(cov)), "within": float(np.nanmean(diff_var) / 2),
                             "w": w})
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class Costs:
    """CPU seconds of a run: ``fixed`` (data, pre-training, pooling and report jobs), per seed
    (its training and metrics jobs) and per evaluated image of a seed (its quantification,
    the candidates screened to find it included), per output tree (architecture)."""

    fixed: float
    per_seed: float
    per_image: float

    def of(self, seeds: int, images: int) -> float:
        return self.fixed + seeds * (self.per_seed + images * self.per_image)


def design_table(components: pd.DataFrame, costs: Costs, *, seeds: Iterable[int], images: Iterable[int],
                 alpha: float = stats.ALPHA, family: int = len(M.HYPOTHESES)) -> pd.DataFrame:
    """Every (seeds, images per seed) design: its CPU seconds and, per row of ``components``, the
    minimum detectable effect and the power at the observed effect, at the Bonferroni level
    ``alpha / family`` that bounds Holm's first step. D_std needs two images per seed."""
    rows = []
    for s in seeds:
        for n in images:
            for c in components.itertuples(index=False):
                if c.metric == "d_std" and n < 2:
                    continue
                sd = float(np.sqrt(c.between_seeds + c.w / n))
                rows.append({"seeds": s, "images_per_seed": n, "cpu_s": costs.of(s, n), "layer": c.layer,
                             "student": c.student, "metric": c.metric, "sd": sd,
                             "mde": stats.minimum_detectable_effect(sd, s, alpha / family),
                             "power_at_observed": stats.power(c.effect, sd, s, alpha / family)})
    return pd.DataFrame(rows)


def recommend(table: pd.DataFrame, current: tuple[int, int], budget_cpu_s: float,
              groups: Mapping[str, pd.DataFrame] | None = None) -> pd.DataFrame:
    """The designs within ``budget_cpu_s`` ranked by their mean minimum detectable effect relative
    to the ``current`` design's (over every metric and, with ``groups``, every architecture):
    below 1 detects smaller effects than the current design. Chosen on the MDE, which does not
    depend on which way the observed effects point, not on the power at them.

    Args:
        table: :func:`design_table` rows; with ``groups``, ignored in favour of one table per
            architecture (their designs must be the same).
        groups: architecture -> its :func:`design_table`; costs are summed over them.
    """
    groups = dict(groups) if groups else {"": table}
    ratios, costs = [], None
    for of in groups.values():
        key = ["layer", "student", "metric"]
        base = of[(of["seeds"] == current[0]) & (of["images_per_seed"] == current[1])].set_index(key)["mde"]
        relative = of.join(base.rename("current_mde"), on=key)
        relative["ratio"] = relative["mde"] / relative["current_mde"]
        ratios.append(relative[["seeds", "images_per_seed", "ratio"]])
        cpu = of.groupby(["seeds", "images_per_seed"])["cpu_s"].first()
        costs = cpu if costs is None else costs + cpu
    summary = pd.concat(ratios).groupby(["seeds", "images_per_seed"])["ratio"].agg(["mean", "max", "count"])
    # Only designs that test every hypothesis (D_std, a spread over a seed's images, needs two).
    summary = summary[summary["count"] == summary["count"].max()].drop(columns="count")
    summary = summary.join(costs.rename("cpu_s")).reset_index()
    summary = summary[summary["cpu_s"] <= budget_cpu_s].rename(
        columns={"mean": "mean_mde_ratio", "max": "worst_mde_ratio"})
    return summary.sort_values(["mean_mde_ratio", "cpu_s"], kind="stable").reset_index(drop=True)
