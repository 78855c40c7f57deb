"""Is a smaller K (``quantify.samples``) equivalent to the authors' K = 96? (issue 21)

Not a test: an equivalence study on a finished run of the default (``make reproduce``), its
trained networks and its evaluated images. Every map of the analysed networks (both nets,
every checkpoint, every seed, the evaluated images: 3 x 2 x 7 x 8 = 336 maps in the default)
is computed again:

  * K = 96 with two more noise seeds (the run's own maps are the first K = 96 seed: the
    engine keys the noise by seed and image, so they are the same maps; one is recomputed as a
    check), which gives the noise floor;
  * each smaller K with a fourth noise seed, so that no K shares noise with a reference.

Per map, against each K = 96 run: mean |dH| over cells, same selected step, the Jaccard index
of the concept sets (foreground and background cells with H_bar - H_i > b, each run with its
own H_bar), |dN_fg| and |dN_bg|. Per run, the metrics of the default's pooled table (the same
code as the pipeline: :func:`kdconcepts.metrics.pooled_hypotheses`): the student-minus-baseline
difference, its interval and the verdict.

Criterion (fixed before the study ran):

  * per-map statistics: the floor is the worst of the three pairs of K = 96 runs (the largest
    mean distance; the smallest mean agreement for "same step" and Jaccard). A K passes a
    statistic when its mean over the three references is no worse than the floor;
  * pooled metrics: the spread is the largest |difference_i - difference_j| among the K = 96
    runs; a K passes a metric when the mean over the three of |difference_K - difference_j|
    is within it;
  * verdicts: a K passes when every verdict equals the K = 96 runs' verdict (where the K = 96
    runs disagree among themselves, when it is one of theirs: noise already moves it);
  * a K is equivalent when it passes everything. sigma_f uses the same K as the steps.

It prints the table and the passes saved, and writes ``table.md`` and ``study.json`` in
``--out``. Maps are cached there: a rerun computes only what is missing.

    PYTHONPATH=src python benchmarks/bench_samples.py --results results --out results/bench_samples --jobs 2
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

#: Noise seeds, offsets from the replicate seed: the run's own (0), two more references, and
#: one for every smaller K.
REFERENCE_OFFSETS = (0, 10_007, 20_011)
CANDIDATE_OFFSET = 30_029
MAP_STATS = ("mean_abs_dh", "same_step", "jaccard", "abs_dn_fg", "abs_dn_bg")
AGREEMENTS = ("same_step", "jaccard")  # higher is closer; the others are distances
_TABLE = re.compile(r"seed_(?P<seed>\d+)/quantify/(?P<layer>[^/]+)/(?:round_\d+|all)/"
                    r"(?P<network>[^/]+)/(?:chosen_\d+/)?(?P<epoch>epoch_\d{3}|final)\.parquet$")


# --- the maps --------------------------------------------------------------------------------


def run_name(samples: int, offset: int) -> str:
    return f"K{samples}_noise{offset}"


def default_maps(results: Path, networks, layer: str) -> pd.DataFrame:
    """The run's own maps of the evaluated images (chosen.csv), with where their checkpoints are."""
    rows = []
    for path in sorted(results.glob(f"seed_*/quantify/{layer}/**/*.parquet")):
        match = _TABLE.search(path.as_posix())
        if not match or match["network"] not in networks:
            continue
        seed = int(match["seed"])
        chosen = pd.read_csv(results / f"seed_{seed}" / "quantify" / layer / "chosen.csv")["image_id"].astype(str)
        table = pd.read_parquet(path)
        table = table[table["image_id"].astype(str).isin(set(chosen))]
        if not len(table):
            continue
        base = results / f"seed_{seed}" / "train"
        folder = base / match["network"] / layer if match["network"] != "baseline" else base / "baseline"
        checkpoint = folder / f"{match['epoch']}.pt"
        for row in table.itertuples(index=False):
            rows.append({"seed": seed, "network": match["network"], "epoch": int(row.epoch),
                         "checkpoint": str(checkpoint), "image_id": str(row.image_id),
                         "step": int(row.step), "usable": bool(row.usable),
                         "sample_passes": int(row.sample_passes),
                         "entropy": np.asarray(row.entropy, dtype=np.float64)})
    if not rows:
        raise SystemExit(f"no quantify table of the evaluated images under {results}")
    maps = pd.DataFrame(rows)
    # A (seed, network, epoch) may sit in several rounds' tables: keep one map per image.
    return maps.drop_duplicates(["seed", "network", "epoch", "image_id"]).reset_index(drop=True)


