"""The quick real-data configurations (config/quick/): they validate and dry-run, and the
fixture archives drive one of them end to end on the CPU."""

import shutil

import pandas as pd
import pytest
import yaml

from conftest import ROOT, copy_repo, snakemake
from fixtures_real import make_cub_raw

QUICK = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "config/quick").glob("*.yaml"))


def test_there_is_one_quick_config_per_dataset_with_its_marks():
    assert QUICK == [f"config/quick/{d}_vgg11.yaml" for d in ("cub", "ilsvrc", "voc")]
    for path in QUICK:
        text = (ROOT / path).read_text()
        cfg = yaml.safe_load(text)
        assert cfg["architecture"] == "vgg11" and cfg["metrics"]["effective"] == 20
        assert cfg["dataset"]["dvc_stage"].endswith("_quick") and cfg["resources"]["gpus"] == 1
        assert "(chosen)" in text and "(paper)" in text and "(authors' code)" in text
        # The authors' estimator: every step, K = 96 (no shortcut was measured on VGG-11).
        assert cfg["quantify"]["stop"] == "full" and cfg["quantify"]["samples"] == 96


@pytest.mark.parametrize("config", QUICK)
def test_quick_configs_dry_run(shipped_dry_runs, config):
    run = shipped_dry_runs[config]
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    stage = yaml.safe_load((ROOT / config).read_text())["dataset"]["dvc_stage"]
    assert f"data_{stage}" in run.stdout and "quantify" in run.stdout


@pytest.mark.slow
def test_quick_cub_config_runs_end_to_end_on_the_fixture(tmp_path):
    repo = copy_repo(tmp_path / "repo")
    make_cub_raw(repo / "data/raw/cub", n_classes=3, per_class=6)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    # The fixture is not the official archive (no checksum) and has 3 classes, at 32 px.
    params["prepare_cub_quick"].update(classes=None, verify=False, image_size=32)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run = snakemake(repo, "--cores", "2", "--configfile", "config/quick/cub_vgg11.yaml",
                    "tests/overlays/quick_cpu.yaml", timeout=1500)
    assert run.returncode == 0, (run.stdout + run.stderr)[-5000:]
    prepared = repo / "data/prepared/cub_quick"
    assert (prepared / "index.csv").is_file() and len(list((prepared / "images").iterdir())) == 18
    summary = (repo / "results/cub_vgg11/summary.md").read_text()
    assert "## Verdicts" in summary and (repo / "results/cub_vgg11/tables/table.tex").is_file()
    hypotheses = pd.read_csv(repo / "results/cub_vgg11/tables/hypotheses.csv")
    assert set(hypotheses["layer"]) == {"fc1"}
    # Every analysed student is compared with the baseline: the logit student has its rows too.
    assert set(hypotheses["student"]) == {"distilled_student", "logit_student"}
    assert hypotheses.groupby("student").size().to_dict() == {"distilled_student": 7, "logit_student": 7}
    images = pd.read_csv(repo / "results/cub_vgg11/seed_0/tables/images.csv")
    assert set(images["network"]) == {"teacher", "distilled_student", "logit_student", "baseline"}
    weight_distance = repo / "results/cub_vgg11/seed_0/train/logit_student/weight_distance.csv"
    assert weight_distance.is_file() and "Logit student" in (repo / "results/cub_vgg11/tables/table.tex").read_text()
    shutil.rmtree(repo / "data/raw/cub")
