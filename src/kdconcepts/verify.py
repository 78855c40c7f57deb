"""``kdconcepts verify``: did a rerun reproduce the reference? And ``kdconcepts reference``, which
makes a reference from a finished run.

    kdconcepts verify                      # results/default against reference/default
    kdconcepts verify photos --reference /path/to/an/earlier/run/reference
    kdconcepts reference default           # refresh reference/default from results/default

A reference (``reference/<run>/``) holds a finished run's result tables (the small CSVs of every
``tables/`` folder), its ``host.json`` and ``run.json`` (the config it was asked to run). The
comparison, written to ``results/<run>/verify.md``:

- **tables**: each reference table against the rerun's: ``identical`` (same bytes), ``equal
  within tolerance`` (same rows and text, numbers within ``rtol`` 1e-6 and ``atol`` 1e-9: the
  rounding of another library build) or ``different`` (counted, with the largest difference);
- **pooled differences**: each student-minus-baseline difference of ``hypotheses.csv`` against
  the reference's, within the spread expected between two independent replicates of S seeds:
  ``|d_rerun - d_ref| <= t(1 - a / 2m, S - 1) * sd_ref * sqrt(2 / S)``, with sd_ref the reference's
  seed-to-seed standard deviation of the difference (``seed_sd``), S its seeds and m the number of
  differences compared (Bonferroni: a family-wise a = 0.05 for the whole comparison);
- **verdicts**: ``same``, ``moved one step`` (held or reversed <-> not significant) or
  ``flipped`` (held <-> reversed).

A reference of another config is refused by name; the keys that only say how, where or with
which kernels the run computes (``numerics``, ``device``, ``threads``, ``resources``, ``report``)
may differ.

It exits 0 when the run reproduced the reference (no flip, no difference out of tolerance), 1
otherwise, 2 when the reference is of another config (refused by name, before any comparison).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["ALPHA", "ATOL", "RTOL", "Verification", "compare_tables", "make_reference", "main", "verify"]

RTOL, ATOL = 1e-6, 1e-9
ALPHA = 0.05
_STEPS = {"held": 1, "not significant": 0, "reversed": -1}
# Config keys that do not change the experiment (only how, where, or with which kernels it runs:
# a native-numerics or GPU rerun is compared within the replicate tolerance).
_IGNORED = ("report", "resources", "device", "run", "threads", "numerics")


def _tables(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob("tables/*.csv") if ".store" not in p.parts)


def make_reference(run_root: str | Path, out: str | Path) -> list[str]:
    """Copy a finished run's tables, host.json and run.json into the reference folder ``out``."""
    run_root, out = Path(run_root), Path(out)
    missing = [name for name in ("host.json", "run.json") if not (run_root / name).is_file()]
    if missing or not _tables(run_root):
        raise FileNotFoundError(f"{run_root} is not a finished run (no {', '.join(missing) or 'tables'})")
    if out.exists():
        shutil.rmtree(out)
    copied = []
    for rel in [*_tables(run_root), Path("host.json"), Path("run.json")]:
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(run_root / rel, out / rel)
        copied.append(str(rel))
    return copied


def _config_differences(reference: dict, rerun: dict, prefix: str = "") -> list[str]:
    keys = sorted(set(reference) | set(rerun))
    found = []
    for key in keys:
        if not prefix and key in _IGNORED:
            continue
        a, b = reference.get(key), rerun.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found += _config_differences(a, b, f"{prefix}{key}.")
        elif a != b:
            found.append(f"{prefix}{key}")
    return found


