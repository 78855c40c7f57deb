"""Benchmark: the batched sigma engine against the authors' per-image loop.

Not a test: prints timings and ratios (noisy on a shared machine; repeat to judge).
Times are process CPU seconds (all threads; robust when other jobs share the cores)
and wall seconds; ratios use CPU time.

For each network it runs the same images, layer, seed and settings through
  * ``loop``: the authors' structure (one image at a time, K noise samples a step, model
    truncated at the layer as their ``get_feature``, parameters left requiring grad,
    ``loss.backward()``, 60 steps, 80 when lambda is boosted, plus the sigma_f forward);
  * ``engine``: :func:`kdconcepts.quantify.estimate_sigma` (fp32 and bf16 autocast),
and prints the wall time of each, the speed ratio, how many images got the identical
selected step and sigma (fp32: rtol 1e-4), and the time of one engine step against the
floor: one plain fp32 forward+backward (parameters requiring grad, the way a training
step does it) of the truncated model at the same batch of rows. Caution: on a CPU a
plain pass over B x K rows runs slower per row than over K rows (cache), so "x floor"
flatters the engine; the loop step (K rows) is the fairer per-row yardstick.

    PYTHONPATH=src python benchmarks/bench_quantify.py --nets small --images 4
    PYTHONPATH=src python benchmarks/bench_quantify.py --nets vgg16 --size 32 --images 2
    PYTHONPATH=src python benchmarks/bench_quantify.py --nets vgg16 --images 1 \\
        --steps-only --repeats 1  # VGG-16 at 224 px: one step each, full runs too slow

With ``--loop-steps N`` the loop runs only N steps per image and its full-run time is
extrapolated from the engine's own count of steps (answers are then not compared).
``--engine-only`` prints only the engine's cost per image-checkpoint (e.g. ``--nets small
--images 24 --precisions fp32``: the default pipeline's candidates).
``--steps-only`` times one loop step, one engine step and the floor, and estimates the
full-run ratio from them.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kdconcepts.quantify import SigmaConfig, estimate_sigma
from kdconcepts.quantify.engine import (CPU_CHUNK_BYTES, _Engine, _feature_gradient,
                                        noise_generator, truncated_model)


def small_vgg(num_classes: int = 8) -> tuple[nn.Module, str, int]:
    """The default pipeline net (registry's small_vgg when available), layer, image size."""
    try:
        from kdconcepts.models import build_model, resolve_layer
        return build_model("small_vgg", num_classes, 32), resolve_layer("small_vgg", "conv"), 32
    except Exception:  # registry not there yet: a stand-in of the same shape
        torch.manual_seed(0)

        def block(c_in, c_out):
            return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]

        features = nn.Sequential(*block(3, 32), *block(32, 32), nn.MaxPool2d(2),
                                 *block(32, 64), *block(64, 64), nn.MaxPool2d(2),
                                 nn.Conv2d(64, 128, 3, padding=1))
        model = nn.Sequential()
        model.add_module("features", features)
        model.add_module("head", nn.Sequential(nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                               nn.Linear(128, 256), nn.ReLU(),
                                               nn.Linear(256, num_classes)))
        for m in model.modules():  # non-trivial BN statistics, as after training
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
        return model.eval(), "features.12", 32


def vgg16() -> tuple[nn.Module, str, int]:
    import torchvision
    torch.manual_seed(0)
    return torchvision.models.vgg16(weights=None).eval(), "features.28", 224


