"""Glue between stored artefacts (checkpoints, prepared data, tables) and the library.

Each function here is one pipeline stage with paths in and data out; the Snakemake scripts in
``workflow/scripts/`` only unpack ``snakemake`` objects and call them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from kdconcepts import metrics as M
from kdconcepts.quantify import downsample_mask

__all__ = ["candidate_indices", "evaluate_metrics", "quantify_checkpoint"]

log = logging.getLogger("kdconcepts")


def candidate_indices(n_train: int, n_candidates: int, seed: int) -> np.ndarray:
    """Seeded sample (without replacement) of candidate training images, in sampling order.

    The same ``seed`` gives the same candidates for every network and checkpoint.
    """
    if n_candidates > n_train:
        raise ValueError(f"quantify.candidates = {n_candidates} but the training split has only "
                         f"{n_train} images")
    return np.random.default_rng(seed).permutation(n_train)[:n_candidates]


def quantify_checkpoint(checkpoint: str | Path, data_root: str | Path, layer: str,
                        quantify_cfg: Mapping, *, seed: int, device: str = "auto") -> pd.DataFrame:
    """Sigma maps of the candidate images for one checkpoint (one row per image).

    Every network and checkpoint sees the same candidates with the same per-image noise (keyed
    by image id), so their maps differ only through the network.
    """
    import torch

    from kdconcepts.data import load_split
    from kdconcepts.models import resolve_layer
    from kdconcepts.quantify import SigmaConfig, quantify_images
    from kdconcepts.runtime import resolve_device
    from kdconcepts.checkpoints import load_checkpoint

    dev = resolve_device(device)
    model, info = load_checkpoint(checkpoint, map_location=dev)
    model.eval()
    train = load_split(data_root, "train")
    idx = candidate_indices(len(train.ids), int(quantify_cfg["candidates"]), seed)
    images = train.images[torch.as_tensor(idx)]
    node = resolve_layer(info["arch"], layer)
    cfg = SigmaConfig.from_mapping(quantify_cfg)
    log.info("quantify %s layer %s (%s): %d images on %s", checkpoint, layer, node, len(idx), dev)
    table = quantify_images(model, node, images, [train.ids[i] for i in idx], cfg,
                            seed=seed, device=dev, max_batch=int(quantify_cfg["max_batch"]),
                            precision=quantify_cfg["precision"],
                            progress_desc=f"{info.get('role', 'net')} epoch {info.get('epoch')}")
    table.insert(1, "epoch", int(info.get("epoch", -1)))
    table.insert(2, "candidate_rank", np.arange(len(idx)))
    return table


def _fg_grids(data_root, ids: list[str], grid: int) -> dict[str, np.ndarray]:
    from kdconcepts.data import load_split

    train = load_split(data_root, "train")
    pos = {image_id: k for k, image_id in enumerate(train.ids)}
    masks = downsample_mask(train.masks[[pos[i] for i in ids]], grid).numpy()
    return dict(zip(ids, masks))


def evaluate_metrics(tables: Mapping[tuple[str, str, object], str | Path], data_root: str | Path,
                     weight_distance: Mapping[tuple[str, str], str | Path],
                     accuracy: Mapping[tuple[str, str], str | Path], *, grid: int, b: float,
                     effective: int, late_fraction: float, selection: str = "effective",
                     dataset: str = "",
                     architecture: str = "") -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Effective images, concept counts and the six metrics of every network and layer.

    Args:
        tables: quantify parquet path per (layer, network, epoch-or-"final").
        weight_distance: weight_distance.csv path per (layer, network) for the analysed networks.
        accuracy: metrics.json path per (layer, network), teacher included.
        grid, b, effective, late_fraction: SPEC sections 2 to 5.
        selection: ``effective`` (the paper's image rule) or ``usable``.

    Returns:
        ``(metrics, per_image, hypotheses)``: one row per (layer, network); one row per
        (layer, network, epoch, evaluated image) with its counts and weight distance; one row per
        (layer, hypothesis metric) saying whether the direction held.
    """
    frames = []
    for (layer, network, epoch), path in tables.items():
        t = pd.read_parquet(path)
        t["layer"], t["network"] = layer, network
        frames.append(t)
    long = pd.concat(frames, ignore_index=True).sort_values(["candidate_rank", "epoch"], kind="stable")
    fg = _fg_grids(data_root, list(dict.fromkeys(long["image_id"])), grid)

    metric_rows, per_image_rows = [], []
    for layer, by_layer in long.groupby("layer", sort=False):
        verdicts = {net: M.effective_images(by_layer[by_layer["network"] == net], fg, grid,
                                            late_fraction, rule=selection)
                    for net in ("distilled_student", "baseline")}
        both = verdicts["distilled_student"] & verdicts["baseline"]
        chosen = list(both[both].index[:effective])
        if len(chosen) < effective:
            log.warning("layer %s: only %d of %d candidate images are effective for both networks "
                        "(wanted %d); metrics use these", layer, len(chosen), len(both), effective)
        if not chosen:
            raise RuntimeError(f"layer {layer}: no candidate image is effective for both networks; "
                               "raise quantify.candidates or train longer")
        for network, rows in by_layer.groupby("network", sort=False):
            rows = rows[rows["image_id"].isin(chosen)]
            counts = M.count_concepts(rows, fg, grid, b)
            wd = None
            if network in verdicts:
                wd_table = pd.read_csv(weight_distance[(layer, network)])
                wd_table = wd_table[wd_table["layer"] == layer]  # the baseline tracks every layer
                wd = wd_table.set_index("epoch")["weight_distance"]
                counts["weight_distance"] = counts["epoch"].map(wd)
            acc = json.loads(Path(accuracy[(layer, network)]).read_text())["test_accuracy"]
            metric_rows.append({"dataset": dataset, "architecture": architecture, "layer": layer,
                                "network": network, **M.network_metrics(counts, wd),
                                "test_accuracy": acc, "n_candidates": len(both),
                                "n_effective_student": int(verdicts["distilled_student"].sum()),
                                "n_effective_baseline": int(verdicts["baseline"].sum())})
            counts.insert(0, "layer", layer)
            counts.insert(1, "network", network)
            per_image_rows.append(counts.drop(columns=["fg_cells", "bg_cells"]))
    order = {"teacher": 0, "distilled_student": 1, "baseline": 2}
    metrics = pd.DataFrame(metric_rows).sort_values(
        ["layer", "network"], key=lambda s: s.map(order) if s.name == "network" else s,
        kind="stable").reset_index(drop=True)
    per_image = pd.concat(per_image_rows, ignore_index=True)
    return metrics, per_image, M.compare_hypotheses(metrics)


