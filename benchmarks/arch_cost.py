"""Cost per image of each default architecture, side by side: how the small ResNet's widths were
chosen (the time budget of issue 21: two architectures in the default's time).

For small_vgg and small_resnet at the widths tried, on one thread of this machine, the process
(CPU) time of one SGD step per training image (batch 32, forward + backward + update, train
mode) and of one quantification pass per image (a forward to the logits and a backward to the
input, batch 384, eval mode: the work of one noisy sample), and each one's ratio to small_vgg.
Medians over ``--repeats`` interleaved rounds.

    PYTHONPATH=src python benchmarks/arch_cost.py
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

import kdconcepts.models as models

WIDTHS = {"32/64/128": ((32, 1), (64, 2), (128, 2)), "24/48/96": ((24, 1), (48, 2), (96, 2)),
          "16/32/64": ((16, 1), (32, 2), (64, 2))}


def _costs(arch: str, steps: int) -> tuple[float, float]:
    """(ms per training image, ms per quantification pass) of a freshly built net."""
    torch.manual_seed(0)
    net = models.build_model(arch, num_classes=8, image_size=32)
    x, y = torch.randn(32, 3, 32, 32), torch.randint(0, 8, (32,))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01)
    net.train()
    for k in range(steps + 2):  # two warm-up steps
        if k == 2:
            started = time.process_time()
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        optimizer.step()
    train = (time.process_time() - started) / steps / len(x)
    net.eval()
    noisy = torch.randn(384, 3, 32, 32, requires_grad=True)
    net(noisy).sum().backward()  # warm-up
    started = time.process_time()
    for _ in range(max(1, steps // 8)):
        net(noisy).sum().backward()
    passes = (time.process_time() - started) / max(1, steps // 8) / len(noisy)
    return 1e3 * train, 1e3 * passes


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=24)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    default = models._SMALL_RESNET_STAGES
    runs: dict[str, list[tuple[float, float]]] = {}
    try:
        for _ in range(args.repeats):
            runs.setdefault("small_vgg", []).append(_costs("small_vgg", args.steps))
            for name, stages in WIDTHS.items():
                models._SMALL_RESNET_STAGES = stages
                runs.setdefault(f"small_resnet {name}", []).append(_costs("small_resnet", args.steps))
    finally:
        models._SMALL_RESNET_STAGES = default
    vgg = [statistics.median(r[i] for r in runs["small_vgg"]) for i in (0, 1)]
    print(f"small_resnet's widths in kdconcepts.models: {'/'.join(str(c) for c, _ in default)}")
    print("| net | train ms/image | ratio | quantify ms/pass | ratio |")
    print("|---|---|---|---|---|")
    for name, rows in runs.items():
        train, passes = (statistics.median(r[i] for r in rows) for i in (0, 1))
        print(f"| {name} | {train:.2f} | {train / vgg[0]:.2f} | {passes:.2f} | {passes / vgg[1]:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
