"""The six metrics on tiny hand-checked inputs (SPEC sections 3 to 6)."""

import numpy as np
import pandas as pd
import pytest

from scipy import stats

from kdconcepts import metrics as M
from kdconcepts import stats as S


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
    out = M.aggregate_images(M.image_metrics(counts, wd))
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
    out = M.aggregate_images(M.image_metrics(counts, None))
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
    out = M.aggregate_images(M.image_metrics(counts, wd))
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


def _per_seed_differences(frame, metric="n_fg"):
    wide = frame.pivot_table(index=["seed", "image_id"], columns="network", values=metric)
    return (wide["distilled_student"] - wide["baseline"]).groupby("seed").mean().to_numpy()


def test_pooled_verdict_is_the_holm_adjusted_t_test_of_the_per_seed_differences():
    frame = _pairs(1.0, seeds=5)
    held = M.pooled_hypotheses(frame, ["distilled_student"]).set_index("metric")
    d = _per_seed_differences(frame)
    reference = stats.ttest_1samp(d, 0.0)
    row = held.loc["n_fg"]
    assert row["difference"] == pytest.approx(d.mean()) and row["seed_sd"] == pytest.approx(d.std(ddof=1))
    assert row["p_value"] == pytest.approx(reference.pvalue)
    low, high = reference.confidence_interval(0.95)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((low, high))
    assert row["verdict"] == "held" and row["n_seeds"] == 5 and row["n_pairs"] == 50
    tested = held[held["holm_p"].notna()]
    assert set(tested.index) <= {m for m, _, _ in M.HYPOTHESES}  # D_var: beside D_std, not a test
    assert tested["holm_p"].to_numpy() == pytest.approx(S.holm(tested["p_value"]))
    assert held.loc["d_var", "verdict"] == M.BESIDE and np.isnan(held.loc["d_var", "holm_p"])
    assert row["student_ci_low"] <= row["student_value"] <= row["student_ci_high"]
    assert row["mde"] == pytest.approx(S.minimum_detectable_effect(row["seed_sd"], 5, 0.05 / 6))
    reversed_ = M.pooled_hypotheses(_pairs(-1.0, seeds=5), ["distilled_student"]).set_index("metric")
    assert reversed_.loc["n_fg", "verdict"] == "reversed"
    nothing = M.pooled_hypotheses(_pairs(0.0, seeds=5), ["distilled_student"]).set_index("metric")
    assert nothing.loc["n_fg", "verdict"] == "not significant"
    # Identical values in every seed: no spread between seeds, nothing to test.
    assert np.isnan(nothing.loc["d_mean", "p_value"]) and nothing.loc["d_mean", "verdict"] == "not significant"


def test_every_verdict_agrees_with_its_adjusted_p():
    for k in range(20):
        frame = _pairs(0.4 * (k % 5 - 2), seeds=4, n=3, seed=k)
        table = M.pooled_hypotheses(frame, ["distilled_student"])
        tested = table[table["holm_p"].notna()]
        called = tested["verdict"] != "not significant"
        assert (called == (tested["holm_p"] < 0.05)).all()
        sign = np.sign(tested["difference"]) * np.where(tested["direction"] == "up", 1, -1)
        assert (tested.loc[called, "verdict"] == np.where(sign[called] > 0, "held", "reversed")).all()


def test_the_seed_is_the_unit_not_the_image():
    # One seed with a large effect, two without: many image pairs, but three replicates.
    frame = pd.concat([_pairs(3.0, seeds=1, seed=1), _pairs(0.0, seeds=2, seed=2).assign(seed=lambda f: f["seed"] + 1)])
    row = M.pooled_hypotheses(frame, ["distilled_student"]).set_index("metric").loc["n_fg"]
    assert row["difference"] == pytest.approx(1.0, abs=0.3)
    assert row["verdict"] == "not significant" and row["ci_low"] < 0 < row["ci_high"]


def test_verdict_words():
    assert S.verdict(0.3, 0.01, "up") == "held" and S.verdict(-0.3, 0.01, "down") == "held"
    assert S.verdict(-0.3, 0.01, "up") == "reversed" and S.verdict(0.3, 0.2, "up") == "not significant"
    assert S.verdict(0.3, float("nan"), "up") == "not significant"
    assert S.verdict(0.3, 0.05, "up") == "not significant"  # p must be below the level
    with pytest.raises(ValueError, match="direction"):
        S.verdict(0.3, 0.01, "sideways")


