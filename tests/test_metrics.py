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
    table = M.compare_hypotheses(metrics)
    # A per-seed direction, not a verdict: "held" is the pooled table's word only.
    assert "held" not in table.columns
    verdict = table.set_index("metric")["paper_direction"].to_dict()
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
    assert held.loc["n_fg", "permutation_p"] < 0.001 and held.loc["n_fg", "n_pairs"] == 30
    assert held.loc["n_fg", "holm_p"] >= held.loc["n_fg", "permutation_p"]
    assert "wilcoxon_p" not in held.columns  # pooling image pairs of all seeds: not independent
    assert held.loc["n_fg", "student_ci_low"] <= held.loc["n_fg", "student_value"] <= held.loc["n_fg", "student_ci_high"]
    reversed_ = M.pooled_hypotheses(_pairs(-1.0), ["distilled_student"], resamples=2000).set_index("metric")
    assert reversed_.loc["n_fg", "verdict"] == "reversed"
    nothing = M.pooled_hypotheses(_pairs(0.0), ["distilled_student"], resamples=2000).set_index("metric")
    assert nothing.loc["n_fg", "verdict"] == "not significant"
    assert nothing.loc["n_fg", "ci_low"] < 0 < nothing.loc["n_fg", "ci_high"]
    # Identical values: no difference, p = 1, D_std included (the permutation test fits spreads).
    assert nothing.loc["d_mean", "permutation_p"] == 1.0 and nothing.loc["d_std", "permutation_p"] == 1.0
    # Holm over the six hypotheses; D_var is shown beside D_std, not a seventh test.
    assert nothing["holm_p"].notna().sum() == 6 and np.isnan(nothing.loc["d_var", "holm_p"])
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


def test_holm_adjustment():
    adjusted = M.holm([0.01, 0.04, 0.03, float("nan")])
    assert adjusted[:3] == pytest.approx([0.03, 0.06, 0.06]) and np.isnan(adjusted[3])
    assert M.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_permutation_test_is_exact_in_a_small_case_and_keeps_the_seeds():
    # One seed, three pairs, all differences positive: of the 8 sign patterns, 2 are as extreme.
    rows = [{"seed": 0, "layer": "conv", "network": net, "image_id": f"i{k}", "n_fg": value,
             "n_bg": 0.0, "lambda": 0.0, "d": 1.0, "rho": 0.5}
            for k, (s, b) in enumerate([(3.0, 1.0), (5.0, 2.0), (4.0, 3.5)])
            for net, value in (("distilled_student", s), ("baseline", b))]
    row = M.pooled_hypotheses(pd.DataFrame(rows), ["distilled_student"], resamples=20000) \
        .set_index("metric").loc["n_fg"]
    assert row["permutation_p"] == pytest.approx(0.25, abs=0.015)
    # Stratified: a large offset per seed, the same for both networks of a seed, leaves every
    # pair's difference, and so the test, unchanged (a shuffle across seeds would not).
    frame = _pairs(0.4, noise=0.5)
    shifted = frame.assign(n_fg=frame["n_fg"] + 50.0 * frame["seed"])
    p = [M.pooled_hypotheses(f, ["distilled_student"], resamples=2000).set_index("metric")
         .loc["n_fg", "permutation_p"] for f in (frame, shifted)]
    assert p[0] == pytest.approx(p[1])
    assert 0 < p[0] < 1


def test_undefined_pairs_leave_both_networks_and_are_counted():
    frame = _pairs(0.0, seeds=2, n=5)
    undefined = (frame["network"] == "distilled_student") & frame["image_id"].isin(["i0", "i1"])
    frame.loc[undefined, "rho"] = np.nan  # no concept at any checkpoint: rho undefined
    frame.loc[(frame["network"] == "baseline") & (frame["image_id"] == "i0"), "rho"] = 0.1
    row = M.pooled_hypotheses(frame, ["distilled_student"], resamples=500).set_index("metric").loc["rho"]
    assert row["n_dropped"] == 4 and row["n_pairs"] == 6  # 2 images x 2 seeds dropped from both
    # The baseline's 0.1 on i0 is gone with its pair: both networks average the same images.
    assert row["baseline_value"] == pytest.approx(0.5) and row["student_value"] == pytest.approx(0.5)
    per_seed = M.seed_differences(frame, ["distilled_student"], resamples=200)
    rho = per_seed[per_seed["metric"] == "rho"]
    assert (rho["n_pairs"] == 3).all() and len(rho) == 2


