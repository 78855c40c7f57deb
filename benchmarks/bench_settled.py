"""Does the settled early stop (``quantify.stop: settled``) keep the authors' answers?

Not a test: prints, for each setting of the rule (margin, M),

  * the fraction of (image, checkpoint) pairs whose selected step, hence map, is identical to
    the full loop's;
  * for the others, the largest map difference (max |Delta H_i| over cells), beside the
    difference a new noise seed makes to a full-loop map;
  * the updates (forward+backward of K samples) saved.

Two sources:

``--results DIR``: the quantify tables of a finished run with ``stop: full`` (each row keeps the
    trace of mean entropies of its snapshots). The settled run is the full run cut short, so the
    rule is replayed on every trace (:func:`kdconcepts.quantify.engine.settled_last_step`) and
    the selection redone on the shorter trace. Where it changes, the engine reruns that image
    with ``stop: settled`` for its map; ``--noise N`` pairs are rerun with another noise seed.
``--vgg16``: a VGG-16 (torchvision, random init, seeded) at 224 px on a few smooth random
    images, layer ``features.28``, K = ``--samples`` (a CPU cannot afford K = 96 at 224 px:
    about a minute a step), the full loop twice (two noise seeds), the rule replayed.

    PYTHONPATH=src python benchmarks/bench_settled.py --results results --noise 20
    PYTHONPATH=src python benchmarks/bench_settled.py --vgg16 --images 2 --samples 8
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from kdconcepts.quantify import SigmaConfig, estimate_sigma  # noqa: E402
from kdconcepts.quantify.engine import settled_last_step  # noqa: E402

_TABLE = re.compile(r"(?P<tree>.*)/seed_(?P<seed>\d+)/quantify/(?P<layer>[^/]+)/(?:round_\d+|all)/"
                    r"(?P<network>[^/]+)/(?:chosen_\d+/)?(?P<epoch>epoch_\d{3}|final)\.parquet$")


def replay(trace: np.ndarray, cfg: SigmaConfig) -> tuple[int, int, int]:
    """(full selected step, settled selected step, settled last recorded step) of one trace."""
    distance = np.abs(trace - cfg.target_entropy)
    distance[np.isnan(distance)] = np.inf
    last = settled_last_step(trace, cfg)
    return int(np.argmin(distance)), int(np.argmin(distance[: last + 1])), last


def _rows(results: Path) -> pd.DataFrame:
    frames = []
    for path in sorted(results.rglob("*.parquet")):
        match = _TABLE.search(path.as_posix())
        if not match:
            continue
        table = pd.read_parquet(path)
        if "trace" not in table or not len(table):
            continue
        table = table[table["usable"]].copy()
        for key, value in match.groupdict().items():
            table[key] = value
        table["path"] = str(path)
        frames.append(table)
    if not frames:
        raise SystemExit(f"no quantify table with traces under {results}")
    return pd.concat(frames, ignore_index=True)


def _checkpoint(results: Path, row) -> Path:
    base = results / f"seed_{row.seed}" / "train"
    folder = base / "distilled_student" / row.layer if row.network == "distilled_student" else base / row.network
    return folder / ("final.pt" if row.epoch == "final" else f"{row.epoch}.pt")


def _rerun(results, row, cfg, data_root, seed, stop):
    """The engine on one (image, checkpoint): its entropy map (flat)."""
    from kdconcepts.checkpoints import load_checkpoint
    from kdconcepts.data import load_split
    from kdconcepts.models import resolve_layer
    model, info = load_checkpoint(_checkpoint(results, row))
    train = load_split(data_root, "train")
    image = train.images[train.ids.index(row.image_id)][None]
    res = estimate_sigma(model, resolve_layer(info["arch"], row.layer), image,
                         dataclasses.replace(cfg, stop=stop), seed=seed, image_keys=[row.image_id])
    return res.entropy.flatten().numpy().astype(np.float64)


def from_results(args, settings) -> None:
    import yaml
    rows = _rows(args.results)
    config = yaml.safe_load(Path(args.config).read_text())
    cfg = SigmaConfig.from_mapping(config["quantify"])
    if cfg.stop != "full":
        raise SystemExit("the run must use quantify.stop: full (the reference)")
    data_root = Path(config["dataset"]["root"])
    print(f"{len(rows)} (image, checkpoint) maps from {args.results} ({rows['network'].nunique()} networks, "
          f"seeds {sorted(rows['seed'].unique())}); mean updates per map, full: {rows['passes'].mean():.1f}")
    # The noise-seed reference: the same image and checkpoint, full loop, another noise seed.
    rng = np.random.default_rng(0)
    noise = []
    for i in rng.choice(len(rows), size=min(args.noise, len(rows)), replace=False):
        row = rows.iloc[i]
        other = _rerun(args.results, row, cfg, data_root, int(row.seed) + 1000, "full")
        noise.append(float(np.nanmax(np.abs(other - np.asarray(row.entropy, dtype=np.float64)))))
    noise_text = (f"median {np.median(noise):.4f}, max {np.max(noise):.4f} over {len(noise)} maps"
                  if noise else "not measured (--noise 0)")
    print(f"map difference from a new noise seed (full loop, max |dH| per map): {noise_text}")
    for margin, steps in settings:
        rule = dataclasses.replace(cfg, stop="settled", settle_margin=margin, settle_steps=steps)
        outcomes = [replay(np.asarray(t, dtype=np.float64), rule) for t in rows["trace"]]
        full_step = np.array([o[0] for o in outcomes])
        settled_step = np.array([o[1] for o in outcomes])
        last = np.array([o[2] for o in outcomes])
        same = full_step == settled_step
        worst = 0.0
        for i in np.flatnonzero(~same)[: args.max_reruns]:
            row = rows.iloc[i]
            mine = _rerun(args.results, row, rule, data_root, int(row.seed), "settled")
            worst = max(worst, float(np.nanmax(np.abs(mine - np.asarray(row.entropy, dtype=np.float64)))))
        saved = 1.0 - last.sum() / rows["passes"].sum()
        print(f"margin {margin:.3f}, M {steps}: identical {same.mean():.4f} ({same.sum()}/{len(same)}); "
              f"largest map difference where not {worst:.4f}; updates saved {saved:.3f} "
              f"(mean {last.mean():.1f} per map)")


def vgg16(args, settings) -> None:
    import torch.nn.functional as F
    import torchvision
    torch.manual_seed(0)
    model = torchvision.models.vgg16(weights=None).eval()
    g = torch.Generator().manual_seed(1)
    coarse = torch.rand((args.images, 3, 28, 28), generator=g)
    images = (F.interpolate(coarse, size=(224, 224), mode="bilinear") - 0.5) / 0.25
    cfg = SigmaConfig(samples=args.samples)
    started = time.process_time()
    runs = [estimate_sigma(model, "features.28", images, cfg, seed=s, progress=True, progress_desc=f"seed {s}")
            for s in (0, 1)]
    print(f"VGG-16, 224 px, features.28, {args.images} images, K = {args.samples}: "
          f"{time.process_time() - started:.0f} s CPU for the two full runs")
    noise = (runs[0].entropy - runs[1].entropy).abs().flatten(1).max(1).values
    print(f"map difference from a new noise seed: {', '.join(f'{v:.4f}' for v in noise.tolist())}; "
          f"updates per map, full: {runs[0].passes.tolist()}; selected steps {runs[0].step.tolist()}")
    for margin, steps in settings:
        rule = dataclasses.replace(cfg, stop="settled", settle_margin=margin, settle_steps=steps)
        outcomes = [replay(runs[0].trace[b].numpy(), rule) for b in range(args.images)]
        same = [o[0] == o[1] for o in outcomes]
        saved = 1.0 - sum(o[2] for o in outcomes) / float(runs[0].passes.sum())
        print(f"margin {margin:.3f}, M {steps}: identical {sum(same)}/{len(same)}; updates saved {saved:.3f}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=None, help="a finished run's results folder")
    parser.add_argument("--config", default="config/config.yaml", help="the run's config")
    parser.add_argument("--noise", type=int, default=20, help="maps rerun with another noise seed")
    parser.add_argument("--max-reruns", type=int, default=50, help="changed maps rerun for their difference")
    parser.add_argument("--vgg16", action="store_true")
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--settings", default="0.02:2,0.05:3,0.1:3,0.1:5",
                        help="comma-separated margin:M pairs")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = [(float(a), int(b)) for a, b in (s.split(":") for s in args.settings.split(","))]
    if args.results is not None:
        from_results(args, settings)
    if args.vgg16:
        vgg16(args, settings)
    if args.results is None and not args.vgg16:
        parser.error("give --results DIR and/or --vgg16")
    return 0


if __name__ == "__main__":
    sys.exit(main())