def compare_tables(reference: pd.DataFrame, rerun: pd.DataFrame) -> tuple[str, str]:
    """(``identical`` | ``equal within tolerance`` | ``different``, what differs)."""
    if reference.equals(rerun):
        return "identical", ""
    if list(reference.columns) != list(rerun.columns) or reference.shape != rerun.shape:
        return "different", f"shape {reference.shape} -> {rerun.shape}, columns differ: " \
               f"{sorted(set(reference.columns) ^ set(rerun.columns))}"
    numeric = [c for c in reference.columns if pd.api.types.is_numeric_dtype(reference[c])
               and pd.api.types.is_numeric_dtype(rerun[c])]
    text = [c for c in reference.columns if c not in numeric]
    unequal_text = [c for c in text if not reference[c].astype(str).equals(rerun[c].astype(str))]
    a = reference[numeric].to_numpy(float)
    b = rerun[numeric].to_numpy(float)
    close = np.isclose(a, b, rtol=RTOL, atol=ATOL, equal_nan=True)
    if not unequal_text and close.all():
        return "equal within tolerance", f"largest |difference| {np.nanmax(np.abs(a - b)):.3g}"
    with np.errstate(invalid="ignore"):
        largest = float(np.nanmax(np.where(close, 0.0, np.abs(a - b)))) if a.size else 0.0
    return "different", (f"{int((~close).sum())} numbers outside tolerance (largest |difference| {largest:.4g})"
                         + (f"; text differs in {unequal_text}" if unequal_text else ""))


@dataclass
class Verification:
    tables: pd.DataFrame        #: table, state, detail
    differences: pd.DataFrame   #: tree, layer, student, metric, reference, rerun, tolerance, within
    verdicts: pd.DataFrame      #: tree, layer, student, metric, reference, rerun, change

    @property
    def reproduced(self) -> bool:
        return bool(self.differences["within"].all()) and not (self.verdicts["change"] == "flipped").any()


def _tolerance(row: pd.Series, comparisons: int) -> float:
    from scipy import stats

    seeds = int(row["n_seeds"])
    if seeds < 2 or not np.isfinite(row["seed_sd"]):
        return 0.0
    return float(stats.t.ppf(1 - ALPHA / (2 * comparisons), seeds - 1) * row["seed_sd"] * np.sqrt(2 / seeds))


def _change(reference: str, rerun: str) -> str:
    if reference == rerun:
        return "same"
    if reference not in _STEPS or rerun not in _STEPS:
        return "other"
    return "flipped" if abs(_STEPS[reference] - _STEPS[rerun]) == 2 else "moved one step"


def verify(run_root: str | Path, reference: str | Path) -> Verification:
    """Compare a finished run with a reference folder (:func:`make_reference`)."""
    run_root, reference = Path(run_root), Path(reference)
    table_rows, diff_rows, verdict_rows = [], [], []
    hypotheses = [rel for rel in _tables(reference) if rel.name == "hypotheses.csv" and "seed_" not in str(rel)]
    keys = ["layer", "student", "metric"]
    pooled = {rel: pd.read_csv(reference / rel) for rel in hypotheses}
    # A run with an architecture axis also stacks its trees' tables into one (an `architecture`
    # column): the same rows again, so they are compared once, in their trees' tables.
    pooled = {rel: table for rel, table in pooled.items() if "architecture" not in table}
    comparisons = max(1, sum(len(t) for t in pooled.values()))
    for rel in _tables(reference):
        if not (run_root / rel).is_file():
            table_rows.append({"table": str(rel), "state": "missing", "detail": "not in the rerun"})
            continue
        state, detail = compare_tables(pd.read_csv(reference / rel), pd.read_csv(run_root / rel))
        table_rows.append({"table": str(rel), "state": state, "detail": detail})
    for rel, ref in pooled.items():
        if not (run_root / rel).is_file():
            continue
        tree = str(rel.parent.parent) if str(rel.parent.parent) != "." else ""
        merged = ref.merge(pd.read_csv(run_root / rel), on=keys, how="left", suffixes=("_ref", "_rerun"))
        for _, row in merged.iterrows():
            base = {"tree": tree, "layer": row["layer"], "student": row["student"], "metric": row["metric"]}
            tolerance = _tolerance(pd.Series({"n_seeds": row["n_seeds_ref"], "seed_sd": row["seed_sd_ref"]}),
                                   comparisons)
            gap = abs(row["difference_rerun"] - row["difference_ref"])
            within = bool(np.isclose(row["difference_rerun"], row["difference_ref"], rtol=RTOL, atol=ATOL,
                                     equal_nan=True) or gap <= tolerance)
            diff_rows.append({**base, "reference": row["difference_ref"], "rerun": row["difference_rerun"],
                              "tolerance": tolerance, "within": within})
            verdict_rows.append({**base, "reference": row["verdict_ref"], "rerun": row["verdict_rerun"],
                                 "change": _change(str(row["verdict_ref"]), str(row["verdict_rerun"]))})
    return Verification(pd.DataFrame(table_rows, columns=["table", "state", "detail"]),
                        pd.DataFrame(diff_rows, columns=["tree", "layer", "student", "metric", "reference",
                                                         "rerun", "tolerance", "within"]),
                        pd.DataFrame(verdict_rows, columns=["tree", "layer", "student", "metric", "reference",
                                                            "rerun", "change"]))