def _quantify_task(task: dict) -> tuple[dict, pd.DataFrame]:
    """One checkpoint's evaluated images at one K and noise seed (a worker process)."""
    import torch

    from kdconcepts.checkpoints import load_checkpoint
    from kdconcepts.data import load_split
    from kdconcepts.models import resolve_layer
    from kdconcepts.quantify import SigmaConfig
    from kdconcepts.quantify.pipeline import quantify_images

    torch.set_num_threads(1)
    model, info = load_checkpoint(task["checkpoint"], map_location="cpu")
    train = load_split(task["data_root"], "train", normalize=task["normalize"])
    position = {image_id: k for k, image_id in enumerate(train.ids)}
    images = train.images[torch.as_tensor([position[i] for i in task["image_ids"]])]
    cfg = SigmaConfig.from_mapping({**task["quantify"], "samples": task["samples"]})
    started = time.process_time()
    table = quantify_images(model.eval(), resolve_layer(info["arch"], task["layer"]), images,
                            task["image_ids"], cfg, seed=task["noise_seed"], device="cpu",
                            max_batch=int(task["quantify"]["max_batch"]))
    table.insert(1, "epoch", int(info.get("epoch", -1)))
    return {**task, "cpu_seconds": time.process_time() - started}, table


def compute_maps(default: pd.DataFrame, config: dict, out: Path, samples: list[int], jobs: int,
                 layer: str) -> pd.DataFrame:
    reference = int(config["quantify"]["samples"])  # the run's K (96 in the default)
    """Every run's maps (cached under ``out/maps``), as one long table with a ``run`` column."""
    from tqdm import tqdm

    quantify = {k: v for k, v in config["quantify"].items()}
    tasks = []
    groups = default.groupby(["seed", "network", "epoch", "checkpoint"], sort=True)
    runs = [(reference, o) for o in REFERENCE_OFFSETS] + [(k, CANDIDATE_OFFSET) for k in samples if k != reference]
    # (offset 0 at the run's K is the run's own maps: only the first checkpoint is recomputed, a check)
    first = min(groups.groups)
    for (seed, network, epoch, checkpoint), rows in groups:
        for k, offset in runs:
            if offset == 0 and (seed, network, epoch, checkpoint) != first:
                continue  # the run's own maps; the first group is recomputed as a check
            path = out / "maps" / f"seed_{seed}" / network / run_name(k, offset) / f"epoch_{epoch:03d}.parquet"
            tasks.append({"seed": int(seed), "network": network, "epoch": int(epoch), "checkpoint": checkpoint,
                          "image_ids": list(rows["image_id"]), "samples": k, "noise_seed": int(seed) + offset,
                          "run": run_name(k, offset), "path": str(path), "layer": layer,
                          "data_root": config["dataset"]["root"], "normalize": config["dataset"]["normalize"],
                          "quantify": quantify})
    todo = sorted((t for t in tasks if not Path(t["path"]).is_file()), key=lambda t: -t["samples"])
    print(f"{len(tasks)} (checkpoint, run) tasks of {len(default)} maps each run; {len(todo)} to compute")
    cpu = []
    if todo:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(_quantify_task, t) for t in todo]
            for future in tqdm(as_completed(futures), total=len(futures), unit="checkpoint", file=sys.stderr):
                task, table = future.result()
                Path(task["path"]).parent.mkdir(parents=True, exist_ok=True)
                tmp = Path(task["path"] + ".tmp")
                table.to_parquet(tmp)
                os.replace(tmp, task["path"])
                cpu.append({"run": task["run"], "cpu_seconds": task["cpu_seconds"]})
    frames = [default.assign(run=run_name(reference, 0)).drop(columns=["checkpoint"])]
    for task in tasks:
        table = pd.read_parquet(task["path"])
        frames.append(pd.DataFrame({
            "seed": task["seed"], "network": task["network"], "epoch": task["epoch"],
            "image_id": table["image_id"].astype(str), "step": table["step"].astype(int),
            "usable": table["usable"].astype(bool), "sample_passes": table["sample_passes"].astype(int),
            "entropy": [np.asarray(e, dtype=np.float64) for e in table["entropy"]],
            "run": task["run"] + ("_check" if task["run"] == run_name(reference, 0) else "")}))
    if cpu:
        pd.DataFrame(cpu).to_csv(out / f"cpu_{int(time.time())}.csv", index=False)
    return pd.concat(frames, ignore_index=True)


