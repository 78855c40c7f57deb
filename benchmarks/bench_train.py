"""Benchmark: training throughput (images/s) of each regime, through the library's own loop.

Not a test: prints images/s per regime (noisy on a shared machine; repeat to judge). Random
images stand in for a dataset (throughput does not depend on pixel values). Each regime runs
``--epochs`` epochs; the first is warm-up, the rest are averaged.

Regimes:
  * ``teacher / baseline (ce)``: cross-entropy, whole network (the teacher's fine-tuning and
    the baseline are the same computation);
  * ``student distill, cached``: MSE to precomputed teacher features; the student runs only up
    to the layer;
  * ``student distill, online``: the same with the teacher's forward pass on every batch (what
    runs when augmentation is on);
  * ``student head``: cross-entropy with the layers up to L frozen.

    PYTHONPATH=src python benchmarks/bench_train.py                      # small_vgg, 32 px, CPU
    PYTHONPATH=src python benchmarks/bench_train.py --arch vgg16 --image-size 224 \\
        --num-classes 200 --images 1280 --device cuda --precision bf16 --channels-last
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch

from kdconcepts.features import extract_features
from kdconcepts.models import build_model, init_student_weights, resolve_layer
from kdconcepts.training import Phase, RunOptions, train_baseline, train_distilled_student


def _split(n: int, num_classes: int, size: int, seed: int) -> SimpleNamespace:
    g = torch.Generator().manual_seed(seed)
    return SimpleNamespace(images=torch.randn(n, 3, size, size, generator=g),
                           labels=torch.randint(0, num_classes, (n,), generator=g),
                           meta={"num_classes": num_classes, "image_size": size})


def _rates(out_dir: Path, phase: str) -> list[float]:
    records = [json.loads(line) for line in (out_dir / "train_log.jsonl").read_text().splitlines()]
    return [r["images_per_s"] for r in records if r["phase"] == phase]


def _steady(rates: list[float]) -> float:
    steady = rates[1:] or rates  # the first epoch warms up allocators and kernels
    return sum(steady) / len(steady)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default="small_vgg")
    parser.add_argument("--layer", default="conv")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--num-classes", type=int, default=8)
    parser.add_argument("--images", type=int, default=640, help="images per epoch")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--channels-last", action="store_true")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    train = _split(args.images, args.num_classes, args.image_size, seed=0)
    test = _split(args.batch_size, args.num_classes, args.image_size, seed=1)
    options = RunOptions(seed=0, device=args.device, precision=args.precision, channels_last=args.channels_last,
                         deterministic=False, progress=False)
    schedule = Phase(args.epochs, args.batch_size, 0.01, 0.001)
    torch.manual_seed(0)
    teacher = init_student_weights(build_model(args.arch, args.num_classes, args.image_size))
    node = resolve_layer(args.arch, args.layer)

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        started = time.perf_counter()
        train_baseline(tmp / "ce", arch=args.arch, train=train, test=test, schedule=schedule, layers=[args.layer],
                       checkpoint_epochs=[], options=options)
        results["teacher / baseline (ce)"] = _steady(_rates(tmp / "ce", "train"))
        feature_started = time.perf_counter()
        features = extract_features(teacher, node, train.images, batch_size=256, device=options.device
                                    if options.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
        results["teacher features (eval)"] = args.images / (time.perf_counter() - feature_started)
        common = dict(arch=args.arch, layer=args.layer, train=train, test=test, schedule=schedule,
                      checkpoint_epochs=[], head_epochs=args.epochs, head_batch_size=args.batch_size, head_lr=0.01,
                      options=options)
        train_distilled_student(tmp / "cached", teacher_features=features, **common)
        results["student distill, cached"] = _steady(_rates(tmp / "cached", "distill"))
        results["student head"] = _steady(_rates(tmp / "cached", "head"))
        train_distilled_student(tmp / "online", teacher=teacher, **{**common, "head_epochs": 0})
        results["student distill, online"] = _steady(_rates(tmp / "online", "distill"))
        total = time.perf_counter() - started

    device = options.device if options.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name() if device.startswith("cuda") else f"cpu x{torch.get_num_threads()} threads"
    print(f"# {args.arch} layer {args.layer} ({node}), {args.image_size} px, batch {args.batch_size}, "
          f"{args.images} images/epoch, {args.epochs} epochs (first is warm-up), {args.precision}"
          f"{', channels_last' if args.channels_last else ''}, {name}; wall {total:.1f} s")
    for regime, rate in results.items():
        print(f"{regime:28s} {rate:10.1f} images/s")


if __name__ == "__main__":
    main()
