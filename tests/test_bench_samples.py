"""The written criterion of benchmarks/bench_samples.py (issue 21) on small hand-made inputs."""

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_samples.py"
_spec = importlib.util.spec_from_file_location("bench_samples", _PATH)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

REFS = ["K96_noise0", "K96_noise10007", "K96_noise20011"]


def _maps(shift=0.0, step=5, cells=((1, 2), (7,))):
    return pd.DataFrame([{"seed": 0, "network": "baseline", "epoch": 0, "image_id": "a",
                          "entropy": np.array([-3.0, -2.0]) + shift, "step": step,
                          "fg_cells": cells[0], "bg_cells": cells[1], "n_fg": len(cells[0]),
                          "n_bg": len(cells[1])}])


def test_map_statistics_compare_the_same_maps():
    stats = bench.map_statistics(_maps(), _maps(shift=0.5, step=6, cells=((1,), ())))
    assert stats["mean_abs_dh"] == pytest.approx(0.5) and stats["same_step"] == 0.0
    assert stats["jaccard"] == pytest.approx(1 / 3) and stats["abs_dn_fg"] == 1 and stats["abs_dn_bg"] == 1
    assert bench.map_statistics(_maps(), _maps())["jaccard"] == 1.0
    with pytest.raises(ValueError, match="same maps"):
        bench.map_statistics(_maps(), _maps().assign(image_id="b"))


def _stats(candidate: dict) -> pd.DataFrame:
    floor = {"mean_abs_dh": 0.003, "same_step": 0.9, "jaccard": 0.8, "abs_dn_fg": 0.5, "abs_dn_bg": 0.4}
    rows = [{"a": a, "b": b, **{k: v * (1 + 0.1 * i) if k not in bench.AGREEMENTS else v * (1 - 0.01 * i)
                                  for k, v in floor.items()}}
            for i, (a, b) in enumerate([(REFS[0], REFS[1]), (REFS[0], REFS[2]), (REFS[1], REFS[2])])]
    rows += [{"a": ref, "b": "K24", **candidate} for ref in REFS]
    return pd.DataFrame(rows)


def _pooled(candidate_difference: float, candidate_verdict: str = "held") -> pd.DataFrame:
    rows = [{"run": run, "metric": "n_fg", "difference": d, "verdict": "held"}
            for run, d in zip(REFS, (10.0, 11.0, 12.0))]
    return pd.DataFrame(rows + [{"run": "K24", "metric": "n_fg", "difference": candidate_difference,
                                 "verdict": candidate_verdict}])


def test_criterion_against_the_noise_floor():
    close = {"mean_abs_dh": 0.0031, "same_step": 0.89, "jaccard": 0.79, "abs_dn_fg": 0.5, "abs_dn_bg": 0.4}
    # The floor is the worst reference pair: 0.003 * 1.2 for distances, 0.9 * 0.98 for agreements.
    row = bench.criterion(_stats(close), _pooled(11.5), REFS, ["K24"]).iloc[0]
    assert row["mean_abs_dh_floor"] == pytest.approx(0.0036) and row["same_step_floor"] == pytest.approx(0.882)
    assert row["equivalent"] and row["n_fg_spread"] == 2.0
    assert row["n_fg_distance"] == pytest.approx((1.5 + 0.5 + 0.5) / 3)
    # One per-map statistic past the floor, a pooled difference out of the spread, or a
    # changed verdict: not equivalent.
    far = close | {"jaccard": 0.5}
    assert not bench.criterion(_stats(far), _pooled(11.5), REFS, ["K24"]).iloc[0]["equivalent"]
    moved = bench.criterion(_stats(close), _pooled(14.5), REFS, ["K24"]).iloc[0]
    assert not moved["n_fg_pass"] and not moved["equivalent"]
    flipped = bench.criterion(_stats(close), _pooled(11.0, "not significant"), REFS, ["K24"]).iloc[0]
    assert flipped["n_fg_pass"] and not flipped["n_fg_verdict_pass"] and not flipped["equivalent"]
