"""Glue between stored artefacts (checkpoints, prepared data, tables) and the library.

Each function here is one pipeline stage with paths in and data out; the Snakemake scripts in
``workflow/scripts/`` only unpack ``snakemake`` objects, call them and write the results.
torch and the quantifier are imported inside the stages that use them: the table-only jobs
(pooling, summaries) then start without torch, about 1.3 s of CPU each.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from kdconcepts import metrics as M
from kdconcepts import schedule as S

__all__ = ["candidate_ids", "evaluate_seed", "pool_seeds", "work_table", "entropy_map_panels", "read_table"]

log = logging.getLogger("kdconcepts")


def read_table(path: str | Path) -> pd.DataFrame:
    """A parquet result, or an error that names the file and says how to rebuild it."""
    try:
        return pd.read_parquet(path)
    except FileNotFoundError:
        raise
    except Exception as error:  # pyarrow raises several types for a torn or foreign file
        raise ValueError(f"{path} is corrupt or not a parquet table ({type(error).__name__}: {error}). "
                         f"Delete it; the next run rebuilds it.") from None


def candidate_ids(train_ids: Sequence[str], n_candidates: int, seed: int) -> list[str]:
    """The seeded candidate image ids, in sampling order (rank = position)."""
    return [train_ids[i] for i in S.candidate_indices(len(train_ids), n_candidates, seed)]


def _fg_grids(data_root, ids: Sequence[str], grid: int) -> dict[str, np.ndarray]:
    from kdconcepts.data import load_split
    from kdconcepts.quantify import downsample_mask

    if not ids:
        return {}
    train = load_split(data_root, "train")
    pos = {image_id: k for k, image_id in enumerate(train.ids)}
    masks = downsample_mask(train.masks[[pos[i] for i in ids]], grid).numpy()
    return dict(zip(ids, masks))


def _weight_distance(path: str | Path, layer: str) -> pd.Series:
    table = pd.read_csv(path)
    table = table[table["layer"] == layer]  # teacher and baseline track every layer
    return table.set_index("epoch")["weight_distance"]


def _long_table(maps: Sequence[tuple[str, str | Path]]) -> pd.DataFrame:
    """The maps of one seed (``maps.parquet`` per layer) as one long table, in candidate order then
    epoch."""
    frames = [read_table(path).assign(layer=layer) for layer, path in maps]
    return pd.concat([f for f in frames if len(f)], ignore_index=True) \
        .sort_values(["candidate_rank", "epoch"], kind="stable")


def _evaluated_images(by_layer: pd.DataFrame, layer: str, fg: Mapping[str, np.ndarray], *,
                      comparison: tuple[str, str], epochs: Sequence[int], grid: int, effective: int,
                      late_fraction: float, selection: str, chosen: pd.DataFrame | None) -> tuple[list[str], dict]:
    """The first ``effective`` candidates effective for both networks of a comparison (SPEC
    section 5), derived from the maps alone, and the comparison's row of ``selection.csv``.

    ``chosen`` (the job's ``chosen.csv``) must list exactly these: a check of the walk that
    decided which maps to make against the rule applied to the maps it made.
    """
    student = comparison[0]
    verdicts = {net: M.effective_images(by_layer[by_layer["network"] == net], fg, grid,
                                        late_fraction, rule=selection, epochs=epochs)
                for net in comparison}
    examined = list(dict.fromkeys(by_layer.loc[by_layer["network"].isin(comparison), "image_id"]))
    every = pd.Series(True, index=examined)
    for verdict in verdicts.values():
        every &= verdict.reindex(examined, fill_value=False)
    chosen_ids = list(every[every].index[:effective])
    if chosen is not None:
        expected = chosen.loc[chosen["comparison"] == student, "image_id"].astype(str).tolist()
        if expected != chosen_ids:
            raise RuntimeError(f"layer {layer}, {student}: the maps give evaluated images {chosen_ids}, "
                               f"but chosen.csv lists {expected}")
    if len(chosen_ids) < effective:
        log.warning("layer %s: only %d of %d examined candidate images are effective for both %s "
                    "(wanted %d); metrics use these", layer, len(chosen_ids), len(examined),
                    " and ".join(comparison), effective)
    if not chosen_ids:
        raise RuntimeError(f"layer {layer}: no candidate image is effective for both {' and '.join(comparison)}; "
                           "raise quantify.candidates or train longer")
    return chosen_ids, {"layer": layer, "comparison": student, "examined": len(examined),
                        **{f"effective_{net}": int(v.sum()) for net, v in verdicts.items()},
                        "evaluated": len(chosen_ids)}


def _network_tables(rows: pd.DataFrame, fg: Mapping[str, np.ndarray], *, grid: int, b: float,
                    weight_distance: pd.Series | None,
                    zero_concept_images: str) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """Counts per (epoch, image) and the per-image metric values of one network and layer on
    the evaluated images, and how many of its selected maps never reached the target entropy."""
    counts = M.count_concepts(rows, fg, grid, b)
    if weight_distance is not None:
        counts["weight_distance"] = counts["epoch"].map(weight_distance)
    per_image = M.image_metrics(counts, weight_distance, zero_concept_images)
    missed = 0
    if "target_reached" in rows:
        missed = int((~rows["target_reached"] & rows["usable"]).sum())
        reached = rows.set_index(["epoch", "image_id"])["target_reached"]
        counts["target_reached"] = [bool(reached.get((e, i), True)) for e, i in
                                    zip(counts["epoch"], counts["image_id"])]
    return counts.drop(columns=["fg_cells", "bg_cells"]), per_image, missed


def _warn_premise(metric_rows: Sequence[dict], seed: int | None, margin: float) -> None:
    for layer in dict.fromkeys(r["layer"] for r in metric_rows):
        acc = {r["network"]: r["test_accuracy"] for r in metric_rows if r["layer"] == layer}
        if "teacher" in acc and "baseline" in acc:
            held = M.premise(pd.DataFrame([acc]), margin)
            if not held["premise_held"].all():
                log.warning("PREMISE NOT HELD (seed %s): the teacher's test accuracy %.4f leads the "
                            "baseline's %.4f by %+.4f, less than the margin %.2f "
                            "(metrics.premise_margin); the paper's claims cannot be tested on this run",
                            seed, acc["teacher"], acc["baseline"],
                            held["teacher_minus_baseline"].iloc[0], margin)


_NETWORK_ORDER = {"teacher": 0, "distilled_student": 1, "logit_student": 2, "baseline": 3}


def evaluate_seed(quantified: Mapping[str, Mapping[str, str | Path]], data_root: str | Path,
                  weight_distance: Mapping[tuple[str, str], str | Path],
                  accuracy: Mapping[tuple[str, str], str | Path], *, comparisons: Sequence[tuple[str, str]],
                  epochs: Sequence[int], grid: int, b: float, effective: int, late_fraction: float,
                  selection: str = "effective", dataset: str = "", architecture: str = "",
                  seed: int | None = None, premise_margin: float = M.PREMISE_MARGIN,
                  zero_concept_images: str = "keep") -> dict[str, pd.DataFrame]:
    """Effective images, concept counts and the six metrics of one seed, every layer.

    Each comparison (student, baseline) is evaluated on its own images, the first ``effective``
    effective for both (SPEC section 5), so the baseline and the teacher appear once per
    comparison (column ``comparison``: the student's name) and H_bar is that of those images.

    Args:
        quantified: per layer, the quantify job's ``maps`` (parquet) and ``chosen`` (csv).
        weight_distance: weight_distance.csv per (layer, network) for the analysed networks.
        accuracy: metrics.json per (layer, network), teacher included.
        comparisons: the (student, baseline) pairs.
        epochs: the configured checkpoints.
        grid, b, effective, late_fraction: SPEC sections 2 to 5.
        selection: ``effective`` (the paper's image rule) or ``usable``.
        premise_margin: the teacher's smallest lead over the baseline (warned about below it).
        zero_concept_images: ``metrics.zero_concept_images`` (:func:`kdconcepts.metrics.image_metrics`).

    Returns:
        ``metrics`` (one row per layer, comparison and network), ``per_image`` (per layer,
        comparison, network, epoch and evaluated image: counts, H_bar, weight distance),
        ``images`` (per layer, comparison, network and evaluated image: the values the metrics
        average), ``hypotheses`` (which way each difference went in this seed), ``selection``
        (per layer and comparison: candidates examined, effective per network, evaluated).
    """
    long = _long_table([(layer, paths["maps"]) for layer, paths in quantified.items()])
    fg = _fg_grids(data_root, list(dict.fromkeys(long["image_id"])), grid)
    metric_rows, per_image_rows, image_rows, selection_rows = [], [], [], []
    for layer, by_layer in long.groupby("layer", sort=False):
        chosen = pd.read_csv(quantified[layer]["chosen"]) if quantified[layer].get("chosen") else None
        for comparison in comparisons:
            chosen_ids, selected = _evaluated_images(
                by_layer, layer, fg, comparison=tuple(comparison), epochs=epochs, grid=grid,
                effective=effective, late_fraction=late_fraction, selection=selection, chosen=chosen)
            selection_rows.append({"seed": seed, **selected})
            for network in ("teacher", *comparison):
                rows = by_layer[(by_layer["network"] == network) & by_layer["image_id"].isin(chosen_ids)]
                wd = _weight_distance(weight_distance[(layer, network)], layer) if network != "teacher" else None
                counts, per_image, missed = _network_tables(rows, fg, grid=grid, b=b, weight_distance=wd,
                                                            zero_concept_images=zero_concept_images)
                acc = json.loads(Path(accuracy[(layer, network)]).read_text())["test_accuracy"]
                where = {"seed": seed, "layer": layer, "comparison": comparison[0], "network": network}
                metric_rows.append({"dataset": dataset, "architecture": architecture, **where,
                                    **M.aggregate_images(per_image), "test_accuracy": acc,
                                    "maps_missing_target": missed})
                for frame, into in ((per_image, image_rows), (counts, per_image_rows)):
                    into.append(pd.concat([pd.DataFrame(where, index=frame.index), frame], axis=1))
                if missed:
                    log.warning("layer %s, %s: %d selected map(s) never reached the target entropy; "
                                "they are flagged target_reached = False in per_image.csv", layer, network,
                                missed)
    _warn_premise(metric_rows, seed, premise_margin)
    metrics = pd.DataFrame(metric_rows)
    hypotheses = M.compare_hypotheses(metrics, students=[student for student, _ in comparisons])
    hypotheses.insert(0, "seed", seed)
    return {"metrics": metrics, "per_image": pd.concat(per_image_rows, ignore_index=True),
            "images": pd.concat(image_rows, ignore_index=True), "hypotheses": hypotheses,
            "selection": pd.DataFrame(selection_rows)}


def work_table(maps: Sequence[tuple[str, str | Path]], rounds: Sequence[tuple[str, str | Path]] = (),
               seed: int | None = None) -> pd.DataFrame:
    """Single-sample passes spent per (layer, network, checkpoint), from the maps (``maps.parquet``
    per layer) and the rounds' sigma_f checks (``rounds.csv``; network ``sigma_f check``)."""
    rows = []
    for layer, path in maps:
        t = read_table(path)
        for (network, epoch), of in t.groupby(["network", "epoch"], sort=False):
            label = "final" if network == "teacher" else str(epoch)
            rows.append({"seed": seed, "layer": layer, "network": network, "epoch": label, "maps": int(len(of)),
                         "optimisation_steps": int(of["passes"].sum()),
                         "sample_passes": int(of["sample_passes"].sum())})
    for layer, path in rounds:
        v = pd.read_csv(path)
        rows.append({"seed": seed, "layer": layer, "network": "sigma_f check", "epoch": "early",
                     "maps": 0, "optimisation_steps": 0, "sample_passes": int(v["check_passes"].sum())})
    work = pd.DataFrame(rows)
    if len(work):
        work = work.groupby(["seed", "layer", "network", "epoch"], sort=False, as_index=False).sum()
    return work


def pool_seeds(per_seed: Mapping[str, Sequence[str | Path]], *, students: Sequence[str],
               resamples: int, confidence: float,
               premise_margin: float = M.PREMISE_MARGIN) -> dict[str, pd.DataFrame]:
    """The seeds' tables side by side, and the pooled verdicts with confidence intervals.

    Args:
        per_seed: table name (``metrics``, ``images``, ``per_image``, ``selection``, ``work``)
            -> the seeds' csv files.
        premise_margin: the teacher's smallest lead over the baseline (:func:`kdconcepts.metrics.premise`).

    Returns:
        The concatenated tables (``metrics`` also gets rows ``seed = "pooled"``, the mean over
        seeds), ``hypotheses`` (:func:`kdconcepts.metrics.pooled_hypotheses`), ``differences``
        (per seed, with the per-seed Wilcoxon test, and pooled, for the figure), ``teacher``
        (the teacher beside the students: :func:`kdconcepts.metrics.teacher_reference`) and
        ``premise`` (test accuracies per seed, the teacher's lead and whether it reaches
        ``premise_margin``).
    """
    out = {name: pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)
           for name, paths in per_seed.items()}
    metrics = out["metrics"]
    keys = ["dataset", "architecture", "layer", "comparison", "network"]
    value_columns = [c for c in metrics.columns if c not in keys + ["seed"]]
    pooled = metrics.groupby(keys, sort=False, dropna=False, as_index=False)[value_columns].mean()
    pooled.insert(2, "seed", "pooled")
    out["metrics"] = pd.concat([metrics.astype({"seed": object}), pooled], ignore_index=True)
    images = out["images"]
    out["hypotheses"] = M.pooled_hypotheses(images, students, confidence=confidence)
    per_seed_diff = M.seed_differences(images, students, resamples=resamples, confidence=confidence)
    pooled_diff = out["hypotheses"][["layer", "student", "metric", "direction", "difference",
                                     "ci_low", "ci_high", "n_pairs"]].assign(seed="pooled")
    out["differences"] = pd.concat([per_seed_diff.astype({"seed": object}), pooled_diff], ignore_index=True)
    out["teacher"] = M.teacher_reference(images, students, confidence=confidence)
    accuracy = metrics.pivot_table(index="seed", columns="network", values="test_accuracy", aggfunc="first")
    out["premise"] = M.premise(accuracy.reset_index(), premise_margin)
    return out


def entropy_map_panels(maps: str | Path, per_image: pd.DataFrame, data_root: str | Path, layer: str, *,
                       grid: int, n_images: int, b: float, seed: int, final_epoch: int) -> dict:
    """Arguments of :func:`kdconcepts.report.plot_entropy_maps` for the first evaluated images of
    one seed and its first comparison: the teacher, that comparison's student and baseline, and
    any other student whose final maps of those images were made.

    Args:
        maps: that seed's ``maps.parquet`` of ``layer``.
        per_image: ``per_image.csv`` (gives the evaluated images and H_bar).
    """
    from kdconcepts.data import denormalize, load_split
    from kdconcepts.quantify import downsample_mask

    rows = per_image[(per_image["layer"] == layer) & (per_image["seed"] == seed)]
    if "comparison" in rows:
        rows = rows[rows["comparison"] == rows["comparison"].iloc[0]]
    ids = list(dict.fromkeys(rows["image_id"]))[:n_images]
    train = load_split(data_root, "train")
    pos = {image_id: k for k, image_id in enumerate(train.ids)}
    sel = [pos[i] for i in ids]
    images = denormalize(train.images[sel], train.meta).permute(0, 2, 3, 1).clamp(0, 1).numpy()
    table = read_table(maps)
    final = table[(table["network"] == "teacher") | (table["epoch"] == final_epoch)]
    entropy, h_bar = {}, {}
    for network, of_network in final.groupby("network", sort=False):
        by_id = of_network.set_index("image_id")
        if not set(ids) <= set(by_id.index):
            continue
        entropy[network] = np.stack([np.asarray(by_id.loc[i, "entropy"]).reshape(grid, grid) for i in ids])
        of_net = rows[rows["network"] == network]
        if len(of_net):
            h_bar[network] = float(of_net.loc[of_net["epoch"] == of_net["epoch"].max(), "h_bar"].iloc[0])
    entropy = {n: entropy[n] for n in sorted(entropy, key=lambda n: _NETWORK_ORDER.get(n, 9)) if n in h_bar}
    return {"images": images, "entropy": entropy, "fg_grid": downsample_mask(train.masks[sel], grid).numpy(),
            "h_bar": h_bar, "b": b, "image_ids": ids}
