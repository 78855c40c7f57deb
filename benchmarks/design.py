"""Which design (seeds x evaluated images per seed) the CPU budget buys the most power with.

Reads a finished run (its ``results/<tree>/tables/images.csv`` and ``selection.csv``, and the
jobs' benchmark files under ``logs/benchmarks/``), estimates per architecture and metric the
variance components of the student-minus-baseline difference (between seeds, between images,
within; :func:`kdconcepts.design.variance_components`) and the CPU seconds per seed and per
image, and prints for every design that fits the budget its cost, the minimum detectable effect
and the power at the observed effects, then the designs ranked by their minimum detectable
effect relative to the run's own (:func:`kdconcepts.design.recommend`). The budget defaults to
1.5x the run's own job CPU (issue 31: the new default within 1.5x the wall time of the old).

Example:
    python benchmarks/design.py --run /path/to/finished/clone
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from kdconcepts.design import Costs, design_table, recommend, variance_components


def _cpu(files) -> float:
    """Seconds of the jobs' benchmark files: their wall time, which for these one-thread jobs on
    a core of their own is their CPU time (Snakemake's sampled ``cpu_time`` misses much of a
    short job: 15 s of a 43 s training job)."""
    return float(sum(pd.read_csv(f, sep="\t")["s"].sum() for f in files))


def tree_costs(run: Path, tree: str, selection: pd.DataFrame) -> tuple[Costs, float]:
    """(Costs of one tree without the run-wide jobs, the tree's job CPU seconds)."""
    bench = run / "logs/benchmarks" / tree
    seeds = sorted(int(p.name.split("_")[1]) for p in bench.glob("seed_*"))
    per_seed, per_image = [], []
    for s in seeds:
        folder = bench / f"seed_{s}"
        per_seed.append(_cpu(folder.glob("train/**/*.tsv")) + _cpu(folder.glob("metrics.tsv")))
        evaluated = selection.loc[selection["seed"] == s, "evaluated"]
        # every comparison's images of the seed: one quantify job (or its rounds) made them all
        per_image.append(_cpu(folder.glob("quantify/**/*.tsv")) / max(1, int(evaluated.max())))
    total = _cpu(bench.glob("**/*.tsv"))
    fixed = total - sum(per_seed) - sum(p * int(selection.loc[selection["seed"] == s, "evaluated"].max())
                                        for p, s in zip(per_image, seeds))
    return Costs(fixed=fixed, per_seed=sum(per_seed) / len(seeds), per_image=sum(per_image) / len(seeds)), total


def _trees(run: Path) -> list[str]:
    return sorted(str(p.parent.parent.relative_to(run)) for p in run.glob("results/**/tables/images.csv")
                  if not p.parent.parent.name.startswith("seed_"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, default=Path("."), help="a finished run (repository root)")
    parser.add_argument("--budget-ratio", type=float, default=1.5,
                        help="CPU budget as a multiple of the run's own job CPU seconds")
    parser.add_argument("--cost-ratio", type=float, default=1.0,
                        help="what a job-second of the run costs in the code to be run, measured "
                             "(benchmarks/numerics_cost.py: the portable pins and channels_last)")
    parser.add_argument("--seeds", type=int, nargs=2, default=(3, 12), metavar=("MIN", "MAX"))
    parser.add_argument("--images", type=int, nargs=2, default=(1, 6), metavar=("MIN", "MAX"))
    parser.add_argument("--students", nargs="+", default=["distilled_student"])
    args = parser.parse_args(argv)
    trees = _trees(args.run)
    if not trees:
        print(f"no finished run under {args.run}/results (no tables/images.csv)", file=sys.stderr)
        return 2
    run_wide = float(sum(pd.read_csv(f, sep="\t")["s"].sum()
                         for f in (args.run / "logs/benchmarks").glob("*/**/*.tsv")
                         if not any(str(f).startswith(str(args.run / "logs/benchmarks" / t) + "/") for t in trees)))
    groups, total, current = {}, run_wide, None
    pd.set_option("display.width", 200, "display.max_columns", 20)
    for tree in trees:
        images = pd.read_csv(args.run / tree / "tables/images.csv")
        selection = pd.read_csv(args.run / tree / "tables/selection.csv")
        components = variance_components(images, args.students)
        costs, cpu = tree_costs(args.run, tree, selection)
        costs = Costs(costs.fixed + run_wide / len(trees), costs.per_seed, costs.per_image)
        total += cpu
        current = (int(components["n_seeds"].max()), int(round(components["images_per_seed"].max())))
        print(f"== {tree}: {current[0]} seeds x {current[1]} images; CPU s: fixed {costs.fixed:.0f}, "
              f"per seed {costs.per_seed:.0f}, per image {costs.per_image:.0f}")
        print(components.drop(columns=["layer", "student"]).round(5).to_string(index=False))
        groups[tree] = design_table(components, costs, seeds=range(args.seeds[0], args.seeds[1] + 1),
                                    images=range(args.images[0], args.images[1] + 1))
    budget = args.budget_ratio / args.cost_ratio * total
    ranked = recommend(None, current, budget, groups)
    print(f"\n== the run's job CPU {total:.0f} s; budget {budget:.0f} s of the run's seconds "
          f"({args.budget_ratio:g}x, over a cost ratio of {args.cost_ratio:g})")
    print("designs within the budget, by mean MDE relative to the run's design "
          f"({current[0]} x {current[1]}):")
    print(ranked.head(12).round(3).to_string(index=False))
    best = ranked.iloc[0]
    chosen = (int(best["seeds"]), int(best["images_per_seed"]))
    for tree, table in groups.items():
        for design, label in ((current, "the run's"), (chosen, "recommended")):
            rows = table[(table["seeds"] == design[0]) & (table["images_per_seed"] == design[1])]
            print(f"\n{tree}, {label} design {design[0]} x {design[1]}: MDE and power at the observed effect")
            print(rows[["metric", "sd", "mde", "power_at_observed"]].round(4).to_string(index=False))
    print(f"\nrecommended: seeds {chosen[0]}, images per seed {chosen[1]} "
          f"(CPU {best['cpu_s']:.0f} s, mean MDE {best['mean_mde_ratio']:.2f}x the run's)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
