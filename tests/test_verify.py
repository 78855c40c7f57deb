"""kdconcepts verify: a rerun against its reference (issue 34)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import SMOKE, smoke_reference_run, workflow_env
from kdconcepts.metrics import pooled_hypotheses
from kdconcepts.verify import compare_tables, make_reference, verify


def _images(shift, seeds=6, n=3, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(seeds):
        delta = shift + rng.normal(0, 0.3)
        for i in range(n):
            base = rng.normal(5, 1)
            for network, d in (("distilled_student", delta), ("baseline", 0.0)):
                rows.append({"seed": s, "layer": "conv", "network": network, "image_id": f"i{i}",
                             "n_fg": base + d + rng.normal(0, 0.2), "n_bg": base - d, "lambda": 0.5 + 0.01 * d,
                             "d": 1 + 0.1 * base, "rho": 0.5})
    return pd.DataFrame(rows)


def _run(folder: Path, shift=2.0, config=None) -> Path:
    """A finished-run folder: results/<run>/tables/{hypotheses,premise}.csv, host.json, run.json."""
    root = folder / "results/x"
    (root / "tables").mkdir(parents=True)
    pooled_hypotheses(_images(shift), ["distilled_student"]).to_csv(root / "tables/hypotheses.csv", index=False)
    pd.DataFrame({"seed": [0], "teacher": [0.9]}).to_csv(root / "tables/premise.csv", index=False)
    (root / "host.json").write_text(json.dumps({"numerics": "portable", "hosts": []}))
    (root / "run.json").write_text(json.dumps({"run": "x", "config_files": [],
                                               "config": config or {"seeds": [0, 1], "dataset": {"name": "synthetic"}}}))
    return folder


def _verify(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kdconcepts.cli", "verify", *args], cwd=cwd, env=workflow_env(),
                          capture_output=True, text=True, timeout=300)


def test_an_identical_rerun_is_reproduced_and_a_perturbed_difference_is_not(tmp_path):
    repo = _run(tmp_path)
    make_reference(repo / "results/x", repo / "reference/x")
    same = _verify(repo, "x")
    assert same.returncode == 0, same.stdout + same.stderr
    assert "**Reproduced**" in same.stdout and "2 identical" in same.stdout
    assert "Reproduced" in (repo / "results/x/verify.md").read_text()
    # A pooled difference far outside what an independent replicate would give.
    table = pd.read_csv(repo / "results/x/tables/hypotheses.csv")
    row = table.index[table["metric"] == "lambda"][0]
    table.loc[row, "difference"] += 100 * table.loc[row, "seed_sd"]
    table.to_csv(repo / "results/x/tables/hypotheses.csv", index=False)
    moved = _verify(repo, "x")
    assert moved.returncode == 1 and "**Not reproduced**: 1 pooled difference(s) outside" in moved.stdout
    assert "1 different" in moved.stdout
    # Within the replicate tolerance: different numbers, still reproduced.
    table.loc[row, "difference"] -= 100 * table.loc[row, "seed_sd"] - 0.1 * table.loc[row, "seed_sd"]
    table.to_csv(repo / "results/x/tables/hypotheses.csv", index=False)
    assert _verify(repo, "x").returncode == 0


def test_a_flipped_verdict_is_not_reproduced(tmp_path):
    repo = _run(tmp_path)
    make_reference(repo / "results/x", repo / "reference/x")
    table = pd.read_csv(repo / "results/x/tables/hypotheses.csv")
    held = table.index[table["verdict"] == "held"]
    assert len(held)
    table.loc[held[0], "verdict"] = "reversed"
    table.to_csv(repo / "results/x/tables/hypotheses.csv", index=False)
    run = _verify(repo, "x")
    assert run.returncode == 1 and "1 verdict(s) flipped" in run.stdout, run.stdout
    result = verify(repo / "results/x", repo / "reference/x")
    assert (result.verdicts["change"] == "flipped").sum() == 1 and not result.reproduced


def test_a_reference_of_another_config_is_refused_by_name(tmp_path):
    repo = _run(tmp_path)
    other = _run(tmp_path / "other", config={"seeds": [0, 1], "dataset": {"name": "photos"}})
    make_reference(other / "results/x", repo / "reference/photos")
    run_json = json.loads((repo / "reference/photos/run.json").read_text())
    run_json["run"] = "photos"
    (repo / "reference/photos/run.json").write_text(json.dumps(run_json))
    run = _verify(repo, "x", "--reference", "reference/photos")
    assert run.returncode == 2
    assert "reference/photos is the reference of run 'photos'" in run.stderr and "dataset.name" in run.stderr
    assert not (repo / "results/x/verify.md").exists()


def test_two_trees_are_compared_each_on_its_own_rows_and_the_stacked_table_once(tmp_path):
    """With an architecture axis the run's stacked hypotheses.csv repeats the trees' rows: each
    difference is compared once, with its own tree's, and counted once in the Bonferroni m."""
    repo = _run(tmp_path)
    root = repo / "results/x"
    trees = {"small_vgg": pooled_hypotheses(_images(2.0, seed=1), ["distilled_student"]),
             "small_resnet": pooled_hypotheses(_images(-1.0, seed=2), ["distilled_student"])}
    for arch, table in trees.items():
        (root / arch / "tables").mkdir(parents=True)
        table.to_csv(root / arch / "tables/hypotheses.csv", index=False)
    pd.concat([t.assign(architecture=a) for a, t in trees.items()]).to_csv(root / "tables/hypotheses.csv", index=False)
    make_reference(root, repo / "reference/x")
    table = trees["small_resnet"].copy()
    row = table.index[table["metric"] == "n_fg"][0]
    table.loc[row, "difference"] += 100 * table.loc[row, "seed_sd"]
    table.to_csv(root / "small_resnet/tables/hypotheses.csv", index=False)
    result = verify(root, repo / "reference/x")
    assert len(result.differences) == 2 * len(trees["small_vgg"])  # once per tree, none from the stack
    assert set(result.differences["tree"]) == {"small_vgg", "small_resnet"}
    outside = result.differences[~result.differences["within"]]
    assert list(zip(outside["tree"], outside["metric"])) == [("small_resnet", "n_fg")]


