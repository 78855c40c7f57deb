"""The six metrics on tiny hand-checked inputs (SPEC sections 3 to 6)."""

import numpy as np
import pandas as pd
import pytest

from kdconcepts import metrics as M


def _table(maps: dict[tuple[int, str], np.ndarray], usable=True) -> pd.DataFrame:
    return pd.DataFrame([{"epoch": e, "image_id": i, "usable": usable,
                          "entropy": h.ravel().tolist()} for (e, i), h in maps.items()])


def test_late_epochs_scale_with_schedule():
    paper = [0, 2, 5, 10, 15, 20, 25, 30, 40, 50, 70, 90, 110, 130, 150]
    assert M.late_epochs(paper, 0.75) == [40, 50, 70, 90, 110, 130, 150]
    assert M.late_epochs([0, 1, 2, 3], 0.5) == [2, 3]


def test_effective_images_rule():
    fg = {"a": np.array([[True, False], [False, False]]), "b": np.array([[True, False], [False, False]]),
          "c": np.zeros((2, 2), bool)}
    good = np.array([[-5.0, -1.0], [-1.0, -1.0]])   # foreground lower: effective
    bad = np.array([[-1.0, -5.0], [-5.0, -5.0]])    # background lower
    maps = {(0, "a"): bad, (3, "a"): good, (4, "a"): good,   # early bad epoch is not checked
            (0, "b"): good, (3, "b"): good, (4, "b"): bad,
            (0, "c"): good, (3, "c"): good, (4, "c"): good}  # no foreground cell
    verdict = M.effective_images(_table(maps), fg, 2, late_fraction=0.5)
    assert verdict.to_dict() == {"a": True, "b": False, "c": False}
    assert M.effective_images(_table(maps), fg, 2, 0.5, rule="usable").to_dict() == \
        {"a": True, "b": True, "c": False}
    assert not M.effective_images(_table(maps, usable=False), fg, 2, 0.5).any()


def test_count_concepts_threshold_and_sets():
    fg = {"x": np.array([[True, True], [False, False]])}
    # H_bar = mean background = -1; concepts where -1 - H > 0.2, i.e. H < -1.2
    h = np.array([[-3.0, -1.1], [-0.5, -1.5]])
    counts = M.count_concepts(_table({(1, "x"): h}), fg, 2, b=0.2)
    row = counts.iloc[0]
    assert row["h_bar"] == pytest.approx(-1.0)
    assert (row["n_fg"], row["n_bg"]) == (1, 1)  # -3.0 (fg) and -1.5 (bg) are below -1.2
    assert row["fg_cells"] == (0,)


def test_lambda_simultaneity_and_stability():
    counts = pd.DataFrame({
        "epoch": [0, 1, 2, 0, 1, 2],
        "image_id": ["p", "p", "p", "q", "q", "q"],
        "n_fg": [1, 3, 3, 0, 1, 2],
        "n_bg": [0, 1, 1, 0, 0, 2],
        "fg_cells": [(1,), (1, 2, 3), (2, 3, 4), (), (5,), (5, 6)],
        "bg_cells": [(), (9,), (9,), (), (), (7, 8)],
    })
    wd = pd.Series({0: 0.0, 1: 0.5, 2: 2.0})
    out = M.network_metrics(counts, wd)
    assert out["n_fg"] == pytest.approx(2.5) and out["n_bg"] == pytest.approx(1.5)
    assert out["lambda"] == pytest.approx((3 / 4 + 2 / 4) / 2)
    # m_hat(p) = 1 (first maximum), m_hat(q) = 2
    assert out["d_mean"] == pytest.approx(1.25)
    assert out["d_var"] == pytest.approx(np.var([0.5, 2.0]))
    assert out["d_std"] == pytest.approx(np.std([0.5, 2.0]))
    # rho: p: |{2,3,4}| / |{1,2,3,4}| = 3/4; q: |{5,6}| / |{5,6}| = 1
    assert out["rho"] == pytest.approx((0.75 + 1.0) / 2)
    assert out["rho_bg"] == pytest.approx((1.0 + 1.0) / 2)
    assert out["rho_all"] == pytest.approx((4 / 5 + 1.0) / 2)


def test_image_without_concepts_contributes_zero_lambda():
    counts = pd.DataFrame({"epoch": [5, 5], "image_id": ["a", "b"], "n_fg": [0, 2], "n_bg": [0, 2],
                           "fg_cells": [(), (1, 2)], "bg_cells": [(), (3, 4)]})
    out = M.network_metrics(counts, None)
    assert out["lambda"] == pytest.approx(0.25)
    assert np.isnan(out["d_mean"]) and np.isnan(out["rho"])


