"""The paper's premise on the embedded data: does the teacher know more than the baseline?

Trains the teacher (pre-training on the extra set, then fine-tuning) and the baseline of a
config, for each seed, on the synthetic sets made from a ``params.yaml``, and prints their
test accuracies on the target set, the gap, the baseline's final training accuracy (did it
converge?) and the training time. No quantification and no hypothesis metric: this is the
study the default's data and schedules were chosen with (docs/DATA.md), using accuracies and
time only.

    PYTHONPATH=src python benchmarks/premise.py --seeds 0 1 2
    PYTHONPATH=src python benchmarks/premise.py --set synthetic.target.train_per_class=30 \\
        --set baseline.epochs=40 --seeds 0 1 2

``--set KEY=VALUE`` overrides a key of the config (``teacher.finetune.epochs=10``) or of the
params file (``synthetic.target.train_per_class=30``); values are YAML. Generated data is
cached under ``--cache`` by the hash of its parameters. A config whose dataset is not the
synthetic one (``config/photos.yaml``) reads its prepared sets (``dataset.root`` and
``dataset.pretrain_root``; ``dvc repro <dataset.dvc_stage>`` first).

    PYTHONPATH=src python benchmarks/premise.py --config config/photos.yaml --seeds 0 1 2

With an architecture axis (config ``architectures``), ``--architecture NAME`` picks one of its
architectures, with its own rates (``config/config.yaml``'s default: ``small_vgg``):

    PYTHONPATH=src python benchmarks/premise.py --architecture small_resnet --seeds 0 1 2

With ``teacher.shared_pretrain`` (the default), the teacher is pre-trained once, with the first
seed, and each seed fine-tunes it, as in the pipeline.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml
from snakemake.utils import update_config  # Snakemake's own merge of --configfile overlays

from kdconcepts.config import architecture_configs
from kdconcepts.data import data_hash, load_split
from kdconcepts.data.synthetic import generate, resolve_params
from kdconcepts.metrics import PREMISE_MARGIN
from kdconcepts.training import (Augment, Phase, RunOptions, pretrain_teacher, train_baseline,
                                 train_distilled_student, train_teacher)


def _override(document: dict, dotted: str, value) -> None:
    node = document
    *parents, last = dotted.split(".")
    for key in parents:
        node = node[key]
    if last not in node:
        raise SystemExit(f"--set: unknown key {dotted}")
    node[last] = value


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=Path("config/config.yaml"))
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--architecture", default=None,
                        help="one of the config's architectures (its own rates); default: `architecture`")
    parser.add_argument("--student", action="store_true",
                        help="also train the distilled student (first layer) and print its test accuracy")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "kdconcepts-premise")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    config = yaml.safe_load(Path("config/config.yaml").read_text())
    if args.config.resolve() != Path("config/config.yaml").resolve():  # an overlay, as --configfile
        update_config(config, yaml.safe_load(args.config.read_text()) or {})
    per_arch = architecture_configs(config)
    arch = args.architecture or config["architecture"]
    if arch not in per_arch:
        raise SystemExit(f"--architecture {arch}: not one of the config's ({', '.join(per_arch)})")
    config = per_arch[arch]
    params = yaml.safe_load(args.params.read_text())
    for item in args.set:
        key, _, raw = item.partition("=")
        _override(params if key.startswith("synthetic.") else config, key, yaml.safe_load(raw))
    if config["dataset"]["name"] == "synthetic":
        synthetic = resolve_params(params["synthetic"])
        tag = hashlib.sha256(json.dumps(synthetic, sort_keys=True).encode()).hexdigest()[:12]
        data = args.cache / tag
        if not (data / "target" / "index.csv").is_file():
            generate(data, synthetic)
        target_root, pretrain_root = data / "target", data / "pretrain"
    else:  # a prepared dataset (its DVC stage made it)
        target_root, pretrain_root = Path(config["dataset"]["root"]), Path(config["dataset"]["pretrain_root"])
        tag = data_hash(target_root)[:12]
    target_train, target_test = load_split(target_root, "train"), load_split(target_root, "test")
    pretrain = load_split(pretrain_root, "train")
    print(f"data {tag}: target train {len(target_train.ids)}, test {len(target_test.ids)}; "
          f"pretrain {len(pretrain.ids)}; architecture {config['architecture']}; overrides {args.set or 'none'}")
    sgd = dict(momentum=config["optimizer"]["momentum"], weight_decay=config["optimizer"]["weight_decay"])
    augment = Augment.from_mapping(config["augment"])
    print("seed  teacher  baseline  gap      baseline_train_acc [last 10 epochs]  teacher_s  baseline_s"
          + ("  distilled_student" if args.student else ""))
    gaps = []
    teacher_cfg = copy.deepcopy(config["teacher"])
    shared = teacher_cfg["shared_pretrain"]
    with tempfile.TemporaryDirectory() as tmp:
        if shared:  # as the pipeline's rule teacher_pretrain: once, with the first seed
            started = time.process_time()
            pretrain_test = load_split(pretrain_root, "test")
            done = pretrain_teacher(
                f"{tmp}/pretrain", arch=config["architecture"], train=pretrain, test=pretrain_test,
                schedule=Phase.from_mapping(teacher_cfg["pretrain"]), augment=augment,
                options=RunOptions(seed=args.seeds[0], device="cpu", progress=False,
                                   config_hash="premise-pretrain", data_hash=tag), **sgd)
            print(f"shared pre-training (seed {args.seeds[0]}): accuracy {done['test_accuracy']:.4f} on "
                  f"the extra data's test split, {time.process_time() - started:.1f} CPU s", flush=True)
        for seed in args.seeds:
            options = RunOptions(seed=seed, device="cpu", progress=False, config_hash=f"premise{seed}",
                                 data_hash=tag)
            started = time.process_time()
            teacher = train_teacher(
                f"{tmp}/teacher{seed}", arch=config["architecture"], train=target_train, test=target_test,
                init="pretrain", pretrain_data=None if shared else pretrain,
                pretrain=None if shared else Phase.from_mapping(teacher_cfg["pretrain"]),
                pretrained=f"{tmp}/pretrain/final.pt" if shared else None,
                finetune=Phase.from_mapping(teacher_cfg["finetune"]), layers=config["layers"],
                checkpoint_epochs=[], augment=augment, options=options, **sgd)
            teacher_s = time.process_time() - started
            started = time.process_time()
            baseline = train_baseline(
                f"{tmp}/baseline{seed}", arch=config["architecture"], train=target_train, test=target_test,
                schedule=Phase.from_mapping(config["baseline"]), layers=config["layers"], checkpoint_epochs=[],
                augment=augment, options=options, **sgd)
            baseline_s = time.process_time() - started
            log = [json.loads(line) for line in
                   Path(f"{tmp}/baseline{seed}/train_log.jsonl").read_text().splitlines()]
            last10 = [row["train_accuracy"] for row in log[-10:]]
            gap = teacher["test_accuracy"] - baseline["test_accuracy"]
            gaps.append(gap)
            student = ""
            if args.student:
                student = f"  {_student(tmp, seed, config, target_train, target_test, augment, options, sgd):.4f}"
            print(f"{seed:>4}  {teacher['test_accuracy']:.4f}   {baseline['test_accuracy']:.4f}    "
                  f"{gap:+.4f}  {last10[-1]:.4f} [{min(last10):.2f}, {max(last10):.2f}]  "
                  f"{teacher_s:7.1f}    {baseline_s:7.1f}{student}", flush=True)
    print(f"smallest gap {min(gaps):+.4f} (premise: >= +{PREMISE_MARGIN:.2f} in every seed, "
          f"metrics.premise_margin); CPU seconds are process time")
    return 0


def _student(tmp, seed, config, train, test, augment, options, sgd) -> float:
    """The distilled student of ``config``'s first layer from the seed's teacher: test accuracy."""
    from kdconcepts.checkpoints import load_checkpoint

    teacher, _ = load_checkpoint(f"{tmp}/teacher{seed}/final.pt")
    section, layer = config["distilled_student"], config["layers"][0]
    head = section["head"]
    done = train_distilled_student(
        f"{tmp}/student{seed}", arch=config["architecture"], layer=layer, train=train, test=test,
        schedule=Phase.from_mapping(section, layer), checkpoint_epochs=[], head_epochs=head["epochs"],
        head_batch_size=head["batch_size"], head_lr=head["lr"], plateau_factor=head["plateau_factor"],
        plateau_patience=head["plateau_patience"], teacher=teacher, augment=augment, options=options, **sgd)
    return done["test_accuracy"]


if __name__ == "__main__":
    sys.exit(main())
