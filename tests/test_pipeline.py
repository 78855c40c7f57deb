"""The Snakemake DAG: dry runs, bad config, and the whole smoke pipeline end to end."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from conftest import ROOT, SMOKE, smoke_reference_run, snakemake
from kdconcepts.report import METRIC_LABELS


def _jobs(dry_run_stdout: str) -> dict[str, int]:
    """Rule -> job count from a dry run's job-stats table."""
    table = dry_run_stdout.split("Job stats:")[-1]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.M) if m[1] != "total"}


def test_default_dag_dry_run(repo_copy):
    run = snakemake(repo_copy, "-n", "--cores", "2")
    assert run.returncode == 0, run.stderr[-3000:]
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    jobs = _jobs(run.stdout)
    seeds, layers = len(cfg["seeds"]), len(cfg["layers"])
    trees = len(cfg["architectures"])  # the default's architecture axis: one tree each
    assert trees == 2 and cfg["teacher"]["shared_pretrain"]
    # One quantify job per seed and layer: every map it needs, its rounds and chosen images.
    assert jobs["quantify"] == trees * seeds * layers
    assert "results/default/small_vgg/seed_0/quantify/conv/maps.parquet" in run.stdout
    assert jobs["teacher_pretrain"] == trees  # one pre-training per tree, for every seed
    for rule in ("teacher", "distilled_student", "baseline", "metrics"):
        assert jobs[rule] == trees * seeds * (layers if rule == "distilled_student" else 1), rule
    for rule in ("pool", "summary"):  # (summary: the tree's table.tex and summary.md)
        assert jobs[rule] == trees, rule
    assert jobs["figures"] == trees * layers
    assert jobs["data_synthetic"] == jobs["all"] == jobs["architectures"] == 1
    assert "report_front" not in jobs  # (an axis has one front page, made by `architectures`)
    for arch in cfg["architectures"]:
        assert f"results/default/{arch}/seed_2/train/teacher/final.pt" in run.stdout
        assert f"results/default/{arch}/pretrain/final.pt" in run.stdout
    # The order on a few cores (workflow/rules/common.smk, PRIORITY): the longest remaining
    # chain first, so every training job before any quantification it does not wait for.
    priority = _priorities(run.stdout)
    assert priority["teacher_pretrain"] > priority["teacher"] > priority["distilled_student"] \
        > priority["baseline"] > priority["quantify"] > priority["metrics"] == 0, priority


def _priorities(dry_run_stdout: str) -> dict[str, int]:
    """Rule -> the priority its jobs print in a dry run (0 when they print none), one value per rule."""
    found: dict[str, set[int]] = {}
    for block in re.split(r"^\[.*\]$", dry_run_stdout, flags=re.M):
        rule = re.search(r"^(?:local)?(?:rule|checkpoint) (\w+):", block, re.M)
        if rule:
            level = re.search(r"^\s+priority: (\d+)$", block, re.M)
            found.setdefault(rule[1], set()).add(int(level[1]) if level else 0)
    assert all(len(levels) == 1 for levels in found.values()), found
    return {rule: levels.pop() for rule, levels in found.items()}


def test_bad_config_stops_before_any_job(repo_copy):
    cfg = yaml.safe_load((repo_copy / SMOKE).read_text())
    cfg["quantify"]["stepz"] = 5
    cfg["seeds"] = "zero"
    cfg["metrics"]["zero_concept_images"] = "ignore"
    (repo_copy / "bad.yaml").write_text(yaml.safe_dump(cfg))
    run = snakemake(repo_copy, "--cores", "1", "--configfile", "bad.yaml")
    assert run.returncode != 0
    err = run.stderr + run.stdout
    assert "Invalid configuration" in err
    assert "quantify.stepz" in err and "boost_after" in err     # names key and allowed keys
    assert "seeds = 'zero' has the wrong type" in err
    assert "metrics.zero_concept_images" in err and "ignore" in err
    assert not (repo_copy / "results").exists()


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    return smoke_reference_run(tmp_path_factory)


