"""How much quantification each schedule spends, in single-sample passes, for a config.

Not a test: prints a table of passes (forward+backward of one noisy image; a sigma_f estimate
counts its K forwards) for

  (a) the authors' pipeline structure: each network on its own walks the candidates, its late
      checkpoints newest first, drops an image at its first failure, quantifies the early
      checkpoints of the images that pass; run here until E images are effective for every
      network (the same evaluated images as the others), and, as they ran it, until E are
      effective for each network alone (then fewer are effective for both);
  (b) exhaustive: every candidate at every checkpoint of every network (+ the teacher);
  (c) effective-first: (a) for all networks at once, in rounds, the early checkpoints and the
      teacher only for the chosen images (kdconcepts.schedule);
  (d) effective-first with the settled early stop.

The counts come from a simulation with stated inputs, averaged over ``--trials`` draws: each
(image, network) is effective with probability ``--rate`` (independently across networks), and
an image that is not fails at a late checkpoint drawn uniformly; a map costs ``--steps`` updates
of K samples plus K forwards for sigma_f (the authors' loop: ``--authors-steps``), ``--settled-steps``
with the settled stop. ``--from-run RESULTS`` reads the rate and the steps per map from a finished
run (its selection.csv and work.csv). Paper-scale estimates of GPU time are the passes divided by
a stated throughput (``--rate-per-s``, images/s of forward+backward).

    PYTHONPATH=src python benchmarks/bench_schedule.py --config config/config.yaml --from-run results
    PYTHONPATH=src python benchmarks/bench_schedule.py --config config/paper/cub_vgg16.yaml \\
        --rate 0.8 --steps 59 --settled-steps 45 --rate-per-s 900
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from kdconcepts.schedule import early_epochs, late_epochs  # noqa: E402


def _config(path: Path) -> dict:
    base = yaml.safe_load((Path(__file__).resolve().parents[1] / "config/config.yaml").read_text())
    override = yaml.safe_load(path.read_text())

    def merge(a, b):
        for key, value in b.items():
            if isinstance(value, dict) and isinstance(a.get(key), dict):
                merge(a[key], value)
            else:
                a[key] = value
    merge(base, override)
    return base


def _draw(rng, n, networks, rate, late):
    """Failure position per (image, network): 0 = effective, else the late step (1 = newest)
    at which the image fails."""
    fails = rng.integers(1, late + 1, size=(n, networks))
    return np.where(rng.random((n, networks)) < rate, 0, fails)


def simulate(*, candidates, effective, networks, late, early, rate, round_size, rng):
    """Maps and sigma_f checks of each schedule for one draw of candidate outcomes."""
    f = _draw(rng, candidates, networks, rate, late)
    ok = f == 0
    both = ok.all(axis=1)
    out = {}
    # (b) exhaustive: every candidate, every checkpoint, every network, + the teacher.
    out["exhaustive"] = {"maps": candidates * (late + early) * networks + candidates, "checks": 0,
                         "evaluated": int(min(effective, both.sum()))}
    # (a) the authors' walk, each network alone, until E are effective for every network.
    def authors_cost(upto):
        depth = np.where(ok[:upto], late + early, f[:upto])
        return int(depth.sum())
    need = np.flatnonzero(np.cumsum(both) >= effective)
    upto = int(need[0]) + 1 if len(need) else candidates
    out["authors (E for every network)"] = {"maps": authors_cost(upto), "checks": 0,
                                            "evaluated": int(min(effective, both[:upto].sum()))}
    # (a') as they ran it: each network stops at E effective for itself.
    maps = 0
    stops = []
    for k in range(networks):
        reach = np.flatnonzero(np.cumsum(ok[:, k]) >= effective)
        stop = int(reach[0]) + 1 if len(reach) else candidates
        stops.append(stop)
        maps += int(np.where(ok[:stop, k], late + early, f[:stop, k]).sum())
    both_within = both[:min(stops)].sum()
    out["authors (E for each network alone)"] = {"maps": maps, "checks": 0, "evaluated": int(both_within)}
    # (c) effective-first: rounds; an image stops for all networks at its first failure.
    depth = np.where(both, late, np.where(ok, late, f).min(axis=1))
    maps, checks, chosen, r = 0, 0, 0, 0
    while chosen < effective and r * round_size < candidates:
        idx = np.arange(r * round_size, min((r + 1) * round_size, candidates))
        maps += int(depth[idx].sum()) * networks
        checks += int(both[idx].sum()) * early * networks
        take = min(effective - chosen, int(both[idx].sum()))
        chosen += take
        maps += take * (early * networks + 1)  # early checkpoints + the teacher, chosen only
        r += 1
    out["effective_first"] = {"maps": maps, "checks": checks, "evaluated": chosen}
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=Path("config/config.yaml"))
    parser.add_argument("--from-run", type=Path, default=None,
                        help="a finished run's results folder: rate and steps per map from it")
    parser.add_argument("--rate", type=float, default=None, help="P(effective) per image and network")
    parser.add_argument("--steps", type=float, default=None, help="updates per map, full engine")
    parser.add_argument("--settled-steps", type=float, default=None, help="updates per map, settled")
    parser.add_argument("--authors-steps", type=float, default=60.0,
                        help="updates per map of the authors' loop (60; 80 when boosted)")
    parser.add_argument("--rate-per-s", type=float, default=None,
                        help="forward+backward samples per second of the device, for a time estimate")
    parser.add_argument("--trials", type=int, default=2000)
    args = parser.parse_args(argv)
    cfg = _config(args.config)
    q, m = cfg["quantify"], cfg["metrics"]
    epochs = cfg["checkpoints"]
    late, early = len(late_epochs(epochs, m["late_fraction"])), len(early_epochs(epochs, m["late_fraction"]))
    networks = len(cfg["networks"])
    samples = q["samples"]
    rate, steps, settled = args.rate, args.steps, args.settled_steps
    if args.from_run is not None:
        selection = pd.read_csv(args.from_run / "tables/selection.csv")
        per_net = [c for c in selection if c.startswith("effective_")]
        rate = rate if rate is not None else float(selection[per_net].sum().sum() / (selection["examined"].sum() * len(per_net)))
        work = pd.read_csv(args.from_run / "tables/work.csv")
        maps = work[work["maps"] > 0]
        steps = steps if steps is not None else float(maps["optimisation_steps"].sum() / maps["maps"].sum())
    if rate is None or steps is None:
        parser.error("give --rate and --steps, or --from-run")
    settled = settled if settled is not None else steps
    rng = np.random.default_rng(0)
    runs = [simulate(candidates=q["candidates"], effective=m["effective"], networks=networks, late=late,
                     early=early, rate=rate, round_size=q["round_size"], rng=rng) for _ in range(args.trials)]
    rows = []
    for name in runs[0]:
        maps = np.mean([r[name]["maps"] for r in runs])
        checks = np.mean([r[name]["checks"] for r in runs])
        evaluated = np.mean([r[name]["evaluated"] for r in runs])
        per_map = (args.authors_steps if name.startswith("authors") else steps) * samples + samples
        rows.append({"schedule": name, "maps": maps, "evaluated": evaluated,
                     "passes": maps * per_map + checks * samples})
        if name == "effective_first":
            rows.append({"schedule": "effective_first + settled", "maps": maps, "evaluated": evaluated,
                         "passes": maps * (settled * samples + samples) + checks * samples})
    table = pd.DataFrame(rows)
    reference = table.loc[table["schedule"] == "authors (E for every network)", "passes"].iloc[0]
    table["x authors"] = table["passes"] / reference
    table["passes per evaluated image"] = table["passes"] / table["evaluated"]
    if args.rate_per_s:
        table["hours per seed and layer"] = table["passes"] / args.rate_per_s / 3600
    print(f"{args.config}: {q['candidates']} candidates, E = {m['effective']}, {late} late + {early} early "
          f"checkpoints, {networks} networks, K = {samples}; P(effective) = {rate:.3f} per image and "
          f"network; {steps:.1f} updates per map ({settled:.1f} settled; authors' loop "
          f"{args.authors_steps:.0f}); mean of {args.trials} draws, per seed and layer")
    with pd.option_context("display.width", 200, "display.float_format", "{:,.3f}".format):
        print(table.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
