"""The same bits on other x86 CPUs? Native against emulated Haswell and EPYC-Rome, with and without
the portable pins (kdconcepts.numerics).

A probe trains a few SGD steps of ``small_vgg`` (channels_last, as the pipeline's training jobs)
and runs a few steps of one sigma map (the pipeline's own functions), then prints the sha256 of the final weights and of the map. It runs
natively on this host and under ``qemu-x86_64 -cpu Haswell`` (an Intel without AVX-512) and
``-cpu EPYC-Rome`` (an AMD), each with ``numerics`` portable and native. Emulation is hundreds of
times slower than native (a couple of minutes a probe, most of it importing torch), so the probe
is small. Needs ``qemu-user`` (tests/infra/install_system_deps.sh installs it).

Prints one row per (CPU, numerics) and whether its hashes equal the native host's with the same
numerics; exit status 0 when every portable run equals the native portable one.

Example:
    python benchmarks/portability.py                 # all six runs (about 10 min)
    python benchmarks/portability.py --cpus native   # the host only
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time


def probe(steps: int, sigma_steps: int) -> dict:
    """Train ``steps`` SGD steps and ``sigma_steps`` of one sigma map; their hashes. The numerics
    are whatever the environment says (set before this process started)."""
    import torch

    from kdconcepts.models import build_model, resolve_layer
    from kdconcepts.numerics import MODES, PORTABLE, host_info
    from kdconcepts.quantify import SigmaConfig, estimate_sigma

    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(4, 3, 32, 32, generator=generator)
    labels = torch.randint(0, 8, (4,), generator=generator)
    torch.manual_seed(0)
    # channels_last inputs and weights, as the pipeline's training jobs (config training.channels_last)
    model = build_model("small_vgg", num_classes=8, image_size=32).to(memory_format=torch.channels_last)
    images = images.contiguous(memory_format=torch.channels_last)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    model.train()
    for _ in range(steps):
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(model(images), labels).backward()
        optimiser.step()
    weights = hashlib.sha256(b"".join(t.detach().contiguous().numpy().tobytes()
                                      for t in model.state_dict().values())).hexdigest()
    cfg = SigmaConfig(grid=8, steps=sigma_steps, boost_after=max(1, sigma_steps - 1), samples=4, lr=1e-3,
                      stop="full")
    result = estimate_sigma(model.eval(), resolve_layer("small_vgg", "conv"), images[:1].contiguous(), cfg, seed=0,
                            image_keys=["probe"], device="cpu")
    sigma = hashlib.sha256(result.sigma.detach().contiguous().numpy().tobytes()).hexdigest()
    mode = "portable" if all(os.environ.get(k) == v for k, v in PORTABLE.items()) else "native"
    assert mode in MODES
    info = host_info(mode)
    return {"weights": weights, "sigma": sigma, "kernels": info["kernels"], "cpu_level": info["cpu_level"]}


def run(cpu: str, numerics: str, steps: int, sigma_steps: int, timeout: int) -> dict:
    from kdconcepts.numerics import apply

    env = apply(numerics, dict(os.environ))
    command = [sys.executable, __file__, "--probe", "--steps", str(steps), "--sigma-steps", str(sigma_steps)]
    if cpu != "native":
        command = [shutil.which("qemu-x86_64") or "qemu-x86_64", "-cpu", cpu, *command]
    start = time.monotonic()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{cpu}, {numerics}: {done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {"cpu": cpu, "numerics": numerics, **result, "seconds": round(time.monotonic() - start, 1)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpus", nargs="+", default=["native", "Haswell", "EPYC-Rome"])
    parser.add_argument("--numerics", nargs="+", default=["portable", "native"])
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--sigma-steps", type=int, default=2)
    parser.add_argument("--timeout", type=int, default=1800)
    parser.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.probe:
        print(json.dumps(probe(args.steps, args.sigma_steps)))
        return 0
    if any(cpu != "native" for cpu in args.cpus) and not shutil.which("qemu-x86_64"):
        print("qemu-x86_64 not found: apt-get install qemu-user (tests/infra/install_system_deps.sh)",
              file=sys.stderr)
        return 2
    rows = [run(cpu, numerics, args.steps, args.sigma_steps, args.timeout)
            for numerics in args.numerics for cpu in args.cpus]
    native = {r["numerics"]: r for r in rows if r["cpu"] == "native"}
    print(f"{'cpu':<10} {'numerics':<9} {'kernels':<8} {'weights':<14} {'sigma':<14} same as native  seconds")
    ok = True
    for r in rows:
        same = "-" if r["cpu"] == "native" or r["numerics"] not in native else (
            "yes" if (r["weights"], r["sigma"]) == (native[r["numerics"]]["weights"], native[r["numerics"]]["sigma"])
            else "no")
        ok &= not (r["numerics"] == "portable" and same == "no")
        print(f"{r['cpu']:<10} {r['numerics']:<9} {r['kernels']:<8} {r['weights'][:12]:<14} {r['sigma'][:12]:<14} "
              f"{same:<15} {r['seconds']}")
    print("portable numerics: the same bits on every CPU" if ok else "portable numerics: the CPUs DIFFER")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