def make_images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """Smooth random images, roughly normalised."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand((n, 3, size // 4, size // 4), generator=generator)
    return (F.interpolate(coarse, size=(size, size), mode="bilinear") - 0.5) / 0.25


def loop_one_image(model, layer, image, cfg, generator, max_steps=None):
    """The authors' per-image loop; returns (selected step, sigma, steps run)."""
    extractor = truncated_model(model, layer, fold_batchnorm=False, relu_in_place=False)
    extractor.requires_grad_(True)  # as in their code: weight gradients computed too
    grid = cfg.grid
    image = image[None]
    shape = (cfg.samples, *image.shape[1:])
    feature = lambda z: F.relu(extractor(z))  # noqa: E731
    device = image.device  # the generator must live there too (CPU or CUDA)
    with torch.no_grad():
        sigma0 = torch.full((1, 1, grid, grid), cfg.sigma_init, device=device)
        noisy = image + F.interpolate(sigma0.expand(cfg.samples, 1, grid, grid),
                                      size=image.shape[-2:], mode="nearest") \
            * torch.randn(shape, generator=generator, device=device)
        noise_feature = feature(noisy)
        origin = feature(image).expand(noise_feature.size())
        sigma_f = F.mse_loss(noise_feature, origin)
    sigma = nn.Parameter(sigma0.clone())
    optimizer = torch.optim.SGD([sigma], lr=cfg.lr)
    lam, entropy, snaps = cfg.lam, np.zeros(cfg.steps), []
    for epoch in range(cfg.steps):
        if max_steps is not None and epoch >= max_steps:
            break
        sigma.data.clamp_(cfg.sigma_min, cfg.sigma_max)
        unit = torch.randn(shape, generator=generator, device=device)
        noisy = image + F.interpolate(sigma.expand(cfg.samples, 1, grid, grid),
                                      size=image.shape[-2:], mode="nearest") * unit
        penalty = torch.log(sigma).mean() + cfg.entropy_offset
        snaps.append(sigma.detach().clone()[0, 0])
        loss = F.mse_loss(feature(noisy), origin) / sigma_f - lam * penalty
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        entropy[epoch] = penalty.item()
        if epoch == cfg.boost_after - 1:
            if entropy[: cfg.boost_after].max() > cfg.target_entropy:
                break
            lam *= cfg.boost_factor
    best = int(np.argmin(np.abs(entropy - cfg.target_entropy)))
    return best, snaps[best] if best < len(snaps) else None, len(snaps)


class Clock:
    """CPU (process, all threads) and wall seconds since start."""

    def __init__(self):
        self.cpu, self.wall = time.process_time(), time.perf_counter()

    def stop(self):
        return time.process_time() - self.cpu, time.perf_counter() - self.wall


def floor_step(model, layer, rows, image_size):
    """One plain fp32 forward+backward of the truncated model (weights requiring grad)."""
    extractor = truncated_model(model, layer, fold_batchnorm=False, relu_in_place=False)
    extractor.requires_grad_(True)
    x = torch.randn(rows, 3, image_size, image_size, requires_grad=True)
    return lambda: extractor(x).pow(2).sum().backward()