@pytest.mark.slow
def test_interrupted_run_leaves_no_finished_outputs(smoke):
    repo, interrupted, completed = smoke
    output = interrupted["output"]
    # The first training job (teacher or baseline: they do not depend on each other) stood at
    # the barrier after its first epoch, with its resume state saved ...
    assert interrupted["reached"] in ("teacher finetune 1", "baseline train 1"), output[-3000:]
    assert interrupted["resume_saved"]
    # ... Snakemake received the Ctrl-C and cancelled the run ...
    assert interrupted["returncode"] != 0, output[-3000:]
    assert "Terminating processes on user request" in output, output[-3000:]
    assert "KeyboardInterrupt" in interrupted["job_log"]
    # ... none of that job's end-of-run outputs exists (epoch checkpoints written before the
    # signal are whole files, which Snakemake flags as incomplete), its resume state is kept ...
    assert not {"final.pt", "metrics.json", "weight_distance.csv", "train_log.jsonl"} & set(interrupted["left"])
    assert ".resume.pt" in interrupted["left"]
    # ... and the next run (with --rerun-incomplete, as `make reproduce`) resumed and finished.
    assert completed.returncode == 0, (completed.stdout + completed.stderr)[-6000:]
    role = interrupted["reached"].split(" ")[0]
    resumed = "".join(p.read_text() for p in repo.glob(f"logs/**/train/{role}.log"))
    assert f"resuming {role} from phase" in resumed