def test_wilcoxon_is_per_seed():
    per_seed = M.seed_differences(_pairs(1.0), ["distilled_student"], resamples=200)
    n_fg = per_seed[per_seed["metric"] == "n_fg"]
    assert list(n_fg["seed"]) == [0, 1, 2] and (n_fg["n_pairs"] == 10).all()
    assert (n_fg["wilcoxon_p"] < 0.01).all()
    assert per_seed.loc[per_seed["metric"] == "d_std", "wilcoxon_p"].isna().all()


def _no_concept_counts():
    return pd.DataFrame({
        "epoch": [0, 1, 2, 0, 1, 2],
        "image_id": ["p", "p", "p", "z", "z", "z"],
        "n_fg": [1, 3, 3, 0, 0, 0],
        "n_bg": [0, 1, 1, 0, 1, 0],
        "fg_cells": [(1,), (1, 2, 3), (2, 3, 4), (), (), ()],
        "bg_cells": [(), (9,), (9,), (), (8,), ()],
    })


def test_zero_concept_images_kept_by_default_dropped_on_request():
    wd = pd.Series({0: 0.0, 1: 0.5, 2: 2.0})
    keep = M.image_metrics(_no_concept_counts(), wd).set_index("image_id")
    # The authors' argmax: no foreground concept anywhere, so m_hat is the first checkpoint, d = 0.
    assert keep.loc["z", "no_fg_concept"] and not keep.loc["p", "no_fg_concept"]
    assert keep.loc["z", "m_hat"] == 0 and keep.loc["z", "d"] == 0.0
    drop = M.image_metrics(_no_concept_counts(), wd, "drop").set_index("image_id")
    assert np.isnan(drop.loc["z", "d"]) and np.isnan(drop.loc["z", "m_hat"]) and drop.loc["p", "d"] == 0.5
    kept, dropped = (M.aggregate_images(t.reset_index()) for t in (keep, drop))
    assert kept["d_mean"] == pytest.approx(0.25) and dropped["d_mean"] == pytest.approx(0.5)
    assert dropped["d_std"] == 0.0 and kept["no_fg_concept_images"] == dropped["no_fg_concept_images"] == 1
    assert kept["n_fg"] == dropped["n_fg"]  # only D changes
    with pytest.raises(ValueError, match="metrics.zero_concept_images"):
        M.image_metrics(_no_concept_counts(), wd, "ignore")


def test_teacher_reference_is_context_beside_the_student():
    frame = _pairs(0.0, seeds=2, n=4)
    teacher = frame[frame["network"] == "baseline"].assign(network="teacher")
    frame.loc[frame["network"] == "distilled_student", "n_bg"] = 3.0
    frame.loc[frame["network"] == "baseline", "n_bg"] = 1.0
    teacher = teacher.assign(n_bg=4.0)
    table = M.teacher_reference(pd.concat([frame, teacher]), ["distilled_student"], resamples=300)
    row = table.set_index("metric").loc["n_bg"]
    assert list(table["metric"]) == list(M.TEACHER_METRICS) and "verdict" not in table
    assert row["teacher_value"] == 4.0 and row["student_share"] == pytest.approx(0.75)
    assert row["baseline_share"] == pytest.approx(0.25) and row["teacher_minus_baseline"] == 3.0
    assert row["teacher_ci_low"] == row["teacher_ci_high"] == 4.0
    assert M.teacher_reference(frame, ["distilled_student"]).empty  # no teacher rows, no table
