"""The design from measured variance: components recovered from simulated data, power and cost per
design, and benchmarks/design.py on a finished run."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, smoke_reference_run
from kdconcepts import stats
from kdconcepts.design import Costs, design_table, recommend, variance_components


def _images(tau, seeds=40, images=6, within=1.0, between_images=2.0, effect=0.5, seed=0):
    """Per-image rows: image effect shared by both networks, each network's own noise, and a
    student-minus-baseline effect that varies from seed to seed (sd tau)."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(seeds):
        shift = effect + rng.normal(0, tau)
        for i in range(images):
            shared = rng.normal(0, np.sqrt(between_images))
            for network, delta in (("distilled_student", shift), ("baseline", 0.0)):
                value = shared + delta + rng.normal(0, np.sqrt(within))
                rows.append({"seed": s, "layer": "conv", "network": network, "image_id": f"i{i}",
                             "n_fg": value, "n_bg": value, "lambda": value, "d": value, "rho": value})
    return pd.DataFrame(rows)


def test_variance_components_are_recovered():
    table = variance_components(_images(tau=1.0), ["distilled_student"]).set_index("metric")
    n_fg = table.loc["n_fg"]
    assert n_fg["between_seeds"] == pytest.approx(1.0, rel=0.5)
    assert n_fg["between_images"] == pytest.approx(2.0, rel=0.3)
    assert n_fg["within"] == pytest.approx(1.0, rel=0.3)
    assert n_fg["w"] == pytest.approx(2.0, rel=0.3)  # a pair's difference: twice the within
    assert n_fg["effect"] == pytest.approx(0.5, abs=0.6)  # 3 standard errors at 40 seeds
    # tau = 0: the seeds' spread is the images' sampling noise alone.
    assert variance_components(_images(tau=0.0), ["distilled_student"]).set_index("metric") \
        .loc["n_fg", "between_seeds"] < 0.2


def test_more_seeds_buy_more_power_than_more_images_when_the_effect_varies_between_seeds():
    components = variance_components(_images(tau=1.0), ["distilled_student"])
    costs = Costs(fixed=100.0, per_seed=100.0, per_image=25.0)
    table = design_table(components, costs, seeds=range(3, 11), images=range(1, 7))
    n_fg = table[table["metric"] == "n_fg"].set_index(["seeds", "images_per_seed"])
    assert n_fg.loc[(8, 2), "mde"] < n_fg.loc[(3, 6), "mde"] and n_fg.loc[(8, 2), "cpu_s"] <= n_fg.loc[(3, 6), "cpu_s"] * 2
    assert n_fg.loc[(3, 4), "cpu_s"] == costs.of(3, 4) == 100 + 3 * (100 + 4 * 25)
    assert n_fg.loc[(6, 2), "mde"] == pytest.approx(
        stats.minimum_detectable_effect(n_fg.loc[(6, 2), "sd"], 6, stats.ALPHA / 6))
    assert not len(table[(table["metric"] == "d_std") & (table["images_per_seed"] < 2)])  # a spread needs 2
    ranked = recommend(table, (3, 4), budget_cpu_s=costs.of(3, 4) * 1.5)
    assert (ranked["cpu_s"] <= costs.of(3, 4) * 1.5).all() and ranked["mean_mde_ratio"].is_monotonic_increasing
    best = ranked.iloc[0]
    assert best["seeds"] > 3 and best["mean_mde_ratio"] < 1


@pytest.mark.slow
def test_the_design_benchmark_reads_a_finished_run(tmp_path_factory):
    repo, _, ran = smoke_reference_run(tmp_path_factory)
    assert ran.returncode == 0
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks/design.py"), "--run", str(repo),
                          "--seeds", "2", "5", "--images", "2", "4"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "== results/smoke: 2 seeds x 4 images; CPU s: fixed" in run.stdout
    assert "between_seeds" in run.stdout and "recommended: seeds " in run.stdout