def engine_step(model, layer, images, cfg, precision):
    """One engine gradient step with every image active (all B x K rows)."""
    engine = _Engine(truncated_model(model, layer), torch.device("cpu"), precision,
                     True, max_batch=len(images) * cfg.samples)
    engine.fit_chunk(images, CPU_CHUNK_BYTES, cfg.samples)  # as estimate_sigma on a CPU
    n, _, size, _ = images.shape
    gens = [noise_generator(0, i) for i in range(n)]
    draw = lambda b: torch.randn((cfg.samples, 3, size, size), generator=gens[b])  # noqa
    with torch.no_grad():
        clean = engine.features(images)
        sigma_f = F.relu(engine.model(images + cfg.sigma_init * torch.randn_like(images))
                         ).flatten(1).sub(clean).pow(2).mean(1)
    sigma = torch.full((n, cfg.grid, cfg.grid), cfg.sigma_init)
    weight = 1.0 / (cfg.samples * clean.shape[1] * sigma_f.clamp(min=1e-12))

    def step():
        with torch.no_grad():
            _feature_gradient(engine, images, sigma, clean, weight, list(range(n)), draw,
                              cfg.samples, size // cfg.grid, size // cfg.grid)
    return step


def loop_step(model, layer, image, cfg):
    """One step of the authors' loop (K rows, weight gradients too)."""
    extractor = truncated_model(model, layer, fold_batchnorm=False, relu_in_place=False)
    extractor.requires_grad_(True)
    image = image[None]
    grid = cfg.grid
    sigma = nn.Parameter(torch.full((1, 1, grid, grid), cfg.sigma_init))
    with torch.no_grad():
        origin = F.relu(extractor(image))

    def step():
        unit = torch.randn((cfg.samples, *image.shape[1:]))
        noisy = image + F.interpolate(sigma.expand(cfg.samples, 1, grid, grid),
                                      size=image.shape[-2:], mode="nearest") * unit
        loss = F.mse_loss(F.relu(extractor(noisy)), origin.expand(cfg.samples, -1, -1, -1)) \
            - torch.log(sigma).mean()
        loss.backward()
    return step


def interleaved_cpu_min(steps, repeats):
    """Min CPU seconds of each callable, run in turn (so load changes hit all alike)."""
    for step in steps.values():  # warm-up
        step()
    best = {name: float("inf") for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            clock = Clock()
            step()
            best[name] = min(best[name], clock.stop()[0])
    return best


def step_timings(model, layer, images, cfg, args, with_loop):
    n, size = images.shape[0], images.shape[-1]
    steps = {"floor": floor_step(model, layer, n * cfg.samples, size)}
    if with_loop:
        steps["loop"] = loop_step(model, layer, images[0], cfg)
    for precision in args.precisions:
        steps[precision] = engine_step(model, layer, images, cfg, precision)
    return interleaved_cpu_min(steps, args.repeats)


def bench_steps_only(name, model, layer, size, args):
    """Per-step timings only (for nets too slow for full runs on this CPU)."""
    cfg = SigmaConfig(samples=args.samples)
    n = args.images
    images = make_images(n, size)
    print(f"\n== {name} (per-step timings only): layer {layer}, {size} px, {n} image(s), "
          f"K={cfg.samples}, {torch.get_num_threads()} threads")
    best = step_timings(model, layer, images, cfg, args, with_loop=True)
    loop, floor = best["loop"], best["floor"]
    print(f"loop step (1 image, {cfg.samples} rows): cpu {loop:8.2f} s")
    print(f"floor (plain fp32 fwd+bwd, {n * cfg.samples} rows): cpu {floor:8.2f} s")
    for precision in args.precisions:
        step = best[precision]
        # Full runs: the loop does 60 steps + a sigma_f forward, the engine 59 passes + a
        # sigma_f forward (images that stop at the decision step; the forward ~ 1/3 step).
        ratio = loop * (60 + 1 / 3) / (step / n * (59 + 1 / 3))
        print(f"engine step {precision:4s} ({n * cfg.samples} rows): cpu {step:8.2f} s "
              f"= {step / floor:.2f} x floor; per image {step / n:.2f} s = loop step / "
              f"{loop / (step / n):.2f}; estimated full-run speed-up x{ratio:.2f}")


def bench(name, model, layer, size, args):
    cfg = SigmaConfig(samples=args.samples)
    images = make_images(args.images, size)
    keys = list(range(args.images))
    n = args.images
    print(f"\n== {name}: layer {layer}, {size} px, {n} images, K={cfg.samples}, "
          f"{torch.get_num_threads()} threads")

    if args.engine_only:  # the pipeline's cost: seconds per image-checkpoint
        for precision in args.precisions:
            estimate_sigma(model, layer, images[:1], SigmaConfig(samples=cfg.samples, steps=2,
                                                                 boost_after=2),
                           device="cpu", precision=precision)  # warm-up
            clock = Clock()
            res = estimate_sigma(model, layer, images, cfg, seed=args.seed, image_keys=keys,
                                 device="cpu", precision=precision, max_batch=args.max_batch)
            cpu, wall = clock.stop()
            print(f"engine {precision:4s}: cpu {cpu:8.2f} s  wall {wall:8.2f} s  = cpu "
                  f"{cpu / n:.2f} s, wall {wall / n:.2f} s per image-checkpoint "
                  f"(passes {sorted(set(res.passes.tolist()))}, boosted "
                  f"{int(res.boosted.sum())}/{n})")
        return
    # Warm-up (one-time kernel set-up) of both, so the timed runs compare steady states.
    loop_one_image(model, layer, images[0], cfg, noise_generator(-1, 0), 1)
    for precision in args.precisions:
        estimate_sigma(model, layer, images, SigmaConfig(samples=cfg.samples, steps=2,
                                                         boost_after=2),
                       seed=-1, device="cpu", precision=precision, max_batch=args.max_batch)
    clock = Clock()
    loop = [loop_one_image(model, layer, images[b], cfg, noise_generator(args.seed, keys[b]),
                           args.loop_steps) for b in range(n)]
    loop_s, loop_wall = clock.stop()

    results = {}
    for precision in args.precisions:
        clock = Clock()
        res = estimate_sigma(model, layer, images, cfg, seed=args.seed, image_keys=keys,
                             device="cpu", precision=precision, max_batch=args.max_batch)
        results[precision] = (res, *clock.stop())

    fp32 = results.get("fp32", next(iter(results.values())))[0]
    if args.seed_spread and "fp32" in results:
        # Scale for the bf16 differences: the same engine, fp32, another noise seed.
        other = estimate_sigma(model, layer, images, cfg, seed=args.seed + 1, image_keys=keys,
                               device="cpu", max_batch=args.max_batch)
        spread = (other.entropy - fp32.entropy).abs().mean(dim=(1, 2))
        print(f"fp32 seed {args.seed} vs seed {args.seed + 1}: mean |dH| per image "
              f"{[round(float(v), 4) for v in spread]}, same step "
              f"{int((other.step == fp32.step).sum())}/{n}")
        for precision, (res, _, _) in results.items():
            if precision != "fp32":
                diff = (res.entropy - fp32.entropy).abs().mean(dim=(1, 2))
                print(f"{precision} vs fp32 (same seed): mean |dH| per image "
                      f"{[round(float(v), 4) for v in diff]}, same step "
                      f"{int((res.step == fp32.step).sum())}/{n}")
    if args.loop_steps is not None:
        # Extrapolate the loop to full runs: per image, sigma_f + the steps it would run
        # (60, or 80 if boosted; taken from the engine's decisions).
        per_step = loop_s / (n * (args.loop_steps + 1))
        full_steps = torch.where(fp32.boosted, cfg.steps, cfg.boost_after).double()
        loop_s = float(per_step * (full_steps + 1).sum())
        print(f"loop       : cpu {loop_s:9.2f} s (extrapolated from {args.loop_steps} steps, "
              f"{per_step:.3f} s/step)")
    else:
        print(f"loop       : cpu {loop_s:9.2f} s  wall {loop_wall:9.2f} s  "
              f"({loop_s / n:.2f} cpu s per image-checkpoint)")
    for precision, (res, seconds, wall) in results.items():
        line = (f"engine {precision:4s}: cpu {seconds:9.2f} s  wall {wall:9.2f} s  "
                f"({seconds / n:.2f} cpu s per image-checkpoint)  "
                f"speed-up x{loop_s / seconds:.2f}")
        if args.loop_steps is None:
            same_step = sum(int(res.step[b]) == loop[b][0] for b in range(n))
            same_sigma = sum(int(res.step[b]) == loop[b][0] and torch.allclose(
                res.sigma[b], loop[b][1], rtol=1e-4, atol=1e-7) for b in range(n))
            mean_diff = max(float((res.entropy[b] - (torch.log(loop[b][1])
                                                     + cfg.entropy_offset)).abs().mean())
                            for b in range(n))
            line += (f"  identical step {same_step}/{n}, sigma {same_sigma}/{n}, "
                     f"max mean |dH| {mean_diff:.2e}")
        print(line)
    print(f"engine passes per image: {fp32.passes.tolist()} (loop: "
          f"{[r[2] for r in loop] if args.loop_steps is None else 'n/a'}), boosted "
          f"{int(fp32.boosted.sum())}/{n}")

    rows = n * cfg.samples
    best = step_timings(model, layer, images, cfg, args, with_loop=False)
    print(f"floor (plain fp32 fwd+bwd, {rows} rows): cpu {best['floor'] * 1e3:8.1f} ms")
    for precision in args.precisions:
        print(f"engine step {precision:4s} ({rows} rows): cpu {best[precision] * 1e3:8.1f} ms"
              f"  = {best[precision] / best['floor']:.2f} x floor")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nets", default="small,vgg16")
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--samples", type=int, default=96)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-batch", type=int, default=1536)
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed repeats of each step (interleaved; min taken)")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--engine-only", action="store_true",
                        help="only the engine's cost per image-checkpoint (pipeline sizing)")
    parser.add_argument("--steps-only", action="store_true",
                        help="per-step timings only (loop step, engine step, floor)")
    parser.add_argument("--size", type=int, default=None,
                        help="image size override (e.g. VGG-16 at 32 px for full runs)")
    parser.add_argument("--seed-spread", action="store_true",
                        help="also run fp32 with seed+1, to put bf16 differences in scale")
    parser.add_argument("--loop-steps", type=int, default=None,
                        help="run only this many loop steps per image and extrapolate")
    args = parser.parse_args(argv)
    args.precisions = args.precisions.split(",")
    torch.set_num_threads(args.threads)
    nets = {"small": small_vgg, "vgg16": vgg16}
    for name in args.nets.split(","):
        model, layer, size = nets[name]()
        size = args.size or size
        (bench_steps_only if args.steps_only else bench)(name, model, layer, size, args)


if __name__ == "__main__":
    main()