def test_compare_hypotheses_directions():
    base = {"layer": "conv", "n_fg": 2.0, "n_bg": 5.0, "lambda": 0.3, "d_mean": 1.0,
            "d_std": 0.5, "rho": 0.4}
    student = base | {"n_fg": 3.0, "n_bg": 6.0, "lambda": 0.4, "d_mean": 0.5, "d_std": 0.6,
                      "rho": 0.5}
    metrics = pd.DataFrame([student | {"network": "distilled_student"},
                            base | {"network": "baseline"}])
    verdict = M.compare_hypotheses(metrics).set_index("metric")["held"].to_dict()
    assert verdict == {"n_fg": True, "n_bg": False, "lambda": True, "d_mean": True,
                       "d_std": False, "rho": True}


def test_every_network_number_is_the_mean_of_its_image_rows():
    counts = pd.DataFrame({
        "epoch": [0, 1, 2, 0, 1, 2],
        "image_id": ["p", "p", "p", "q", "q", "q"],
        "n_fg": [1, 3, 3, 0, 1, 2],
        "n_bg": [0, 1, 1, 0, 0, 2],
        "fg_cells": [(1,), (1, 2, 3), (2, 3, 4), (), (5,), (5, 6)],
        "bg_cells": [(), (9,), (9,), (), (), (7, 8)],
    })
    wd = pd.Series({0: 0.0, 1: 0.5, 2: 2.0})
    rows = M.image_metrics(counts, wd).set_index("image_id")
    assert rows.loc["p", "m_hat"] == 1 and rows.loc["p", "d"] == 0.5 and rows.loc["q", "d"] == 2.0
    assert rows.loc["p", "rho"] == pytest.approx(0.75) and rows.loc["q", "lambda"] == pytest.approx(0.5)
    out = M.network_metrics(counts, wd)
    for metric, column in (("n_fg", "n_fg"), ("lambda", "lambda"), ("d_mean", "d"), ("rho", "rho")):
        assert out[metric] == pytest.approx(rows[column].mean())


def _pairs(shift, seeds=3, n=10, noise=0.3, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(seeds):
        offset = rng.normal(0, 1)  # seeds differ from each other
        for k in range(n):
            value = offset + rng.normal(0, noise)
            for network, delta in (("distilled_student", shift), ("baseline", 0.0)):
                rows.append({"seed": s, "layer": "conv", "network": network, "image_id": f"i{k}",
                             "n_fg": value + delta + rng.normal(0, noise), "n_bg": 0.0, "lambda": 0.0,
                             "d": 1.0, "rho": 0.5})
    return pd.DataFrame(rows)


def test_pooled_verdicts_follow_the_interval_of_the_difference():
    held = M.pooled_hypotheses(_pairs(1.0), ["distilled_student"], resamples=2000).set_index("metric")
    assert held.loc["n_fg", "verdict"] == "held" and held.loc["n_fg", "ci_low"] > 0
    assert held.loc["n_fg", "wilcoxon_p"] < 0.001 and held.loc["n_fg", "n_pairs"] == 30
    assert held.loc["n_fg", "student_ci_low"] <= held.loc["n_fg", "student_value"] <= held.loc["n_fg", "student_ci_high"]
    reversed_ = M.pooled_hypotheses(_pairs(-1.0), ["distilled_student"], resamples=2000).set_index("metric")
    assert reversed_.loc["n_fg", "verdict"] == "reversed"
    nothing = M.pooled_hypotheses(_pairs(0.0), ["distilled_student"], resamples=2000).set_index("metric")
    assert nothing.loc["n_fg", "verdict"] == "not significant"
    assert nothing.loc["n_fg", "ci_low"] < 0 < nothing.loc["n_fg", "ci_high"]
    # Identical values: no difference, p = 1; D_std has no paired test.
    assert nothing.loc["d_mean", "wilcoxon_p"] == 1.0 and np.isnan(nothing.loc["d_std", "wilcoxon_p"])
    # Seeded: the same call gives the same intervals.
    again = M.pooled_hypotheses(_pairs(0.0), ["distilled_student"], resamples=2000).set_index("metric")
    assert again.loc["n_fg", "ci_low"] == nothing.loc["n_fg", "ci_low"]


def test_the_bootstrap_resamples_seeds_before_images():
    # One seed with a large effect, two without: resampling seeds widens the interval a lot
    # compared with pooling all images as if they were one sample.
    frame = pd.concat([_pairs(3.0, seeds=1, seed=1), _pairs(0.0, seeds=2, seed=2).assign(seed=lambda f: f["seed"] + 1)])
    row = M.pooled_hypotheses(frame, ["distilled_student"], resamples=4000).set_index("metric").loc["n_fg"]
    assert row["difference"] == pytest.approx(1.0, abs=0.3)
    assert row["ci_low"] < 0.3 and row["ci_high"] > 2.0


def test_verdict_words():
    assert M.verdict(0.1, 0.5, "up") == "held" and M.verdict(-0.5, -0.1, "down") == "held"
    assert M.verdict(-0.5, -0.1, "up") == "reversed" and M.verdict(-0.1, 0.1, "up") == "not significant"
    assert M.verdict(float("nan"), 1.0, "up") == "not significant"
