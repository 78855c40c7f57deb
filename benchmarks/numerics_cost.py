"""What the portable pins cost, and what channels_last wins back, on this host's CPU.

Each variant runs in its own process (the pins must be set before torch starts): a few SGD steps
of both small nets at batch 64 (training), and one sigma map's worth of steps at K = 96 noise
samples (quantification), one thread. Prints each variant's CPU seconds (user + system of the
child), the median over ``--repeats`` alternating rounds, and the ratio to native without
channels_last.

Example:
    python benchmarks/numerics_cost.py --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys


def work(steps: int, sigma_steps: int, channels_last: bool) -> dict:
    import time

    import torch

    from kdconcepts.models import build_model, resolve_layer
    from kdconcepts.quantify import SigmaConfig, estimate_sigma

    torch.set_num_threads(1)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(64, 3, 32, 32, generator=generator).contiguous(memory_format=fmt)
    labels = torch.randint(0, 8, (64,), generator=generator)
    times = {}
    for arch in ("small_vgg", "small_resnet"):
        torch.manual_seed(0)
        model = build_model(arch, num_classes=8, image_size=32).to(memory_format=fmt)
        optimiser = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        start = time.process_time()
        for _ in range(steps):
            optimiser.zero_grad()
            torch.nn.functional.cross_entropy(model(images), labels).backward()
            optimiser.step()
        times[f"train_{arch}"] = time.process_time() - start
        cfg = SigmaConfig(steps=sigma_steps, boost_after=sigma_steps - 1, samples=96, stop="full")
        start = time.process_time()
        estimate_sigma(model.eval(), resolve_layer(arch, "conv"), images[:1].contiguous(), cfg, seed=0,
                       image_keys=["x"], device="cpu", channels_last=channels_last)
        times[f"sigma_{arch}"] = time.process_time() - start
    return times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--sigma-steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(work(args.steps, args.sigma_steps, args.child == "channels_last")))
        return 0
    from kdconcepts.numerics import apply

    variants = [(n, cl) for n in ("native", "portable") for cl in ("contiguous", "channels_last")]
    seconds = {v: [] for v in variants}
    parts = {v: [] for v in variants}
    for _ in range(args.repeats):
        for numerics, layout in variants:
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            done = subprocess.run([sys.executable, __file__, "--child", layout, "--steps", str(args.steps),
                                   "--sigma-steps", str(args.sigma_steps)], env=apply(numerics, dict(os.environ)),
                                  capture_output=True, text=True, check=True)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            seconds[(numerics, layout)].append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
            parts[(numerics, layout)].append(json.loads(done.stdout.strip().splitlines()[-1]))
    base = statistics.median(seconds[("native", "contiguous")])
    print(f"{'numerics':<9} {'layout':<14} {'CPU s (median)':>14} {'ratio':>6}   parts (median CPU s)")
    for variant in variants:
        median = statistics.median(seconds[variant])
        keys = parts[variant][0].keys()
        detail = ", ".join(f"{k} {statistics.median(p[k] for p in parts[variant]):.2f}" for k in keys)
        print(f"{variant[0]:<9} {variant[1]:<14} {median:>14.2f} {median / base:>6.2f}   {detail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
