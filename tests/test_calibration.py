"""The verdict rule's false call rate, by simulation at the default's design (STYLE, statistics).

Null data as the pipeline meets them: S seeds x n evaluated images (config/config.yaml's `seeds`
and `metrics.effective`); each image has an effect shared by the student and the baseline and
each network its own noise, both N(0, 1); the student-minus-baseline effect varies from seed to
seed, N(0, tau^2), because each seed trains its own networks, with mean 0 (no true effect).
A family of six hypotheses per row, as in the table: five means over images (N_fg, N_bg,
lambda, D_mean, rho) and one spread (D_std). The rule under test is the pipeline's own,
:func:`kdconcepts.stats.decide`, which :func:`kdconcepts.metrics.pooled_hypotheses` calls (the
last test checks that wiring on simulated per-image tables).
"""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from kdconcepts import metrics as M
from kdconcepts import stats as S

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = yaml.safe_load((ROOT / "config/config.yaml").read_text())
SEEDS = len(DEFAULT["seeds"])
IMAGES = int(DEFAULT["metrics"]["effective"])
FAMILY = [(metric, direction) for metric, direction, _ in M.HYPOTHESES]
DATASETS = 4000
ALPHA = 1 - float(DEFAULT["metrics"]["confidence"])


def _per_image(rng, tau, effect=0.0, datasets=DATASETS, seeds=SEEDS, images=IMAGES):
    """[datasets, 6, seeds, images] student and baseline values of one family of hypotheses;
    ``effect``: the true mean difference, one for all six or one per hypothesis."""
    shape = (datasets, len(FAMILY), seeds, images)
    image = rng.normal(0.0, 1.0, shape)
    mean = np.broadcast_to(np.asarray(effect, dtype=float), (len(FAMILY),))[None, :, None, None]
    seed_effect = mean + rng.normal(0.0, 1.0, shape[:3] + (1,)) * tau
    student = image + seed_effect + rng.normal(0.0, 1.0, shape)
    baseline = image + rng.normal(0.0, 1.0, shape)
    return student, baseline


def _differences(student, baseline):
    """Per seed, each network's metric (the mean over images, the standard deviation for D_std),
    student minus baseline: [datasets, 6, seeds]."""
    spread = np.array([metric == "d_std" for metric, _ in FAMILY])[None, :, None]
    if student.shape[-1] < 2:  # one image per seed: no spread to compare, D_std is always 0
        spread = np.zeros_like(spread)
    of = lambda values: np.where(spread, np.std(values, axis=-1), np.mean(values, axis=-1))  # noqa: E731
    return of(student) - of(baseline)


def _monte_carlo_bound(rate=ALPHA, n=DATASETS):
    return rate + 2 * np.sqrt(rate * (1 - rate) / n)


@pytest.mark.parametrize("tau", [0.0, 1.0, 2.0])
def test_false_calls_stay_at_the_level_when_the_effect_varies_between_seeds(tau):
    rng = np.random.default_rng([31, int(10 * tau)])
    differences = _differences(*_per_image(rng, tau))
    decision = S.decide(differences, [d for _, d in FAMILY], 1 - ALPHA)
    called = decision.verdict != "not significant"
    # Each hypothesis alone (the t-test before Holm) and the row of six (Holm's family-wise rate).
    per_hypothesis = (decision.test.p < ALPHA).mean()
    family_wise = called.any(axis=1).mean()
    assert per_hypothesis <= _monte_carlo_bound(), (tau, per_hypothesis)
    assert family_wise <= _monte_carlo_bound(), (tau, family_wise)
    # Not vacuous under the null either: the t-test is exact, so it calls at about the level.
    assert per_hypothesis >= ALPHA - 4 * np.sqrt(ALPHA * (1 - ALPHA) / differences[..., 0].size)


def test_a_true_effect_is_found_with_the_power_the_summary_claims():
    """At the minimum detectable effect that summary.md prints for this design (power 0.8 at the
    Bonferroni level alpha / 6), the rule calls "held" at least that often on that hypothesis;
    with tau = 1 x the image-level sd."""
    tau = 1.0
    sd = np.sqrt(tau ** 2 + 2.0 / IMAGES)  # of a seed's mean difference over its image pairs
    effect = S.minimum_detectable_effect(sd, SEEDS, ALPHA / len(FAMILY))
    rng = np.random.default_rng(310)
    # N_fg (up) has the true effect; the other five are null.
    student, baseline = _per_image(rng, tau, effect=[effect] + [0.0] * (len(FAMILY) - 1))
    decision = S.decide(_differences(student, baseline), [d for _, d in FAMILY], 1 - ALPHA)
    found = (decision.verdict[:, 0] == "held").mean()
    floor = S.POWER - 2 * np.sqrt(S.POWER * (1 - S.POWER) / DATASETS)
    assert found >= floor, (effect, found)
    assert (decision.verdict[:, 0] == "reversed").mean() < 0.001


def test_the_pipeline_uses_the_calibrated_rule():
    """pooled_hypotheses on per-image tables gives exactly the p, Holm p and verdicts of the rule
    above (D_std there is the spread of D_mean's per-image values, as in the pipeline)."""
    rng = np.random.default_rng(7)
    student, baseline = _per_image(rng, 1.0, effect=0.8, datasets=30)
    d_mean, d_std = (next(j for j, (m, _) in enumerate(FAMILY) if m == name) for name in ("d_mean", "d_std"))
    student[:, d_std], baseline[:, d_std] = student[:, d_mean], baseline[:, d_mean]
    columns = {"n_fg": "n_fg", "n_bg": "n_bg", "lambda": "lambda", "d_mean": "d", "rho": "rho"}
    expected = S.decide(_differences(student, baseline), [d for _, d in FAMILY], 1 - ALPHA)
    for k in range(30):
        rows = []
        for network, values in (("distilled_student", student[k]), ("baseline", baseline[k])):
            for s in range(SEEDS):
                for i in range(IMAGES):
                    rows.append({"seed": s, "layer": "conv", "network": network, "image_id": f"i{i}",
                                 **{column: values[j, s, i] for j, (metric, _) in enumerate(FAMILY)
                                    if (column := columns.get(metric))}})
        table = M.pooled_hypotheses(pd.DataFrame(rows), ["distilled_student"], confidence=1 - ALPHA)
        table = table.set_index("metric")
        for j, (metric, _) in enumerate(FAMILY):
            assert table.loc[metric, "p_value"] == pytest.approx(expected.test.p[k, j], nan_ok=True)
            assert table.loc[metric, "holm_p"] == pytest.approx(expected.holm_p[k, j], nan_ok=True)
            assert table.loc[metric, "verdict"] == expected.verdict[k, j]
