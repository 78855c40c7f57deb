"""The paper's six metrics (SPEC sections 3 to 6), from per-image entropy maps.

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

Example:
    >>> import pandas as pd
    >>> counts = pd.DataFrame({"epoch": [3], "image_id": ["a"], "n_fg": [2], "n_bg": [1],
    ...                        "fg_cells": [(0, 1)], "bg_cells": [(5,)]})
    >>> network_metrics(counts, None)["lambda"]
    0.6666666666666666
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import torch

from kdconcepts.quantify import background_baseline, concept_counts

__all__ = [
    "HYPOTHESES",
    "compare_hypotheses",
    "count_concepts",
    "effective_images",
    "late_epochs",
    "network_metrics",
    "stability",
    "simultaneity",
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


def _stack(entropy: Iterable[Sequence[float]], grid: int) -> np.ndarray:
    return np.stack([np.asarray(e, dtype=np.float64).reshape(grid, grid) for e in entropy])


def late_epochs(epochs: Sequence[int], late_fraction: float) -> list[int]:
    """Checkpoints in the last ``late_fraction`` of training (paper: epochs >= 40 of 150)."""
    final = max(epochs)
    return [e for e in epochs if e >= (1.0 - late_fraction) * final]


def effective_images(table: pd.DataFrame, fg: dict[str, np.ndarray], grid: int,
                     late_fraction: float, rule: str = "effective") -> pd.Series:
    """Whether each image is effective for one network (SPEC section 5).

    Effective: usable (sigma_f != 0) at every checkpoint, and at every late checkpoint its mean
    background entropy is at least its mean foreground entropy. Images whose grid mask has no
    foreground or no background cell cannot be compared and are not effective.

    Args:
        table: rows of one network and layer: ``image_id``, ``epoch``, ``usable``, ``entropy``.
        fg: foreground grid mask per image id.
        grid: G.
        late_fraction: fraction of training the rule looks at.
        rule: ``effective`` (the paper's) or ``usable`` (only sigma_f != 0 and a mask with both
            foreground and background cells; for smoke tests of barely trained nets).

    Returns:
        bool Series indexed by image id, in first-appearance order of ``table``.
    """
    late = set(late_epochs(sorted(table["epoch"].unique()), late_fraction))
    verdict: dict[str, bool] = {}
    for image_id, rows in table.groupby("image_id", sort=False):
        mask = fg[image_id]
        if mask.all() or not mask.any() or not rows["usable"].all():
            verdict[image_id] = False
            continue
        if rule == "usable":
            verdict[image_id] = True
            continue
        ok = True
        for _, row in rows[rows["epoch"].isin(late)].iterrows():
            h = np.asarray(row["entropy"], dtype=np.float64).reshape(grid, grid)
            ok &= bool(h[~mask].mean() >= h[mask].mean())
        verdict[image_id] = ok
    return pd.Series(verdict, name="effective")


def count_concepts(table: pd.DataFrame, fg: dict[str, np.ndarray], grid: int,
                   b: float) -> pd.DataFrame:
    """N_fg and N_bg per (epoch, image), with H_bar per epoch over the images in ``table``.

    Args:
        table: rows of one network and layer, restricted to the evaluated images.

    Returns:
        ``table``'s ``epoch`` and ``image_id`` with ``h_bar``, ``n_fg``, ``n_bg`` and the concept
        cell sets ``fg_cells``/``bg_cells`` (tuples of flat indices).
    """
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


def simultaneity(counts: pd.DataFrame, weight_distance: pd.Series) -> dict[str, float]:
    """D_mean, D_var (the authors' np.var) and D_std over images.

    Args:
        counts: output of :func:`count_concepts` over all checkpoints.
        weight_distance: d(m) indexed by epoch.
    """
    d = []
    for _, rows in counts.sort_values("epoch").groupby("image_id", sort=False):
        m_hat = int(rows.loc[rows["n_fg"].idxmax(), "epoch"])  # idxmax: first maximum
        d.append(float(weight_distance.loc[m_hat]))
    d = np.asarray(d)
    return {"d_mean": float(d.mean()), "d_var": float(np.var(d)), "d_std": float(np.std(d))}


def stability(counts: pd.DataFrame) -> dict[str, float]:
    """rho over foreground concepts (the paper's), background ones and all cells.

    An image with no concept at any checkpoint has an empty union and is left out of that mean.
    """
    final = counts["epoch"].max()
    out = {}
    for name, cols in (("rho", ("fg_cells",)), ("rho_bg", ("bg_cells",)),
                       ("rho_all", ("fg_cells", "bg_cells"))):
        ratios = []
        for _, rows in counts.groupby("image_id", sort=False):
            sets = {int(r["epoch"]): set().union(*(r[c] for c in cols)) for _, r in rows.iterrows()}
            union = set().union(*sets.values())
            if union:
                ratios.append(len(sets[final]) / len(union))
        out[name] = float(np.mean(ratios)) if ratios else float("nan")
    return out


def network_metrics(counts: pd.DataFrame, weight_distance: pd.Series | None) -> dict[str, float]:
    """The six metrics of one network and layer; D and rho need several checkpoints."""
    final = counts[counts["epoch"] == counts["epoch"].max()]
    total = final["n_fg"] + final["n_bg"]
    row = {
        "n_images": int(final["image_id"].nunique()),
        "n_fg": float(final["n_fg"].mean()),
        "n_bg": float(final["n_bg"].mean()),
        # An image without concepts contributes 0 (SPEC section 3).
        "lambda": float((final["n_fg"] / total.where(total > 0)).fillna(0.0).mean()),
    }
    if weight_distance is not None and counts["epoch"].nunique() > 1:
        row.update(simultaneity(counts, weight_distance))
        row.update(stability(counts))
    else:
        row.update({k: float("nan") for k in
                    ("d_mean", "d_var", "d_std", "rho", "rho_bg", "rho_all")})
    return row


def compare_hypotheses(metrics: pd.DataFrame, student: str = "distilled_student",
                       baseline: str = "baseline") -> pd.DataFrame:
    """Did each direction of SPEC section 6 hold? One row per (layer, metric).

    Args:
        metrics: one row per (layer, network) with the metric columns.
    """
    rows = []
    for layer, group in metrics.groupby("layer", sort=False):
        by_net = group.set_index("network")
        if student not in by_net.index or baseline not in by_net.index:
            continue
        for metric, direction, hypothesis in HYPOTHESES:
            s, b = by_net.loc[student, metric], by_net.loc[baseline, metric]
            held = bool(s > b) if direction == "up" else bool(s < b)
            rows.append({"layer": layer, "hypothesis": hypothesis, "metric": metric,
                         "direction": direction, "distilled_student": s, "baseline": b,
                         "held": held if np.isfinite([s, b]).all() else False})
    return pd.DataFrame(rows)