# --- the comparison --------------------------------------------------------------------------


def concept_sets(maps: pd.DataFrame, fg: dict[str, np.ndarray], grid: int, b: float) -> pd.DataFrame:
    """``maps`` with n_fg, n_bg and the concept cells, H_bar per (run, seed, network, epoch)."""
    from kdconcepts import metrics as M

    out = []
    for (run, seed, network), rows in maps.groupby(["run", "seed", "network"], sort=False):
        counts = M.count_concepts(rows, fg, grid, b)
        merged = rows.merge(counts, on=["epoch", "image_id"], how="left")
        out.append(merged)
    return pd.concat(out, ignore_index=True)


def map_statistics(one: pd.DataFrame, other: pd.DataFrame) -> dict[str, float]:
    """Mean per-map agreement of two runs' maps (same seed, network, epoch, image)."""
    keys = ["seed", "network", "epoch", "image_id"]
    both = one.merge(other, on=keys, suffixes=("_a", "_b"))
    if len(both) != len(one) or len(both) != len(other):
        raise ValueError(f"the runs do not have the same maps ({len(one)}, {len(other)}, {len(both)} shared)")
    dh = [float(np.nanmean(np.abs(a - b))) for a, b in zip(both["entropy_a"], both["entropy_b"])]
    jaccard = []
    for fa, ba, fb, bb in zip(both["fg_cells_a"], both["bg_cells_a"], both["fg_cells_b"], both["bg_cells_b"]):
        a, b = set(fa) | set(ba), set(fb) | set(bb)
        jaccard.append(len(a & b) / len(a | b) if a | b else 1.0)
    return {"mean_abs_dh": float(np.mean(dh)),
            "same_step": float((both["step_a"] == both["step_b"]).mean()),
            "jaccard": float(np.mean(jaccard)),
            "abs_dn_fg": float((both["n_fg_a"] - both["n_fg_b"]).abs().mean()),
            "abs_dn_bg": float((both["n_bg_a"] - both["n_bg_b"]).abs().mean())}


def pooled_table(counts: pd.DataFrame, weight_distance: dict, networks, *, resamples: int,
                 confidence: float, zero_concept_images: str = "keep") -> pd.DataFrame:
    """The pipeline's pooled hypotheses for one run's maps."""
    from kdconcepts import metrics as M

    images = []
    for (seed, network), rows in counts.groupby(["seed", "network"], sort=True):
        per_image = M.image_metrics(rows, weight_distance[(seed, network)], zero_concept_images)
        images.append(per_image.assign(seed=seed, layer="conv", network=network))
    students = [n for n in networks if n != "baseline"]
    return M.pooled_hypotheses(pd.concat(images, ignore_index=True), students, resamples=resamples,
                               confidence=confidence)


