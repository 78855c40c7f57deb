"""The paper's six metrics (SPEC sections 3 to 6), per image, per network, and pooled over seeds.

Inputs are long tables with one row per (network, layer, epoch, image): the entropy map
``entropy`` (G*G values, row-major) of the selected sigma, ``usable`` (sigma_f != 0), as written
by the quantify stage. Notation follows Cheng et al. (CVPR 2020):

- ``H_bar``: background baseline, mean background entropy per image averaged over the
  evaluated images, per network and checkpoint;
- concept: a cell i with ``H_bar - H_i > b``;
- ``N_fg``, ``N_bg``: foreground / background concept counts; ``lambda`` = E_x[N_fg/(N_fg+N_bg)];
- ``D_mean``, ``D_var``/``D_std``: mean and spread of the weight distance d(m_hat(x)) at the first
  checkpoint m_hat(x) where N_fg(x) peaks;
- ``rho`` = E_x[|S_M(x)| / |union_j S_j(x)|], S_j(x) the concept cells at checkpoint j.

Paired comparisons (student against baseline) use the images where both networks have a value:
an image whose rho is undefined (no concept at any checkpoint) for either network is dropped
from both, and counted (``n_dropped``).

Every network-level number is an aggregate of per-image values (:func:`image_metrics`), and the
pooled verdicts (:func:`pooled_hypotheses`) are read from the per-seed network metrics on those
same per-image rows, the seed being the unit of replication (:mod:`kdconcepts.stats`): every
number traces back to the rows of ``images.csv``.

Example:
    >>> import pandas as pd
    >>> counts = pd.DataFrame({"epoch": [3], "image_id": ["a"], "n_fg": [2], "n_bg": [1],
    ...                        "fg_cells": [(0, 1)], "bg_cells": [(5,)]})
    >>> aggregate_images(image_metrics(counts, None))["lambda"]
    0.6666666666666666
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from kdconcepts import stats
from kdconcepts.schedule import late_epochs, meets_effective_rule
from kdconcepts.stats import ALPHA

__all__ = [
    "HYPOTHESES",
    "IMAGE_COLUMNS",
    "REPORTED",
    "TEACHER_METRICS",
    "ZERO_CONCEPT_RULES",
    "BESIDE",
    "aggregate_images",
    "compare_hypotheses",
    "count_concepts",
    "effective_images",
    "image_metrics",
    "late_epochs",
    "PREMISE_MARGIN",
    "paired_values",
    "pooled_hypotheses",
    "premise",
    "seed_differences",
    "teacher_reference",
    "seed_level",
    "statistic",
]

#: (metric column, better direction, hypothesis number) of SPEC section 6.
HYPOTHESES: tuple[tuple[str, str, int], ...] = (
    ("n_fg", "up", 1),
    ("n_bg", "down", 1),
    ("lambda", "up", 1),
    ("d_mean", "down", 2),
    ("d_std", "down", 2),
    ("rho", "up", 3),
)
#: Reported with the hypotheses: the authors' np.var beside D_std (the same direction).
REPORTED: tuple[tuple[str, str, int], ...] = HYPOTHESES[:5] + (("d_var", "down", 2),) + HYPOTHESES[5:]
#: The per-image value each network metric averages (d_std, d_var: the spread of ``d``).
_IMAGE_VALUE = {"n_fg": "n_fg", "n_bg": "n_bg", "lambda": "lambda", "d_mean": "d", "d_std": "d",
                "d_var": "d", "rho": "rho"}
#: Columns of :func:`image_metrics`.
IMAGE_COLUMNS = ("image_id", "n_fg", "n_bg", "lambda", "d", "m_hat", "rho", "rho_bg", "rho_all",
                 "no_fg_concept")
#: The "verdict" of D_var: shown beside D_std (it is D_std squared), not a seventh test.
BESIDE = "beside D_std"
#: The teacher's metrics shown beside the students' (one checkpoint: no D, no rho).
TEACHER_METRICS = ("n_fg", "n_bg", "lambda")
#: What ``metrics.zero_concept_images`` does with an image that has no foreground concept at
#: any checkpoint: ``keep`` (the authors' argmax: m_hat is the first checkpoint, d its distance)
#: or ``drop`` (no m_hat, so no d; the image leaves D_mean and D_std, for both networks of a pair).
ZERO_CONCEPT_RULES = ("keep", "drop")


def _stack(entropy: Iterable[Sequence[float]], grid: int) -> np.ndarray:
    return np.stack([np.asarray(e, dtype=np.float64).reshape(grid, grid) for e in entropy])


def effective_images(table: pd.DataFrame, fg: dict[str, np.ndarray], grid: int,
                     late_fraction: float, rule: str = "effective",
                     epochs: Sequence[int] | None = None) -> pd.Series:
    """Whether each image is effective for one network (SPEC section 5).

    Effective: usable (sigma_f != 0) at every checkpoint, and at every late checkpoint its mean
    background entropy is at least its mean foreground entropy. Images whose grid mask has no
    foreground or no background cell cannot be compared and are not effective. An image without
    a row at some checkpoint of ``epochs`` (the effective-first schedule stopped quantifying it)
    is not effective either.

    Args:
        table: rows of one network and layer: ``image_id``, ``epoch``, ``usable``, ``entropy``.
        fg: foreground grid mask per image id.
        grid: G.
        late_fraction: fraction of training the rule looks at.
        rule: ``effective`` (the paper's) or ``usable`` (only sigma_f != 0 and a mask with both
            foreground and background cells; for smoke tests of barely trained nets).
        epochs: the configured checkpoints (default: those in ``table``).

    Returns:
        bool Series indexed by image id, in first-appearance order of ``table``.
    """
    epochs = sorted(table["epoch"].unique()) if epochs is None else sorted(epochs)
    late = set(late_epochs(epochs, late_fraction))
    verdict: dict[str, bool] = {}
    for image_id, rows in table.groupby("image_id", sort=False):
        mask = fg[image_id]
        if mask.all() or not mask.any() or not rows["usable"].all() \
                or set(rows["epoch"]) != set(epochs):
            verdict[image_id] = False
            continue
        verdict[image_id] = all(meets_effective_rule(row.usable, row.entropy, mask, grid, rule)
                                for row in rows[rows["epoch"].isin(late)].itertuples(index=False))
    return pd.Series(verdict, name="effective", dtype=bool)


def count_concepts(table: pd.DataFrame, fg: dict[str, np.ndarray], grid: int,
                   b: float) -> pd.DataFrame:
    """N_fg and N_bg per (epoch, image), with H_bar per epoch over the images in ``table``.

    Args:
        table: rows of one network and layer, restricted to the evaluated images.

    Returns:
        ``table``'s ``epoch`` and ``image_id`` with ``h_bar``, ``n_fg``, ``n_bg`` and the concept
        cell sets ``fg_cells``/``bg_cells`` (tuples of flat indices).
    """
    # Imported here: the report jobs import this module for its constants and need no torch.
    import torch

    from kdconcepts.quantify import background_baseline, concept_counts

    out = []
    for epoch, rows in table.groupby("epoch", sort=True):
        ids = list(rows["image_id"])
        h = _stack(rows["entropy"], grid)
        mask = np.stack([fg[i] for i in ids])
        h_bar = background_baseline(torch.from_numpy(h), torch.from_numpy(mask))
        counts = concept_counts(torch.from_numpy(h), torch.from_numpy(mask), h_bar, b=b)
        concept = counts.is_concept.numpy()
        for k, image_id in enumerate(ids):
            out.append({
                "epoch": int(epoch), "image_id": image_id, "h_bar": h_bar,
                "n_fg": int(counts.n_fg[k]), "n_bg": int(counts.n_bg[k]),
                "fg_cells": tuple(np.flatnonzero(concept[k] & mask[k]).tolist()),
                "bg_cells": tuple(np.flatnonzero(concept[k] & ~mask[k]).tolist()),
            })
    return pd.DataFrame(out)


def image_metrics(counts: pd.DataFrame, weight_distance: pd.Series | None,
                  zero_concept_images: str = "keep") -> pd.DataFrame:
    """The per-image values the six metrics average, one row per image.

    ``n_fg``, ``n_bg``: counts at the final checkpoint; ``lambda``: N_fg / (N_fg + N_bg) there
    (0 without concepts); ``m_hat``: the first checkpoint with the most foreground concepts and
    ``d`` = d(m_hat); ``rho``, ``rho_bg``, ``rho_all``: |S_M| / |union_j S_j| over foreground,
    background and all concept cells (NaN when the union is empty); ``no_fg_concept``: the image
    has no foreground concept at any checkpoint. ``d`` and the rhos need several checkpoints and
    a weight distance (NaN otherwise, e.g. for the teacher).

    Args:
        zero_concept_images: ``keep`` (the authors' rule: an image without foreground concepts
            gets m_hat = the first checkpoint) or ``drop`` (its m_hat and d are NaN).
    """
    if zero_concept_images not in ZERO_CONCEPT_RULES:
        raise ValueError(f"metrics.zero_concept_images must be one of {ZERO_CONCEPT_RULES}, "
                         f"not {zero_concept_images!r}")
    final = counts["epoch"].max()
    several = weight_distance is not None and counts["epoch"].nunique() > 1
    rows = []
    for image_id, of_image in counts.sort_values("epoch", kind="stable").groupby("image_id", sort=False):
        last = of_image[of_image["epoch"] == final].iloc[0]
        total = last["n_fg"] + last["n_bg"]
        no_fg_concept = bool((of_image["n_fg"] == 0).all())
        row = {"image_id": image_id, "n_fg": int(last["n_fg"]), "n_bg": int(last["n_bg"]),
               "lambda": float(last["n_fg"] / total) if total > 0 else 0.0,
               "d": np.nan, "m_hat": np.nan, "rho": np.nan, "rho_bg": np.nan, "rho_all": np.nan,
               "no_fg_concept": no_fg_concept}
        if several:
            if not (no_fg_concept and zero_concept_images == "drop"):
                m_hat = int(of_image.loc[of_image["n_fg"].idxmax(), "epoch"])  # idxmax: first maximum
                row.update(m_hat=m_hat, d=float(weight_distance.loc[m_hat]))
            for name, cols in (("rho", ("fg_cells",)), ("rho_bg", ("bg_cells",)),
                               ("rho_all", ("fg_cells", "bg_cells"))):
                sets = {int(r["epoch"]): set().union(*(r[c] for c in cols)) for _, r in of_image.iterrows()}
                union = set().union(*sets.values())
                row[name] = len(sets[final]) / len(union) if union else np.nan
        rows.append(row)
    return pd.DataFrame(rows, columns=list(IMAGE_COLUMNS))


def aggregate_images(per_image: pd.DataFrame) -> dict[str, float]:
    """A network's metrics from its :func:`image_metrics` rows.

    D averages the images whose ``d`` is defined (NaN for a dropped zero-concept image), rho
    those whose rho is; with no defined ``d`` at all (one checkpoint, or the teacher) D and rho
    are NaN. ``no_fg_concept_images`` counts the images without a foreground concept at any
    checkpoint.
    """
    d_all = per_image["d"].to_numpy(dtype=float)
    d = d_all[np.isfinite(d_all)]
    has_d = len(d) > 0
    row = {"n_images": int(len(per_image)),
           "n_fg": float(per_image["n_fg"].mean()), "n_bg": float(per_image["n_bg"].mean()),
           # An image without concepts contributes 0 (SPEC section 3).
           "lambda": float(per_image["lambda"].mean()),
           "d_mean": float(d.mean()) if has_d else float("nan"),
           "d_var": float(np.var(d)) if has_d else float("nan"),
           "d_std": float(np.std(d)) if has_d else float("nan")}
    for name in ("rho", "rho_bg", "rho_all"):
        values = per_image[name].dropna()
        row[name] = float(values.mean()) if len(values) and has_d else float("nan")
    row["no_fg_concept_images"] = int(per_image["no_fg_concept"].astype(bool).sum())
    return row


def compare_hypotheses(metrics: pd.DataFrame, students: Sequence[str] = ("distilled_student",),
                       baseline: str = "baseline") -> pd.DataFrame:
    """Which way each difference of SPEC section 6 went in one seed, one row per (layer,
    student, metric).

    ``paper_direction`` is True when the student-minus-baseline difference has the paper's sign
    (False when it has the other sign, is 0, or is undefined). It is a direction, not a
    verdict: only the pooled table (:func:`pooled_hypotheses`) says "held", from its intervals.

    Args:
        metrics: one row per (layer, network), or per (layer, comparison, network) with a
            ``comparison`` column (each student's comparison on its own images), with the
            metric columns.
    """
    rows = []
    for layer, of_layer in metrics.groupby("layer", sort=False):
        for student in students:
            group = of_layer[of_layer["comparison"] == student] if "comparison" in of_layer else of_layer
            by_net = group.set_index("network")
            if student not in by_net.index or baseline not in by_net.index:
                continue
            for metric, direction, hypothesis in HYPOTHESES:
                s, b = by_net.loc[student, metric], by_net.loc[baseline, metric]
                same = bool(s > b) if direction == "up" else bool(s < b)
                rows.append({"layer": layer, "student": student, "hypothesis": hypothesis,
                             "metric": metric, "direction": direction, "student_value": s,
                             "baseline_value": b,
                             "paper_direction": same if np.isfinite([s, b]).all() else False})
    return pd.DataFrame(rows)


# --- pooled over seeds: the seed is the unit (kdconcepts.stats) ---------------------------------


#: The premise's margin: the teacher must lead the baseline by at least this much test accuracy
#: in every seed (10 points: docs/DATA.md; the teacher's extra knowledge must show).
PREMISE_MARGIN = 0.10


def premise(accuracy: pd.DataFrame, margin: float = PREMISE_MARGIN) -> pd.DataFrame:
    """The paper's premise, per seed: the teacher knows more than the baseline.

    Args:
        accuracy: one row per seed (column ``seed``), one column of test accuracy per network
            (``teacher`` and ``baseline`` at least).
        margin: the smallest lead of the teacher over the baseline that counts.

    Returns:
        ``accuracy`` with ``teacher_minus_baseline``, ``premise_margin`` and ``premise_held``
        (the lead is at least ``margin``; a lead that equals it up to float rounding counts).
    """
    out = accuracy.copy()
    out["teacher_minus_baseline"] = out["teacher"] - out["baseline"]
    out["premise_margin"] = float(margin)
    out["premise_held"] = out["teacher_minus_baseline"] >= float(margin) - 1e-9
    return out


def statistic(metric: str, values: np.ndarray) -> np.ndarray:
    """A network's metric from per-image values along the last axis (NaNs ignored)."""
    with np.errstate(all="ignore"):
        if metric == "d_std":
            return np.nanstd(values, axis=-1)
        if metric == "d_var":
            return np.nanvar(values, axis=-1)
        return np.nanmean(values, axis=-1)


def _of_comparison(images: pd.DataFrame, layer: str, student: str) -> pd.DataFrame:
    """The rows of one layer evaluated for one (student, baseline) comparison: each comparison
    has its own images (those effective for both of its networks), so a table with a
    ``comparison`` column holds the baseline and the teacher once per student."""
    rows = images[images["layer"] == layer]
    if "comparison" in rows:
        rows = rows[rows["comparison"] == student]
    return rows


def paired_values(images: pd.DataFrame, layer: str, student: str, baseline: str,
                   metric: str) -> tuple[dict[int, tuple[np.ndarray, np.ndarray]], int]:
    """(seed -> (student values, baseline values), paired by image; pairs dropped).

    A pair is kept only where both networks have a value: an image whose value is undefined
    for one network (rho without concepts, d of a dropped zero-concept image) leaves both, so
    the two networks are always compared on the same images. A seed without a pair is left out.
    """
    column = _IMAGE_VALUE[metric]
    out, dropped = {}, 0
    for seed, of_seed in _of_comparison(images, layer, student).groupby("seed", sort=True):
        wide = of_seed.pivot(index="image_id", columns="network", values=column)
        if student in wide and baseline in wide:
            s, b = wide[student].to_numpy(float), wide[baseline].to_numpy(float)
            keep = np.isfinite(s) & np.isfinite(b)
            dropped += int((~keep).sum())
            if keep.any():
                out[int(seed)] = (s[keep], b[keep])
    return out, dropped


def seed_level(pairs: dict[int, tuple[np.ndarray, np.ndarray]], metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Per seed (in seed order), the student's and the baseline's metric on that seed's pairs:
    the replicates the verdict is read from."""
    seeds = sorted(pairs)
    student = np.array([statistic(metric, pairs[s][0]) for s in seeds], dtype=float)
    baseline = np.array([statistic(metric, pairs[s][1]) for s in seeds], dtype=float)
    return student, baseline


def pooled_hypotheses(images: pd.DataFrame, students: Sequence[str], baseline: str = "baseline", *,
                      confidence: float = 1 - ALPHA) -> pd.DataFrame:
    """The verdict on every hypothesis, pooled over seeds, one row per (layer, student, metric).

    The seed is the unit of replication (:mod:`kdconcepts.stats`): each seed gives one
    student-minus-baseline difference d_s (of the two networks' metric on that seed's image
    pairs); the verdict is the t-test of mean(d_s) = 0 with S - 1 degrees of freedom, Holm-adjusted
    over the six hypotheses of a (layer, student), at level 1 - ``confidence``.

    Args:
        images: per-image rows of every seed (columns ``seed``, ``layer``, ``network``, optionally
            ``comparison``, and :data:`IMAGE_COLUMNS`), as in ``results/tables/images.csv``.
        students: the analysed students, each compared with ``baseline``.
        confidence: of the t-intervals; 1 - ``confidence`` is the family-wise level of a row.

    Returns:
        Columns ``layer, student, hypothesis, metric, direction, student_value, student_ci_low,
        student_ci_high, baseline_value, baseline_ci_low, baseline_ci_high, difference, ci_low,
        ci_high, seed_sd, p_value, holm_p, mde, n_pairs, n_dropped, n_seeds, verdict``. Values are
        means over seeds of the per-seed network metric on the paired images (an image without a
        value for one network is dropped from both: ``n_dropped``); every interval is a t-interval
        over seeds; ``seed_sd`` the standard deviation of d_s; ``p_value`` the t-test's, ``holm_p``
        its Holm adjustment (empty for ``d_var``, shown beside D_std, not a seventh test: its
        verdict is :data:`BESIDE`); ``mde`` the minimum detectable effect at this many seeds, power
        0.8, at the Bonferroni level (1 - confidence) / 6 that bounds Holm's first step.
    """
    alpha = 1.0 - confidence
    rows = []
    for layer in dict.fromkeys(images["layer"]):
        for student in students:
            family, differences = [], []
            for metric, direction, hypothesis in REPORTED:
                pairs, dropped = paired_values(images, layer, student, baseline, metric)
                if not pairs:
                    continue
                of_student, of_baseline = seed_level(pairs, metric)
                student_ci = stats.t_interval(of_student, confidence)
                baseline_ci = stats.t_interval(of_baseline, confidence)
                with np.errstate(all="ignore"):
                    student_value, baseline_value = float(np.nanmean(of_student)), float(np.nanmean(of_baseline))
                differences.append(pd.Series(of_student - of_baseline, index=sorted(pairs)))
                family.append({"layer": layer, "student": student, "hypothesis": hypothesis,
                               "metric": metric, "direction": direction,
                               "student_value": student_value, "student_ci_low": student_ci[0],
                               "student_ci_high": student_ci[1], "baseline_value": baseline_value,
                               "baseline_ci_low": baseline_ci[0], "baseline_ci_high": baseline_ci[1],
                               "n_pairs": int(sum(len(s) for s, _ in pairs.values())),
                               "n_dropped": dropped, "n_seeds": len(pairs)})
            if family:
                rows += _decided(family, differences, confidence, alpha / len(HYPOTHESES))
    return pd.DataFrame(rows)


def _decided(family: list[dict], differences: list[pd.Series], confidence: float,
             mde_level: float) -> list[dict]:
    """A (layer, student)'s rows with the verdict rule's numbers (:func:`kdconcepts.stats.decide`
    on its six hypotheses; D_var, beside D_std, gets its own t-test but no Holm p or verdict)."""
    tested = [k for k, row in enumerate(family) if row["metric"] != "d_var"]
    seeds = pd.concat(differences, axis=1).sort_index()  # seeds x hypotheses (NaN: no pairs)
    decision = stats.decide(seeds.to_numpy().T[tested], [family[k]["direction"] for k in tested], confidence)
    test = stats.seed_test(seeds.to_numpy().T, confidence)
    for k, row in enumerate(family):
        row.update(difference=float(test.mean[k]), ci_low=float(test.ci_low[k]),
                   ci_high=float(test.ci_high[k]), seed_sd=float(test.sd[k]), p_value=float(test.p[k]),
                   holm_p=np.nan, verdict=BESIDE,
                   mde=stats.minimum_detectable_effect(float(test.sd[k]), int(test.n_seeds[k]), mde_level))
    for j, k in enumerate(tested):
        family[k].update(holm_p=float(decision.holm_p[j]), verdict=str(decision.verdict[j]))
    columns = ["layer", "student", "hypothesis", "metric", "direction", "student_value", "student_ci_low",
               "student_ci_high", "baseline_value", "baseline_ci_low", "baseline_ci_high", "difference",
               "ci_low", "ci_high", "seed_sd", "p_value", "holm_p", "mde", "n_pairs", "n_dropped",
               "n_seeds", "verdict"]
    return [{c: row[c] for c in columns} for row in family]


def seed_differences(images: pd.DataFrame, students: Sequence[str], baseline: str = "baseline", *,
                     resamples: int = 10000, confidence: float = 1 - ALPHA, seed: int = 0) -> pd.DataFrame:
    """Each seed's student-minus-baseline difference with its own bootstrap interval (images
    resampled in pairs, ``scipy.stats.bootstrap``; one random stream per layer, student, metric
    and seed: :func:`kdconcepts.stats.stream`), the points of the forest plot; and, where a
    seed has enough pairs to reject at 1 - ``confidence``, its two-sided Wilcoxon signed-rank
    test on the image pairs (``wilcoxon_p``; empty for D_std and D_var, spreads over images, and
    for a seed whose smallest possible p, 2 / 2^n, is not below the level: ``wilcoxon_note``
    says "too few pairs per seed"). Pairs as in :func:`pooled_hypotheses`. Descriptive: each
    seed alone; no verdict comes from these."""
    from scipy import stats as sps

    alpha = 1.0 - confidence
    rows = []
    for layer in dict.fromkeys(images["layer"]):
        for student in students:
            for metric, direction, _ in REPORTED:
                pairs, _ = paired_values(images, layer, student, baseline, metric)
                for seed_value, (s, b) in pairs.items():
                    difference = float(statistic(metric, s) - statistic(metric, b))
                    low = high = np.nan
                    if len(s) > 1 and np.isfinite(difference):
                        result = sps.bootstrap(
                            (s, b), lambda x, y, axis=-1: statistic(metric, x) - statistic(metric, y),
                            paired=True, vectorized=True, n_resamples=resamples,
                            confidence_level=confidence, method="percentile",
                            random_state=stats.stream(seed, layer, student, metric, seed_value))
                        low, high = result.confidence_interval
                    p_value, note = np.nan, ""
                    if metric not in ("d_std", "d_var"):
                        if stats.smallest_wilcoxon_p(len(s)) >= alpha:
                            note = "too few pairs per seed"
                        else:
                            p_value = float(sps.wilcoxon(s, b).pvalue) if np.any(s != b) else 1.0
                    rows.append({"layer": layer, "student": student, "metric": metric,
                                 "direction": direction, "seed": seed_value, "difference": difference,
                                 "ci_low": float(low), "ci_high": float(high),
                                 "wilcoxon_p": p_value, "wilcoxon_note": note, "n_pairs": int(len(s))})
    return pd.DataFrame(rows)


def teacher_reference(images: pd.DataFrame, students: Sequence[str], baseline: str = "baseline", *,
                      teacher: str = "teacher", confidence: float = 1 - ALPHA) -> pd.DataFrame:
    """The teacher beside each student and the baseline: context, not a hypothesis.

    Per (layer, student, metric of :data:`TEACHER_METRICS`), at the final checkpoint on the same
    evaluated images: the three networks' values (means over seeds of the per-seed network
    metric), the teacher's t-interval over seeds, ``student_share`` (student / teacher: "the
    student keeps x% of the teacher's foreground concepts"), ``baseline_share`` and
    ``teacher_minus_baseline`` (the reference line of the forest plot). No verdict.
    """
    rows = []
    for layer in dict.fromkeys(images["layer"]):
        for student in students:
            for metric in TEACHER_METRICS:
                trios = {}
                for seed_value, of_seed in _of_comparison(images, layer, student).groupby("seed", sort=True):
                    wide = of_seed.pivot(index="image_id", columns="network", values=_IMAGE_VALUE[metric])
                    if {teacher, student, baseline} <= set(wide.columns):
                        trios[int(seed_value)] = wide[[teacher, student, baseline]].to_numpy(float)
                if not trios:
                    continue
                per_seed = {name: np.array([statistic(metric, t[:, k]) for t in trios.values()])
                            for k, name in enumerate(("teacher", "student", "baseline"))}
                values = {name: float(np.mean(v)) for name, v in per_seed.items()}
                low, high = stats.t_interval(per_seed["teacher"], confidence)
                with np.errstate(all="ignore"):
                    rows.append({"layer": layer, "student": student, "metric": metric,
                                 "teacher_value": values["teacher"], "teacher_ci_low": low,
                                 "teacher_ci_high": high, "student_value": values["student"],
                                 "baseline_value": values["baseline"],
                                 "student_share": values["student"] / values["teacher"]
                                 if values["teacher"] else np.nan,
                                 "baseline_share": values["baseline"] / values["teacher"]
                                 if values["teacher"] else np.nan,
                                 "teacher_minus_baseline": values["teacher"] - values["baseline"],
                                 "n_seeds": len(trios)})
    return pd.DataFrame(rows)
