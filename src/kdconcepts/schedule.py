"""Which images to quantify, at which checkpoint, in what order (SPEC section 5).

The metrics of a comparison (a student and the baseline) use the first E candidate images (in
their seeded sampling order) that are *effective* for both of its networks: usable
(sigma_f != 0) at every checkpoint, and at every late checkpoint (the last ``late_fraction`` of
training) with a mean background entropy at least their mean foreground entropy. Two schedules
compute the maps that rule and the metrics need (both in one job per seed and layer:
:func:`kdconcepts.walk.quantify_seed`):

``exhaustive``
    every candidate at every checkpoint of every network, the rule applied afterwards (simple,
    and the reference the other schedule is tested against);

``effective_first`` (default)
    the authors' pipeline structure, done for all comparisons at once. Candidates are taken in
    rounds of ``round_size``. In a round each network's late checkpoints are quantified newest
    first, and an image stops being quantified for a comparison at the first late checkpoint
    where it fails the rule for one of its two networks. The round's survivors are then checked
    for sigma_f != 0 at the early checkpoints (one forward of K samples, not an optimisation).
    Rounds stop once every comparison has E effective images, or the candidates run out. Only
    the chosen images are then quantified at the early checkpoints and the teacher's final one.

Both give the same chosen images and the same maps for them (each image's noise depends only on
the seed and its id), hence the same metrics; ``tests/test_schedule.py`` checks it on the smoke
config. The functions here are pure: tables in, decisions out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = ["SELECTION_RULES", "candidate_indices", "late_epochs", "early_epochs", "meets_effective_rule",
           "rule_failures", "verdict_table"]


def candidate_indices(n_train: int, n_candidates: int, seed: int) -> np.ndarray:
    """Seeded sample (without replacement) of candidate training images, in sampling order.

    The same ``seed`` gives the same candidates for every network and checkpoint; a larger
    ``n_candidates`` extends the list without changing its start.
    """
    if n_candidates > n_train:
        raise ValueError(f"quantify.candidates = {n_candidates} but the training split has only "
                         f"{n_train} images")
    return np.random.default_rng(seed).permutation(n_train)[:n_candidates]


def late_epochs(epochs: Sequence[int], late_fraction: float) -> list[int]:
    """Checkpoints in the last ``late_fraction`` of training (paper: epochs >= 40 of 150)."""
    final = max(epochs)
    return [e for e in epochs if e >= (1.0 - late_fraction) * final]


def early_epochs(epochs: Sequence[int], late_fraction: float) -> list[int]:
    """The checkpoints the effective rule does not read (only their sigma_f matters to it)."""
    late = set(late_epochs(epochs, late_fraction))
    return [e for e in epochs if e not in late]


#: The image rules of config ``metrics.selection``: ``effective`` (the paper's, SPEC section 5)
#: and ``usable`` (sigma_f != 0 only; for smoke tests of barely trained nets).
SELECTION_RULES = ("effective", "usable")


def meets_effective_rule(usable: bool, entropy: Sequence[float], mask: np.ndarray, grid: int,
                         rule: str = "effective") -> bool:
    """The image rule at one late checkpoint, the one both the schedule and the metrics apply.

    ``effective`` (SPEC section 5): the image is usable (sigma_f != 0) and its mean background
    entropy is at least its mean foreground entropy. ``usable``: only the first part. Either
    way a mask without foreground or background cells fails (the means cannot be compared), and
    under ``effective`` a NaN mean compares false and fails.

    Args:
        usable: sigma_f != 0 at this checkpoint.
        entropy: the G*G entropy map, row-major.
        mask: the G x G foreground grid mask (bool).
        grid: G.
        rule: one of :data:`SELECTION_RULES`.
    """
    if rule not in SELECTION_RULES:
        raise ValueError(f"rule must be one of {SELECTION_RULES}, got {rule!r}")
    if not usable or mask.all() or not mask.any():
        return False
    if rule == "usable":
        return True
    h = np.asarray(entropy, dtype=np.float64).reshape(grid, grid)
    return bool(h[~mask].mean() >= h[mask].mean())


def rule_failures(table: pd.DataFrame, fg: Mapping[str, np.ndarray], grid: int,
                  rule: str = "effective") -> set[str]:
    """Image ids of one (network, late checkpoint) table that fail the image rule there
    (:func:`meets_effective_rule`)."""
    return {row.image_id for row in table.itertuples(index=False)
            if not meets_effective_rule(row.usable, row.entropy, fg[row.image_id], grid, rule)}


def verdict_table(candidates: Sequence[str], ranks: Sequence[int], late_survivors: Sequence[str],
                  early_usable: Mapping[str, Mapping[int, set[str]]]) -> pd.DataFrame:
    """One row per candidate of a round: is it effective for every analysed network?

    Args:
        candidates, ranks: the round's image ids and their candidate ranks.
        late_survivors: ids that passed the rule at every late checkpoint for every network.
        early_usable: network -> early epoch -> ids with sigma_f != 0 there.

    Returns:
        Columns ``candidate_rank``, ``image_id``, ``effective`` (bool) and ``reason`` (why not).
    """
    passed = set(late_survivors)
    rows = []
    for rank, image_id in zip(ranks, candidates):
        reason = ""
        if image_id not in passed:
            reason = "failed the rule at a late checkpoint"
        else:
            for network, by_epoch in early_usable.items():
                bad = [e for e, ok in by_epoch.items() if image_id not in ok]
                if bad:
                    reason = f"sigma_f = 0 for {network} at epoch {bad[0]}"
                    break
        rows.append({"candidate_rank": int(rank), "image_id": image_id, "effective": not reason,
                     "reason": reason})
    return pd.DataFrame(rows, columns=["candidate_rank", "image_id", "effective", "reason"])
