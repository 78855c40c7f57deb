"""The training rules: dry runs of every paper config, and a real run of the training scripts."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from conftest import ROOT, snakemake
from kdconcepts.checkpoints import load_checkpoint

PAPER_CONFIGS = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "config/paper").glob("*.yaml"))


def _jobs(stdout: str) -> dict[str, int]:
    table = stdout.split("Job stats:")[-1]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.M) if m[1] != "total"}


# SPEC section 7 (the authors' code), typed in here from the SPEC, not from the generator:
# (start, end) learning rates per run and family, 150 epochs each.
SPEC7 = {
    "vgg": {"teacher": (1e-3, 1e-4), "baseline": (1e-2, 1e-3), "fc1": (1e-4, 1e-5), "fc2": (1e-3, 1e-4),
            "head": 1e-3},
    "resnet": {"teacher": (1e-2, 1e-3), "baseline": (1e-1, 1e-2), "fc1": (10.0, 0.1), "fc2": (1e-1, 1e-2),
               "head": 1e-2},
}
CHOSEN_CONV = (1e-2, 1e-3)  # no rate in the authors' code: ours, marked (chosen)


def test_paper_configs_follow_the_paper_and_the_authors_code():
    expected = {f"config/paper/{d}_{n}.yaml" for d in ("cub", "voc", "ilsvrc")
                for n in ("alexnet", "vgg11", "vgg16", "vgg19", "resnet50", "resnet101", "resnet152")}
    assert set(PAPER_CONFIGS) == expected
    for path in PAPER_CONFIGS:
        text = (ROOT / path).read_text()
        cfg = yaml.safe_load(text)
        dataset, arch = Path(path).stem.split("_")
        spec = SPEC7["resnet" if arch.startswith("resnet") else "vgg"]
        assert cfg["architecture"] == arch and cfg["dataset"]["name"] == dataset
        assert cfg["dataset"]["root"] == f"data/prepared/{dataset}"
        assert cfg["dataset"]["dvc_stage"] == f"prepare_{dataset}"
        assert cfg["teacher"]["init"] == "imagenet" and cfg["dataset"]["pretrain_root"] is None
        assert cfg["checkpoints"] == [0, 2, 5, 10, 15, 20, 25, 30, 40, 50, 70, 90, 110, 130, 150]
        assert cfg["seeds"] == [0] and cfg["layers"] == ["conv", "fc1", "fc2"]
        teacher, baseline, student = cfg["teacher"]["finetune"], cfg["baseline"], cfg["distilled_student"]
        assert teacher["epochs"] == baseline["epochs"] == student["epochs"] == 150
        assert (teacher["lr_start"], teacher["lr_end"]) == pytest.approx(spec["teacher"]), path
        assert (baseline["lr_start"], baseline["lr_end"]) == pytest.approx(spec["baseline"]), path
        for layer in ("fc1", "fc2"):
            assert (student["lr_start"][layer], student["lr_end"][layer]) == pytest.approx(spec[layer]), (path, layer)
        assert (student["lr_start"]["conv"], student["lr_end"]["conv"]) == pytest.approx(CHOSEN_CONV)
        head = student["head"]
        assert head["epochs"] == 100 and head["lr"] == pytest.approx(spec["head"])
        assert (head["plateau_factor"], head["plateau_patience"]) == (0.3, 10)
        assert cfg["augment"] == ({"hflip": False, "crop_resize": None} if dataset == "cub"
                                  else {"hflip": True, "crop_resize": 256})
        assert cfg["quantify"]["lam"] == (6.0 if arch.startswith("resnet") else 7.0)
        assert cfg["quantify"]["candidates"] == 500 and cfg["metrics"]["effective"] == 50
        # The authors' estimator: every step, K = 96 (no shortcut was measured on these nets).
        assert cfg["quantify"]["stop"] == "full" and cfg["quantify"]["samples"] == 96
        assert "stop: full                 # (authors' code)" in text and "samples: 96                # (authors' code)" in text
        assert cfg["metrics"]["premise_margin"] == 0.1
        assert cfg["resources"]["gpus"] >= 1
        # The marks: the authors' values are marked, and the one chosen rate says so.
        assert text.count("(authors' code)") >= 6 and "conv: 0.01             # (chosen)" in text


def test_generated_configs_are_up_to_date():
    import subprocess
    import sys
    run = subprocess.run([sys.executable, str(ROOT / "config/make_configs.py"), "--check"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def _check_dry_run(run, config):
    assert run.returncode == 0, run.stderr[-3000:]
    cfg = yaml.safe_load((ROOT / config).read_text())
    jobs = _jobs(run.stdout)
    layers = len(cfg["layers"])
    assert jobs["teacher"] == 1 and jobs["baseline"] == 1
    assert jobs["distilled_student"] == layers
    assert "teacher_features" not in jobs  # (the student's job makes the teacher's targets)
    assert jobs["quantify"] == layers
    tree = f"results/{Path(config).stem}"  # (the run is named after its config file)
    assert f"{tree}/seed_0/quantify/{cfg['layers'][0]}/maps.parquet" in run.stdout
    # The declared outputs follow the checkpoint list.
    for epoch in cfg["checkpoints"]:
        assert f"{tree}/seed_0/train/baseline/epoch_{epoch:03d}.pt" in run.stdout
        assert f"{tree}/seed_0/train/{'distilled_student/' + cfg['layers'][0]}/epoch_{epoch:03d}.pt" in run.stdout
    return run


def test_dry_run_with_a_paper_config(repo_copy):
    """One paper config as its own `snakemake -n` process, as a reviewer types it."""
    config = "config/paper/cub_vgg16.yaml"
    _check_dry_run(snakemake(repo_copy, "-n", "--cores", "4", "--configfile", config), config)


@pytest.mark.slow
@pytest.mark.parametrize("config", PAPER_CONFIGS)
def test_dry_run_with_every_paper_config(shipped_dry_runs, config):
    _check_dry_run(shipped_dry_runs[config], config)


def write_prepared(root: Path, n_per_class: dict[str, int], num_classes: int, size: int, seed: int) -> None:
    """A tiny prepared dataset in the format of docs/ARCHITECTURE.md (not via kdconcepts.data)."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rows = ["id,label,class_name,split"]
    for split, per_class in n_per_class.items():
        for label in range(num_classes):
            for k in range(per_class):
                image_id = f"{split}_{label}_{k}"
                image = rng.integers(0, 80, size=(size, size, 3), dtype=np.uint8)
                mask = np.zeros((size, size), dtype=np.uint8)
                mask[4:12, 4:12] = 255
                image[4:12, 4:12, label % 3] = 200
                Image.fromarray(image, "RGB").save(root / "images" / f"{image_id}.png")
                Image.fromarray(mask, "L").save(root / "masks" / f"{image_id}.png")
                rows.append(f"{image_id},{label},class{label},{split}")
    (root / "index.csv").write_text("\n".join(rows) + "\n")
    meta = {"name": root.name, "image_size": size, "num_classes": num_classes,
            "classes": [f"class{i}" for i in range(num_classes)], "mean": [0.2, 0.2, 0.2],
            "std": [0.2, 0.2, 0.2], "foreground": "mask"}
    (root / "meta.json").write_text(json.dumps(meta))