@pytest.mark.slow
def test_smoke_pipeline_end_to_end(smoke, tmp_path):
    reference, _, run = smoke
    assert run.returncode == 0, (run.stdout + run.stderr)[-6000:]
    # The shared run stays as it is (other tests, maybe in another worker, copy it): the dry
    # runs and the report below work in a copy (copy2 keeps the times Snakemake compares).
    repo_copy = shutil.copytree(reference, tmp_path / "repo", symlinks=True)
    results = repo_copy / "results/smoke"

    # Per seed: the six metrics of every network, the per-image rows they average, the verdicts.
    for seed in (0, 1):
        metrics = pd.read_csv(results / f"seed_{seed}/tables/metrics.csv")
        assert set(metrics["network"]) == {"teacher", "distilled_student", "baseline"}
        assert (metrics["n_fg"] >= 0).all() and metrics["lambda"].between(0, 1).all()
        assert metrics["test_accuracy"].between(0, 1).all()
        analysed = metrics[metrics["network"] != "teacher"]
        assert analysed["rho_all"].dropna().between(0, 1).all() and (analysed["d_mean"] >= 0).all()
        assert (analysed["d_var"] - analysed["d_std"] ** 2).abs().max() < 1e-9
        images = pd.read_csv(results / f"seed_{seed}/tables/images.csv")
        for row in metrics.itertuples():  # every network number is the mean of its image rows
            rows = images[(images["layer"] == row.layer) & (images["network"] == row.network)]
            assert row.n_fg == pytest.approx(rows["n_fg"].mean()) and row.n_images == len(rows)
        hypotheses = pd.read_csv(results / f"seed_{seed}/tables/hypotheses.csv")
        assert len(hypotheses) == 6 and hypotheses["paper_direction"].dtype == bool and "held" not in hypotheses
        per_image = pd.read_csv(results / f"seed_{seed}/tables/per_image.csv")
        assert per_image["h_bar"].notna().all() and "target_reached" in per_image

    # Pooled over the two seeds: one row per metric, with its interval and verdict.
    pooled = pd.read_csv(results / "tables/hypotheses.csv")
    assert set(pooled["metric"]) == {"n_fg", "n_bg", "lambda", "d_mean", "d_std", "d_var", "rho"}
    assert (pooled["n_seeds"] == 2).all()
    assert set(pooled["verdict"]) <= {"held", "not significant", "reversed", "beside D_std"}
    spread = pooled[pooled["ci_low"].notna()]  # (a metric with no spread between seeds has no interval)
    assert (spread["ci_low"] <= spread["difference"]).all() and (spread["difference"] <= spread["ci_high"]).all()
    premise = pd.read_csv(results / "tables/premise.csv")
    assert list(premise["seed"]) == [0, 1] and {"teacher", "baseline", "teacher_minus_baseline"} <= set(premise)
    # The premise with its margin (metrics.premise_margin): "held" only with a lead of 0.1 in
    # every seed. The smoke nets are barely trained, so here it is not held, and said so.
    assert (premise["premise_margin"] == 0.1).all()
    assert (premise["premise_held"] == (premise["teacher_minus_baseline"] >= 0.1 - 1e-9)).all()
    summary = (results / "summary.md").read_text()
    assert "## Premise" in summary and "## Verdicts" in summary and "sample_passes" in summary
    held = bool(premise["premise_held"].all())
    assert ("\nHeld: " in summary) == held and ("**Not held**: " in summary) == (not held)
    assert "premise (the teacher leads by at least 0.10 in every seed): " + ("held" if held else "not held") in summary
    assert "snakemake --cores all --configfile tests/configs/smoke.yaml" in summary
    work = pd.read_csv(results / "tables/work.csv")
    assert (work.loc[work["network"] != "sigma_f check", "sample_passes"] > 0).all()
    assert {"teacher", "distilled_student", "baseline", "sigma_f check"} == set(work["network"])

    # The seed is the unit: the t-test's p and its Holm adjustment decide the verdict; pairs
    # undefined for one network are dropped from both and counted; Wilcoxon per seed only, and
    # not with 4 pairs a seed (it cannot reject at 0.05).
    assert {"p_value", "holm_p", "mde", "seed_sd", "n_pairs", "n_dropped"} <= set(pooled) and "wilcoxon_p" not in pooled
    tested = pooled[pooled["holm_p"].notna()]
    assert (tested["holm_p"] >= tested["p_value"]).all()
    assert ((tested["verdict"] != "not significant") == (tested["holm_p"] < 0.05)).all()
    assert (pooled["n_pairs"] + pooled["n_dropped"] == 8).all()  # 2 seeds x 4 evaluated images
    differences = pd.read_csv(results / "tables/differences.csv")
    assert differences["wilcoxon_p"].isna().all() and "too few pairs per seed" in summary
    # The teacher beside the students: context rows, the table's row, the summary's sentences.
    teacher = pd.read_csv(results / "tables/teacher.csv")
    assert list(teacher["metric"]) == ["n_fg", "n_bg", "lambda"] and "verdict" not in teacher
    assert "## The teacher beside the students" in summary and "of the teacher's foreground concepts" in summary
    assert "images without a foreground concept" in summary and "zero_concept_images: keep" in summary

    tex = (results / "tables/table.tex").read_text()
    assert "Distilled student" in tex and "toprule" in tex and "Premise" in tex
    assert "Teacher (context)" in tex
    for fig in ("entropy_maps", "concepts_vs_distance", "differences"):
        assert (results / f"figures/conv/{fig}.png").stat().st_size > 5000
    for log in ("logs/results/smoke/seed_0/metrics.log", "logs/benchmarks/results/smoke/seed_0/metrics.tsv"):
        assert (repo_copy / log).exists(), log

    if shutil.which("pdflatex"):
        shutil.copy(results / "tables/table.tex", tmp_path / "table.tex")
        doc = tmp_path / "doc.tex"
        doc.write_text("\\documentclass{article}\\usepackage{booktabs}\\begin{document}"
                       "\\input{table.tex}\\end{document}\n")
        latex = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"],
                               cwd=doc.parent, capture_output=True, text=True, timeout=120)
        assert latex.returncode == 0, latex.stdout[-2000:]

    # Nothing changed: nothing to do.
    again = snakemake(repo_copy, "-n", "--cores", "2", "--configfile", SMOKE)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr, again.stdout[-3000:]

    # A figure-only setting reruns the figures and nothing upstream.
    cfg = yaml.safe_load((repo_copy / SMOKE).read_text())
    cfg["report"]["dpi"] = 72
    (tmp_path / "fig.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    changed = snakemake(repo_copy, "-n", "--cores", "2", "--configfile", str(tmp_path / "fig.yaml"))
    assert changed.returncode == 0, changed.stderr[-3000:]
    # (summary.md and run.json name the command and its config files, and this one is another file.)
    assert set(_jobs(changed.stdout)) == {"figures", "report_front", "summary", "host", "all"}

    # Another seed: only that seed's jobs and the pooled ones.
    cfg = yaml.safe_load((repo_copy / SMOKE).read_text())
    cfg["seeds"] = [0, 1, 2]
    (tmp_path / "seeds.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    more = snakemake(repo_copy, "-n", "--cores", "2", "--configfile", str(tmp_path / "seeds.yaml"))
    assert more.returncode == 0, more.stderr[-3000:]
    outputs = re.findall(r"^\s+output: (.+)$", more.stdout, flags=re.M)
    per_seed = [o for o in outputs if "/seed_" in o]
    assert per_seed and all("/seed_2/" in o for o in per_seed), per_seed

    # A device this machine lacks is refused before any job, so no trained network is lost
    # (its changed value would otherwise rerun training, which deletes the old outputs first).
    if not torch.cuda.is_available():
        cfg = yaml.safe_load((repo_copy / SMOKE).read_text())
        cfg["device"] = "cuda"
        (tmp_path / "cuda.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        trained = {p: p.stat().st_mtime_ns for p in results.glob("seed_*/train/**/*") if p.is_file()}
        refused = snakemake(repo_copy, "--cores", "2", "--configfile", str(tmp_path / "cuda.yaml"))
        assert refused.returncode != 0
        assert "device: device 'cuda' is not on this machine, which has no CUDA device" in refused.stderr
        assert "localrule " not in refused.stderr and "Finished jobid" not in refused.stderr  # no job ran
        assert trained and {p: p.stat().st_mtime_ns for p in results.glob("seed_*/train/**/*")
                            if p.is_file()} == trained

    report = snakemake(repo_copy, "--configfile", SMOKE, "--report", str(tmp_path / "report.html"))
    assert report.returncode == 0, report.stderr[-3000:]
    html = (tmp_path / "report.html").read_text(errors="replace")
    assert "concepts_vs_distance" in html and "entropy_maps" in html and "differences" in html
    # The front page opens on the answer (rule report_front): the premise line, then the verdict
    # table, then the forest plot, before the workflow's description; one row per pooled verdict.
    front = json.loads(re.search(r'workflow_desc = ("(?:[^"\\]|\\.)*")', html)[1])
    assert front.index("Premise") < front.index('class="dataframe verdicts"') < front.index(
        "data:image/png;base64") < front.index("kdconcepts reproduces")
    assert '<h1 class="title">Results: smoke</h1>' in front and "System Message" not in front
    shown = re.findall(r"<tr>\s*<td>([^<]*)</td>\s*<td>([^<]*)</td>", front)
    assert sorted(shown) == sorted((f"{METRIC_LABELS[r.metric]} ({r.direction})", r.verdict)
                                   for r in pooled.itertuples())
    assert summary.startswith("# Results: smoke\n")


@pytest.mark.slow
def test_architecture_axis_end_to_end(smoke, tmp_path):
    """Two architectures (tests/overlays/two_architectures.yaml on the smoke config): a tree each,
    with its own rates, then one table, forest plot and summary with a block per architecture; a
    second run has nothing to do.

    In a copy of the smoke run without its results tree: small_vgg's seed 0 networks are the
    smoke run's (the shared store, results/.store/, gives them back without training; the
    suite's time), small_resnet's are trained."""
    reference, _, ran = smoke
    assert ran.returncode == 0
    repo = Path(shutil.copytree(reference, tmp_path / "repo", symlinks=True))
    shutil.rmtree(repo / "results/smoke")
    shutil.rmtree(repo / "logs/results/smoke")
    overlays = ("--configfile", SMOKE, "tests/overlays/two_architectures.yaml")
    run = snakemake(repo, "--cores", "2", *overlays, timeout=1500)
    assert run.returncode == 0, (run.stdout + run.stderr)[-6000:]
    for arch, restored in (("small_vgg", True), ("small_resnet", False)):
        log = (repo / f"logs/results/smoke/{arch}/seed_0/train/baseline.log").read_text()
        assert ("restored from the store" in log) == restored, log[-2000:]
    for arch in ("small_vgg", "small_resnet"):
        tree = repo / "results/smoke" / arch
        teacher = json.loads((tree / "seed_0/train/teacher/metrics.json").read_text())
        assert teacher["arch"] == arch
        baseline = torch.load(tree / "seed_0/train/baseline/final.pt", weights_only=True)
        assert baseline["arch"] == arch
        rates = [json.loads(line)["lr"] for line in (tree / "seed_0/train/baseline/train_log.jsonl").read_text().splitlines()]
        assert rates[0] == pytest.approx(0.1 if arch == "small_resnet" else 0.01)  # its own rates
        assert (tree / "summary.md").read_text().startswith(f"# Results: smoke/{arch}\n")
        assert pd.read_csv(tree / "seed_0/tables/metrics.csv")["architecture"].eq(arch).all()
    hypotheses = pd.read_csv(repo / "results/smoke/tables/hypotheses.csv")
    assert list(dict.fromkeys(hypotheses["architecture"])) == ["small_vgg", "small_resnet"]
    assert hypotheses.groupby("architecture").size().to_dict() == {"small_vgg": 7, "small_resnet": 7}
    for arch in ("small_vgg", "small_resnet"):  # the stacked rows are the tree's own
        own = pd.read_csv(repo / f"results/smoke/{arch}/tables/hypotheses.csv")
        stacked = hypotheses[hypotheses["architecture"] == arch].drop(columns="architecture").reset_index(drop=True)
        pd.testing.assert_frame_equal(stacked, own)
    premise = pd.read_csv(repo / "results/smoke/tables/premise.csv")
    assert list(premise["architecture"]) == ["small_vgg", "small_resnet"]
    tex = (repo / "results/smoke/tables/table.tex").read_text()
    assert tex.count("Distilled student") == 2 and "small\\_vgg (synthetic), conv" in tex \
        and "small\\_resnet (synthetic), conv" in tex
    summary = (repo / "results/smoke/summary.md").read_text()
    assert summary.startswith("# Results: 2 architectures\n") and "| architecture | layer |" in summary
    assert "## small_vgg (`results/smoke/small_vgg/summary.md`)" in summary and "## small_resnet (" in summary
    assert "--configfile tests/configs/smoke.yaml --configfile tests/overlays/two_architectures.yaml" in summary
    assert (repo / "results/smoke/figures/conv/differences.png").stat().st_size > 10000
    assert "small_resnet" in (repo / "results/smoke/report_front.rst").read_text()
    again = snakemake(repo, "-n", "--cores", "2", *overlays)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr, again.stdout[-3000:]


@pytest.mark.parametrize("config", ["config/extended.yaml", "config/photos.yaml",
                                    "config/ablation/background_bias.yaml"])
def test_the_other_shipped_configs_dry_run_into_their_own_run(shipped_dry_runs, config):
    run = shipped_dry_runs[config]
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    name = Path(config).stem
    outputs = re.findall(r"^\s+output: (.+)$", run.stdout, flags=re.M)
    written = [o for line in outputs for o in line.split(", ") if o.startswith("results/")]
    assert written and all(o.startswith(f"results/{name}/") for o in written), written[:5]


@pytest.mark.slow
def test_two_configs_in_one_folder_keep_their_own_cached_trees(smoke, tmp_path):
    """Another config in the same clone writes results/<its run>/ only: the first run's tree is
    left as it was (every file, its bytes and time), and both stay cached."""
    reference, _, ran = smoke
    assert ran.returncode == 0
    repo = Path(shutil.copytree(reference, tmp_path / "repo", symlinks=True))
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (repo / "results/smoke").rglob("*") if p.is_file()}
    other = yaml.safe_load((repo / SMOKE).read_text())
    other.pop("run")  # named after its file: results/one_seed_smoke/
    other["seeds"] = [0]
    (repo / "one_seed_smoke.yaml").write_text(yaml.safe_dump(other, sort_keys=False))
    run = snakemake(repo, "--cores", "2", "--configfile", "one_seed_smoke.yaml")
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    assert (repo / "results/one_seed_smoke/summary.md").is_file()
    after = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (repo / "results/smoke").rglob("*") if p.is_file()}
    assert after == before
    for config in (SMOKE, "one_seed_smoke.yaml"):
        again = snakemake(repo, "-n", "--cores", "2", "--configfile", config)
        assert "Nothing to be done" in again.stdout + again.stderr, (config, again.stdout[-2000:])