def entropy_map_panels(tables: list[str | Path], per_image: pd.DataFrame, data_root: str | Path,
                       layer: str, *, grid: int, n_images: int, b: float) -> dict:
    """Arguments of :func:`kdconcepts.report.plot_entropy_maps` for the first evaluated images.

    Args:
        tables: final-checkpoint quantify parquets (teacher, student, baseline).
        per_image: ``results/tables/per_image.csv`` (gives the evaluated images and H_bar).
    """
    from kdconcepts.data import denormalize, load_split

    rows = per_image[per_image["layer"] == layer]
    ids = list(dict.fromkeys(rows["image_id"]))[:n_images]
    train = load_split(data_root, "train")
    pos = {image_id: k for k, image_id in enumerate(train.ids)}
    sel = [pos[i] for i in ids]
    images = denormalize(train.images[sel], train.meta).permute(0, 2, 3, 1).clamp(0, 1).numpy()
    entropy, h_bar = {}, {}
    for path in tables:
        t = pd.read_parquet(path).set_index("image_id")
        network = Path(path).parent.name
        entropy[network] = np.stack([np.asarray(t.loc[i, "entropy"]).reshape(grid, grid) for i in ids])
        of_net = rows[rows["network"] == network]
        h_bar[network] = float(of_net.loc[of_net["epoch"] == of_net["epoch"].max(), "h_bar"].iloc[0])
    return {"images": images, "entropy": entropy, "fg_grid": downsample_mask(train.masks[sel], grid).numpy(),
            "h_bar": h_bar, "b": b, "image_ids": ids}