def criterion(map_stats: pd.DataFrame, pooled: pd.DataFrame, references: list[str],
              candidates: list[str]) -> pd.DataFrame:
    """The written criterion, one row per candidate K: each check and the outcome.

    Args:
        map_stats: rows (``a``, ``b``, the :data:`MAP_STATS`): run ``a`` against run ``b``.
        pooled: rows (``run``, ``metric``, ``difference``, ``verdict``).
        references: the K = 96 runs; candidates: the runs judged.
    """
    def stat(a, b, name):
        row = map_stats[((map_stats["a"] == a) & (map_stats["b"] == b)) | ((map_stats["a"] == b) & (map_stats["b"] == a))]
        return float(row[name].iloc[0])

    pairs = [(a, b) for i, a in enumerate(references) for b in references[i + 1:]]
    floor = {name: (min if name in AGREEMENTS else max)(stat(a, b, name) for a, b in pairs) for name in MAP_STATS}
    diffs = pooled.pivot(index="metric", columns="run", values="difference")
    verdicts = pooled.pivot(index="metric", columns="run", values="verdict")
    spread = {m: max(abs(diffs.loc[m, a] - diffs.loc[m, b]) for a, b in pairs) for m in diffs.index}
    rows = []
    for run in candidates:
        row = {"run": run}
        ok = True
        for name in MAP_STATS:
            value = float(np.mean([stat(run, ref, name) for ref in references]))
            good = value >= floor[name] if name in AGREEMENTS else value <= floor[name]
            row[name] = value
            row[f"{name}_floor"] = floor[name]
            row[f"{name}_pass"] = bool(good)
            ok &= good
        for metric in diffs.index:
            distance = float(np.mean([abs(diffs.loc[metric, run] - diffs.loc[metric, ref]) for ref in references]))
            good = bool(np.isfinite(distance) and distance <= spread[metric] + 1e-12)
            reference_verdicts = set(verdicts.loc[metric, references])
            same = verdicts.loc[metric, run] in reference_verdicts
            row[f"{metric}_distance"] = distance
            row[f"{metric}_spread"] = spread[metric]
            row[f"{metric}_pass"] = good
            row[f"{metric}_verdict"] = verdicts.loc[metric, run]
            row[f"{metric}_verdict_pass"] = bool(same)
            ok &= good and same
        row["equivalent"] = bool(ok)
        rows.append(row)
    return pd.DataFrame(rows)


# --- the study -------------------------------------------------------------------------------


def study(args) -> int:
    import yaml

    from kdconcepts.data import load_split
    from kdconcepts.quantify import downsample_mask

    config = yaml.safe_load(Path(args.config).read_text())
    args.resamples = args.resamples or int(config["metrics"]["resamples"])
    layer = config["layers"][0]
    networks = list(config["networks"])
    grid, b = int(config["quantify"]["grid"]), float(config["metrics"]["b"])
    args.out.mkdir(parents=True, exist_ok=True)
    default = default_maps(args.results, networks, layer)
    print(f"{len(default)} maps of the evaluated images in {args.results} (seeds "
          f"{sorted(default['seed'].unique())}, networks {sorted(default['network'].unique())}, "
          f"{default['epoch'].nunique()} checkpoints)")
    reference = int(config["quantify"]["samples"])
    maps = compute_maps(default, config, args.out, args.samples, args.jobs, layer)
    check = maps[maps["run"].str.endswith("_check")]
    own = maps[maps["run"] == run_name(reference, 0)].merge(check, on=["seed", "network", "epoch", "image_id"])
    same = all(np.array_equal(a, b, equal_nan=True) for a, b in zip(own["entropy_x"], own["entropy_y"]))
    print(f"the run's own K = {reference} maps recomputed ({len(own)} maps): {'identical' if same else 'DIFFERENT'}")
    if not same:
        raise SystemExit("the run's maps are not the engine's at this config: give the run's --config")
    maps = maps[~maps["run"].str.endswith("_check")]

    train = load_split(config["dataset"]["root"], "train")
    position = {image_id: k for k, image_id in enumerate(train.ids)}
    ids = sorted(set(maps["image_id"]))
    fg = dict(zip(ids, downsample_mask(train.masks[[position[i] for i in ids]], grid).numpy()))
    counts = concept_sets(maps, fg, grid, b)
    weight_distance = {}
    for (seed, network), _ in counts.groupby(["seed", "network"]):
        folder = args.results / f"seed_{seed}" / "train" / network
        folder = folder / layer if network != "baseline" else folder
        table = pd.read_csv(folder / "weight_distance.csv")
        weight_distance[(seed, network)] = table[table["layer"] == layer].set_index("epoch")["weight_distance"]

    references = [run_name(reference, o) for o in REFERENCE_OFFSETS]
    candidates = [run_name(k, CANDIDATE_OFFSET) for k in args.samples if k != reference]
    runs = references + candidates
    by_run = {run: counts[counts["run"] == run] for run in runs}
    map_rows = []
    for i, a in enumerate(runs):
        for other in runs[i + 1:]:
            if a in candidates and other in candidates:
                continue
            map_rows.append({"a": a, "b": other, **map_statistics(by_run[a], by_run[other])})
    map_stats = pd.DataFrame(map_rows)
    pooled = pd.concat([pooled_table(by_run[run], weight_distance, networks, resamples=args.resamples,
                                     confidence=float(config["metrics"]["confidence"])).assign(run=run)
                        for run in runs], ignore_index=True)
    outcome = criterion(map_stats, pooled, references, candidates)
    passes = maps.groupby("run")["sample_passes"].sum()
    outcome["passes_saved"] = [1.0 - passes[r] / passes[references].mean() for r in candidates]
    report = _report(args, maps, map_stats, pooled, outcome, references, passes)
    print(report)
    (args.out / "table.md").write_text(report, encoding="utf-8")
    (args.out / "study.json").write_text(json.dumps({
        "results": str(args.results), "config": args.config, "maps_per_run": int(len(default)),
        "map_stats": map_stats.to_dict("records"), "pooled": pooled.drop(columns=[]).to_dict("records"),
        "criterion": outcome.to_dict("records")}, indent=1, default=str), encoding="utf-8")
    return 0