@pytest.mark.slow
def test_training_rules_run_end_to_end(repo_copy):
    write_prepared(repo_copy / "data/tiny/target", {"train": 6, "test": 3}, num_classes=3, size=16, seed=0)
    write_prepared(repo_copy / "data/tiny/pretrain", {"train": 6, "test": 1}, num_classes=4, size=16, seed=1)
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    # The config check wants the DVC stage that makes the data; this one's data was written above.
    dvc = yaml.safe_load((repo_copy / "dvc.yaml").read_text())
    dvc["stages"]["tiny"] = {"cmd": "true", "outs": ["data/tiny/target", "data/tiny/pretrain"]}
    (repo_copy / "dvc.yaml").write_text(yaml.safe_dump(dvc, sort_keys=False))
    cfg["dataset"].update(dvc_stage="tiny", root="data/tiny/target", pretrain_root="data/tiny/pretrain")
    cfg["seeds"] = [0]
    cfg["run"] = "tiny"
    cfg["architectures"] = None  # one tree, results/tiny/ (the shared pre-training runs as rule teacher_pretrain)
    cfg["layers"] = ["conv", "fc2"]
    cfg["threads"] = 1
    cfg["teacher"]["pretrain"].update(epochs=1, batch_size=8)
    cfg["teacher"]["finetune"].update(epochs=1, batch_size=8)
    cfg["distilled_student"].update(epochs=2, batch_size=8)
    cfg["distilled_student"]["head"].update(epochs=1, batch_size=8)
    cfg["baseline"].update(epochs=2, batch_size=8)
    cfg["checkpoints"] = [0, 1, 2]
    (repo_copy / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    targets = ["results/tiny/seed_0/train/baseline/final.pt", "results/tiny/seed_0/train/distilled_student/conv/final.pt",
               "results/tiny/seed_0/train/distilled_student/fc2/final.pt"]
    run = snakemake(repo_copy, *targets, "--cores", "1", "--configfile", "tiny.yaml")
    assert run.returncode == 0, (run.stdout[-3000:], run.stderr[-3000:])
    # One pre-training (rule teacher_pretrain, teacher.shared_pretrain), which the teacher fine-tuned.
    assert json.loads((repo_copy / "results/tiny/pretrain/metrics.json").read_text())["role"] == "pretrain"
    assert json.loads((repo_copy / "results/tiny/seed_0/train/teacher/metrics.json").read_text())["pretrained"] \
        == "results/tiny/pretrain/final.pt"
    train = repo_copy / "results/tiny/seed_0/train"
    assert sorted(p.name for p in (train / "teacher").iterdir()) == [
        "epoch_000.pt", "epoch_001.pt", "final.pt", "metrics.json", "train_log.jsonl", "weight_distance.csv"]
    for folder in (train / "baseline", train / "distilled_student/conv", train / "distilled_student/fc2"):
        names = sorted(p.name for p in folder.iterdir())
        assert names == ["epoch_000.pt", "epoch_001.pt", "epoch_002.pt", "final.pt", "metrics.json",
                         "train_log.jsonl", "weight_distance.csv"], folder
    _, student = load_checkpoint(train / "distilled_student/fc2/epoch_002.pt")
    _, baseline = load_checkpoint(train / "baseline/epoch_002.pt")
    assert student["layer"] == "fc2" and student["role"] == "distilled_student"
    assert len(student["data_hash"]) == 64 and len(student["config_hash"]) == 16
    assert student["data_hash"] == baseline["data_hash"]
    # The teacher's targets were made in the student's job (no augmentation), not cached on disk.
    assert not (repo_copy / "results/tiny/seed_0/features").exists()
    assert "teacher features" in (repo_copy / "logs/results/tiny/seed_0/train/distilled_student/fc2.log").read_text()
    assert set(json.loads((train / "baseline/metrics.json").read_text())) >= {"test_accuracy"}
    assert "Traceback" not in (repo_copy / "logs/results/tiny/seed_0/train/baseline.log").read_text()
    assert (repo_copy / "logs/benchmarks/results/tiny/seed_0/train/baseline.tsv").exists()
    state = torch.load(train / "distilled_student/conv/final.pt", weights_only=True)
    assert state["weight_distance"].keys() == {"conv"}