def test_tables_are_identical_equal_within_tolerance_or_different():
    a = pd.DataFrame({"x": [1.0, 2.0], "y": ["a", "b"]})
    assert compare_tables(a, a.copy())[0] == "identical"
    assert compare_tables(a, a.assign(x=[1.0, 2.0 + 1e-12]))[0] == "equal within tolerance"
    state, detail = compare_tables(a, a.assign(x=[1.0, 2.5]))
    assert state == "different" and "1 numbers outside tolerance (largest |difference| 0.5)" in detail
    assert compare_tables(a, a.assign(y=["a", "c"]))[0] == "different"


@pytest.mark.slow
def test_the_smoke_run_against_its_own_reference_is_identical(tmp_path_factory, tmp_path):
    reference, _, ran = smoke_reference_run(tmp_path_factory)
    assert ran.returncode == 0
    repo = Path(shutil.copytree(reference, tmp_path / "repo", symlinks=True))
    made = subprocess.run([sys.executable, "-m", "kdconcepts.cli", "reference", "smoke"], cwd=repo,
                          env=workflow_env(), capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr
    assert (repo / "reference/smoke/tables/hypotheses.csv").is_file() and (repo / "reference/smoke/host.json").is_file()
    assert not list((repo / "reference/smoke").rglob("*.parquet"))  # the small CSVs only
    run = _verify(repo, "smoke")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "**Reproduced**" in run.stdout and "different" not in run.stdout.split("Verdicts:")[0]
    assert SMOKE  # (the run's config: tests/configs/smoke.yaml)