def _report(args, maps, map_stats, pooled, outcome, references, passes) -> str:
    def md(frame):
        lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
        lines += ["| " + " | ".join(str(v) for v in r) + " |" for r in frame.itertuples(index=False)]
        return "\n".join(lines)

    per_map = map_stats.copy()
    per_map["pair"] = per_map["a"] + " vs " + per_map["b"]
    per_map = per_map[["pair", *MAP_STATS]].round(4)
    verdicts = pooled.pivot(index="metric", columns="run", values="verdict")
    diffs = pooled.pivot(index="metric", columns="run", values="difference").map(lambda v: f"{v:+.4g}")
    joined = diffs + " (" + verdicts + ")"
    joined = joined[[c for c in [*references, *outcome["run"]] if c in joined.columns]].reset_index()
    metric_checks = [k for k in outcome.columns if k.endswith("_pass") and not any(k.startswith(s) for s in MAP_STATS)]
    summary = pd.DataFrame({
        "K": outcome["run"],
        "map checks passed": [f"{sum(r[f'{s}_pass'] for s in MAP_STATS)} of {len(MAP_STATS)}"
                              for _, r in outcome.iterrows()],
        "failed map checks": [", ".join(s for s in MAP_STATS if not r[f"{s}_pass"]) for _, r in outcome.iterrows()],
        "metric checks passed": [f"{sum(r[k] for k in metric_checks)} of {len(metric_checks)}"
                                 for _, r in outcome.iterrows()],
        "failed metric checks": [", ".join(k.removesuffix("_pass") for k in metric_checks if not r[k])
                                 for _, r in outcome.iterrows()],
        "passes saved": outcome["passes_saved"].map(lambda v: f"{100 * v:.0f}%"),
        "equivalent": outcome["equivalent"]})
    return "\n".join([
        f"# bench_samples: `{' '.join(sys.argv)}`", "",
        f"{len(maps[maps['run'] == references[0]])} maps per run; references (the run's K, three noise seeds): {', '.join(references)}.",
        "", "## Per map (mean over maps)", "", md(per_map), "",
        "## Pooled student-minus-baseline difference (verdict)", "", md(joined), "",
        "## Criterion", "", md(summary), "",
        "Sample passes per run: " + ", ".join(f"{r} {int(v)}" for r, v in passes.items()), ""])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, required=True, help="a finished default run's results folder")
    parser.add_argument("--config", default="config/config.yaml", help="the run's config")
    parser.add_argument("--out", type=Path, default=Path("results/bench_samples"))
    parser.add_argument("--samples", type=int, nargs="+", default=[48, 32, 24, 16],
                        help="the K to judge against the run's own (quantify.samples)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (one thread each)")
    parser.add_argument("--resamples", type=int, default=None,
                        help="bootstrap resamples per run (default: the config's metrics.resamples)")
    args = parser.parse_args(argv)
    if any(k < 1 for k in args.samples):
        parser.error("--samples: every K must be at least 1")
    if not args.results.is_dir():
        parser.error(f"--results: {args.results} is not a folder")
    return study(args)


if __name__ == "__main__":
    sys.exit(main())