def _markdown(frame: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row) + " |"
              for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def report(result: Verification, run: str, reference: str) -> str:
    """verify.md: the answer first, then the tables, the differences and the verdicts."""
    counts = result.tables["state"].value_counts().to_dict()
    changes = result.verdicts["change"].value_counts().to_dict()
    outside = result.differences[~result.differences["within"]]
    answer = "**Reproduced**" if result.reproduced else "**Not reproduced**"
    reasons = [f"{len(outside)} pooled difference(s) outside the replicate tolerance"] if len(outside) else []
    reasons += [f"{changes['flipped']} verdict(s) flipped"] if changes.get("flipped") else []
    lines = [f"# Verification of results/{run} against {reference}", "",
             f"{answer}" + (f": {'; '.join(reasons)}." if reasons else ": no verdict flipped and every pooled "
                            "difference within the tolerance expected between two independent replicates."),
             "", "Tables: " + ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) + ".",
             "Verdicts: " + ", ".join(f"{n} {change}" for change, n in sorted(changes.items())) + ".", "",
             f"Tolerance of a pooled difference: |d_rerun - d_ref| <= t(1 - {ALPHA:g} / 2m, S - 1) * seed_sd_ref * "
             f"sqrt(2 / S), m = {max(1, len(result.differences))} differences (Bonferroni); tables: numbers within "
             f"rtol {RTOL:g}, atol {ATOL:g} (kdconcepts.verify).", "",
             "## Tables", "", _markdown(result.tables), "",
             "## Pooled differences", "", _markdown(result.differences), "",
             "## Verdicts", "", _markdown(result.verdicts), ""]
    return "\n".join(lines)


def _main_reference(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="kdconcepts reference", description="refresh a run's reference")
    parser.add_argument("run", nargs="?", default="default")
    parser.add_argument("--out", type=Path, help="default: reference/<run>")
    args = parser.parse_args(argv)
    copied = make_reference(Path("results") / args.run, args.out or Path("reference") / args.run)
    print(f"reference/{args.run}: {len(copied)} files from results/{args.run}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="kdconcepts verify", description=__doc__.split("\n\n")[0])
    parser.add_argument("run", nargs="?", default="default", help="the run (its folder under results/)")
    parser.add_argument("--reference", type=Path, help="the reference folder (default: reference/<run>)")
    args = parser.parse_args(argv)
    run_root = Path("results") / args.run
    reference = args.reference or Path("reference") / args.run
    for folder, what in ((run_root, "finished run"), (reference, "reference")):
        if not (folder / "run.json").is_file():
            print(f"kdconcepts verify: {folder} is not a {what} (no run.json)", file=sys.stderr)
            return 2
    asked = json.loads((run_root / "run.json").read_text(encoding="utf-8"))
    referred = json.loads((reference / "run.json").read_text(encoding="utf-8"))
    differing = _config_differences(referred["config"], asked["config"])
    if differing:
        print(f"kdconcepts verify: {reference} is the reference of run {referred['run']!r} "
              f"({', '.join(referred['config_files']) or 'config/config.yaml'}), whose config differs from "
              f"run {asked['run']!r}'s in {', '.join(differing[:8])}{' ...' if len(differing) > 8 else ''}: "
              "refused (point --reference at a reference of this config)", file=sys.stderr)
        return 2
    result = verify(run_root, reference)
    text = report(result, args.run, str(reference))
    (run_root / "verify.md").write_text(text, encoding="utf-8")
    print(text.split("\n## Tables")[0].strip())
    print(f"\n(all of it in {run_root}/verify.md)")
    return 0 if result.reproduced else 1


if __name__ == "__main__":
    sys.exit(main())