def test_holm_adjustment():
    adjusted = S.holm([0.01, 0.04, 0.03, float("nan")])
    assert adjusted[:3] == pytest.approx([0.03, 0.06, 0.06]) and np.isnan(adjusted[3])
    assert S.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_power_and_minimum_detectable_effect_agree():
    mde = S.minimum_detectable_effect(1.0, 6, 0.05)
    assert S.power(mde, 1.0, 6, 0.05) == pytest.approx(0.8)
    assert S.power(0.0, 1.0, 6, 0.05) == pytest.approx(0.05)
    assert S.minimum_detectable_effect(1.0, 12, 0.05) < mde < S.minimum_detectable_effect(1.0, 6, 0.01)
    assert np.isnan(S.minimum_detectable_effect(1.0, 1)) and np.isnan(S.minimum_detectable_effect(0.0, 5))


def test_undefined_pairs_leave_both_networks_and_are_counted():
    frame = _pairs(0.0, seeds=2, n=5)
    undefined = (frame["network"] == "distilled_student") & frame["image_id"].isin(["i0", "i1"])
    frame.loc[undefined, "rho"] = np.nan  # no concept at any checkpoint: rho undefined
    frame.loc[(frame["network"] == "baseline") & (frame["image_id"] == "i0"), "rho"] = 0.1
    row = M.pooled_hypotheses(frame, ["distilled_student"]).set_index("metric").loc["rho"]
    assert row["n_dropped"] == 4 and row["n_pairs"] == 6  # 2 images x 2 seeds dropped from both
    # The baseline's 0.1 on i0 is gone with its pair: both networks average the same images.
    assert row["baseline_value"] == pytest.approx(0.5) and row["student_value"] == pytest.approx(0.5)
    per_seed = M.seed_differences(frame, ["distilled_student"], resamples=200)
    rho = per_seed[per_seed["metric"] == "rho"]
    assert (rho["n_pairs"] == 3).all() and len(rho) == 2


def test_wilcoxon_is_per_seed_and_only_where_it_can_reject():
    per_seed = M.seed_differences(_pairs(1.0), ["distilled_student"], resamples=200)
    n_fg = per_seed[per_seed["metric"] == "n_fg"]
    assert list(n_fg["seed"]) == [0, 1, 2] and (n_fg["n_pairs"] == 10).all()
    assert (n_fg["wilcoxon_p"] < 0.01).all() and (n_fg["wilcoxon_note"] == "").all()
    assert per_seed.loc[per_seed["metric"] == "d_std", "wilcoxon_p"].isna().all()
    # Five pairs: the smallest two-sided p is 2 / 2^5 = 0.0625, so no test is shown.
    few = M.seed_differences(_pairs(1.0, n=5), ["distilled_student"], resamples=200)
    assert few["wilcoxon_p"].isna().all()
    assert (few.loc[few["metric"] == "n_fg", "wilcoxon_note"] == "too few pairs per seed").all()
    assert S.smallest_wilcoxon_p(4) == 0.125 and S.smallest_wilcoxon_p(6) < 0.05


def test_one_random_stream_per_quantity():
    # Adding a network (and so its rows) leaves the other intervals exactly as they were.
    frame = _pairs(0.5)
    logit = frame[frame["network"] == "distilled_student"].assign(network="logit_student")
    alone = M.seed_differences(frame, ["distilled_student"], resamples=300)
    both = M.seed_differences(pd.concat([frame, logit]), ["logit_student", "distilled_student"], resamples=300)
    pd.testing.assert_frame_equal(alone, both[both["student"] == "distilled_student"].reset_index(drop=True))
    # Each (layer, student, metric, seed) has its own generator: different quantities, different draws.
    assert S.stream(0, "conv", "a").random() != S.stream(0, "conv", "b").random()
    assert S.stream(0, "conv", "a").random() == S.stream(0, "conv", "a").random()


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
    table = M.teacher_reference(pd.concat([frame, teacher]), ["distilled_student"])
    row = table.set_index("metric").loc["n_bg"]
    assert list(table["metric"]) == list(M.TEACHER_METRICS) and "verdict" not in table
    assert row["teacher_value"] == 4.0 and row["student_share"] == pytest.approx(0.75)
    assert row["baseline_share"] == pytest.approx(0.25) and row["teacher_minus_baseline"] == 3.0
    assert row["teacher_ci_low"] == row["teacher_ci_high"] == 4.0
    assert M.teacher_reference(frame, ["distilled_student"]).empty  # no teacher rows, no table
