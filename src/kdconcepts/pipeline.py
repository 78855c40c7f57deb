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

__all__ = ["candidate_ids", "quantify_at", "quantify_all_candidates", "quantify_late_step",
           "round_verdict", "quantify_round", "evaluate_seed", "pool_seeds", "work_table",
           "entropy_map_panels", "read_table"]

log = logging.getLogger("kdconcepts")

# Quantify tables: the engine's columns (kdconcepts.quantify.pipeline.TABLE_COLUMNS) after these.
_TABLE_PREFIX = ("image_id", "epoch", "candidate_rank")


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


def _load(checkpoint: str | Path, device: str):
    from kdconcepts.checkpoints import load_checkpoint
    from kdconcepts.runtime import resolve_device

    dev = resolve_device(device)
    model, info = load_checkpoint(checkpoint, map_location=dev)
    return model.eval(), info, dev


def quantify_at(checkpoint: str | Path, data_root: str | Path, layer: str, quantify_cfg: Mapping,
                image_ids: Sequence[str], *, seed: int, n_candidates: int,
                device: str = "auto", normalize: str = "dataset") -> pd.DataFrame:
    """Sigma maps of the given training images at one checkpoint (one row per image).

    Every network and checkpoint sees the same image with the same noise (keyed by seed and
    image id), so maps differ only through the network, whatever else is quantified with them.
    Columns: ``image_id``, ``epoch``, ``candidate_rank`` (its place among the first
    ``n_candidates`` candidates, -1 if not among them), then the engine's
    (:func:`kdconcepts.quantify.quantify_images`). ``normalize`` is the config's
    ``dataset.normalize`` (:func:`kdconcepts.data.load_split`): the images, and so the noise
    added to them, are in the space the network was trained in.
    """
    import torch

    from kdconcepts.data import load_split
    from kdconcepts.models import resolve_layer
    from kdconcepts.quantify import SigmaConfig, quantify_images
    from kdconcepts.quantify.pipeline import TABLE_COLUMNS

    cfg = SigmaConfig.from_mapping(quantify_cfg)
    train = load_split(data_root, "train", normalize=normalize)  # the space the network sees
    ranks = {image_id: r for r, image_id in enumerate(candidate_ids(train.ids, n_candidates, seed))}
    model, info, dev = _load(checkpoint, str(device))
    epoch = int(info.get("epoch", -1))
    image_ids = list(image_ids)
    if not image_ids:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in _TABLE_PREFIX + TABLE_COLUMNS[1:]})
    position = {image_id: k for k, image_id in enumerate(train.ids)}
    images = train.images[torch.as_tensor([position[i] for i in image_ids])]
    node = resolve_layer(info["arch"], layer)
    log.info("quantify %s layer %s (%s): %d images on %s", checkpoint, layer, node, len(image_ids), dev)
    table = quantify_images(model, node, images, image_ids, cfg, seed=seed, device=dev,
                            max_batch=int(quantify_cfg["max_batch"]), precision=quantify_cfg["precision"],
                            progress_desc=f"{info.get('role', 'net')} epoch {info.get('epoch')}")
    table.insert(1, "epoch", epoch)
    table.insert(2, "candidate_rank", [ranks.get(i, -1) for i in image_ids])
    return table


def quantify_all_candidates(checkpoint: str | Path, data_root: str | Path, layer: str,
                            quantify_cfg: Mapping, *, seed: int, device: str = "auto",
                            normalize: str = "dataset") -> pd.DataFrame:
    """Every candidate at one checkpoint (the exhaustive schedule)."""
    from kdconcepts.data import read_index

    ids = [row.id for row in read_index(data_root) if row.split == "train"]
    n = int(quantify_cfg["candidates"])
    return quantify_at(checkpoint, data_root, layer, quantify_cfg, candidate_ids(ids, n, seed),
                       seed=seed, n_candidates=n, device=device, normalize=normalize)


def _fg_grids(data_root, ids: Sequence[str], grid: int) -> dict[str, np.ndarray]:
    from kdconcepts.data import load_split
    from kdconcepts.quantify import downsample_mask

    if not ids:
        return {}
    train = load_split(data_root, "train")
    pos = {image_id: k for k, image_id in enumerate(train.ids)}
    masks = downsample_mask(train.masks[[pos[i] for i in ids]], grid).numpy()
    return dict(zip(ids, masks))


def _round_candidates(data_root, seed: int, ranks: range) -> list[str]:
    """The candidate ids of a round (its ``ranks``, a slice of the seeded candidate order)."""
    from kdconcepts.data import read_index

    ids = [row.id for row in read_index(data_root) if row.split == "train"]
    order = candidate_ids(ids, ranks.stop, seed)  # the order's start does not depend on its length
    return [order[r] for r in ranks]


def quantify_late_step(checkpoint: str | Path, data_root: str | Path, layer: str,
                       quantify_cfg: Mapping, *, seed: int, ranks: range,
                       newer: Mapping[str, str | Path], device: str = "auto",
                       normalize: str = "dataset", selection: str = "effective") -> pd.DataFrame:
    """One late checkpoint of one network in a round of the effective-first schedule.

    Quantifies the round's candidates (``ranks``) that are still in the running: all of them
    at the newest late checkpoint, else those that passed the image rule ``selection`` (config
    ``metrics.selection``, the one the metrics apply) at the previous (newer) late step for
    every network (``newer``: network -> that step's table).
    """
    candidates = _round_candidates(data_root, seed, ranks)
    tables = {network: read_table(path) for network, path in newer.items()}
    fg = _fg_grids(data_root, candidates, int(quantify_cfg["grid"]))
    alive = S.survivors(candidates, tables, fg, int(quantify_cfg["grid"]), selection)
    log.info("candidates %d-%d: %d of %d still in the running", ranks.start, ranks.stop - 1, len(alive),
             len(candidates))
    return quantify_at(checkpoint, data_root, layer, quantify_cfg, alive, seed=seed,
                       n_candidates=ranks.stop, device=device, normalize=normalize)


def round_verdict(oldest: Mapping[str, str | Path], early: Mapping[str, Mapping[int, str | Path]],
                  data_root: str | Path, layer: str, quantify_cfg: Mapping, *, seed: int,
                  ranks: range, device: str = "auto", normalize: str = "dataset",
                  selection: str = "effective") -> pd.DataFrame:
    """Which candidates of a round are effective for every analysed network.

    Args:
        oldest: network -> its table at the oldest late checkpoint of this round.
        early: network -> early epoch -> checkpoint path; the late survivors' sigma_f is
            computed there (one forward of K samples per image, not an optimisation).
        selection: the image rule at the late checkpoints (config ``metrics.selection``).

    Returns:
        :func:`kdconcepts.schedule.verdict_table`'s columns and ``check_passes``, the
        single-sample passes this check spent on each image.
    """
    from kdconcepts.models import resolve_layer
    from kdconcepts.quantify import SigmaConfig, estimate_sigma_f

    grid = int(quantify_cfg["grid"])
    candidates = _round_candidates(data_root, seed, ranks)
    tables = {network: read_table(path) for network, path in oldest.items()}
    fg = _fg_grids(data_root, candidates, grid)
    passed = S.survivors(candidates, tables, fg, grid, selection)
    cfg = SigmaConfig.from_mapping(quantify_cfg)
    usable: dict[str, dict[int, set[str]]] = {}
    if passed:
        import torch

        from kdconcepts.data import load_split
        train = load_split(data_root, "train", normalize=normalize)
        position = {image_id: k for k, image_id in enumerate(train.ids)}
        images = train.images[torch.as_tensor([position[i] for i in passed])]
        for network, by_epoch in early.items():
            usable[network] = {}
            for epoch, checkpoint in by_epoch.items():
                model, info, dev = _load(checkpoint, str(device))
                _, ok = estimate_sigma_f(model, resolve_layer(info["arch"], layer), images, cfg, seed=seed,
                                         image_keys=passed, device=dev,
                                         max_batch=int(quantify_cfg["max_batch"]),
                                         precision=quantify_cfg["precision"])
                usable[network][int(epoch)] = {i for i, good in zip(passed, ok.tolist()) if good}
    table = S.verdict_table(candidates, list(ranks), passed, usable)
    checks = sum(len(by_epoch) for by_epoch in early.values())
    table["check_passes"] = np.where(table["image_id"].isin(passed), checks * cfg.samples, 0)
    log.info("candidates %d-%d: %d of %d effective for %s", ranks.start, ranks.stop - 1,
             int(table["effective"].sum()), len(table), ", ".join(oldest))
    return table


def quantify_round(late: Mapping[str, Mapping[int, str | Path]],
                   early: Mapping[str, Mapping[int, str | Path]],
                   tables: Mapping[str, Mapping[int, str | Path]], data_root: str | Path, layer: str,
                   quantify_cfg: Mapping, *, seed: int, ranks: range, device: str = "auto",
                   normalize: str = "dataset", selection: str = "effective") -> pd.DataFrame:
    """One whole round of the effective-first schedule: :func:`quantify_late_step` at every
    late checkpoint of every network, newest first, then :func:`round_verdict`.

    Args:
        late: network -> late epoch -> checkpoint path.
        early: network -> early epoch -> checkpoint path (the verdict's sigma_f check).
        tables: network -> late epoch -> where that step's table is written (parquet,
            atomically, as soon as it is made: the next, older step reads its survivors there).

    Returns:
        The round's verdict table (see :func:`round_verdict`).
    """
    from kdconcepts.runtime import atomic_path

    epochs = sorted({int(e) for by_epoch in late.values() for e in by_epoch}, reverse=True)
    if any(sorted(map(int, by_epoch)) != sorted(epochs) for by_epoch in late.values()):
        raise ValueError(f"every network needs the late checkpoints {epochs}: {dict(late)}")
    newer: dict[str, str | Path] = {}
    for epoch in epochs:
        made = {}
        for network, by_epoch in late.items():
            table = quantify_late_step(by_epoch[epoch], data_root, layer, quantify_cfg, seed=seed,
                                       ranks=ranks, newer=newer, device=device, normalize=normalize,
                                       selection=selection)
            with atomic_path(tables[network][epoch]) as tmp:
                table.to_parquet(tmp, index=False)
            made[network] = tables[network][epoch]
        newer = made
    return round_verdict(newer, early, data_root, layer, quantify_cfg, seed=seed, ranks=ranks,
                         device=device, normalize=normalize, selection=selection)


def _weight_distance(path: str | Path, layer: str) -> pd.Series:
    table = pd.read_csv(path)
    table = table[table["layer"] == layer]  # teacher and baseline track every layer
    return table.set_index("epoch")["weight_distance"]


def _long_table(tables: Sequence[tuple[str, str, object, str | Path]]) -> pd.DataFrame:
    """The quantify tables of one seed as one long table, in candidate order then epoch."""
    frames = []
    for layer, network, _, path in tables:
        t = read_table(path)
        t["layer"], t["network"] = layer, network
        frames.append(t)
    return pd.concat([f for f in frames if len(f)], ignore_index=True) \
        .sort_values(["candidate_rank", "epoch"], kind="stable")


def _evaluated_images(by_layer: pd.DataFrame, layer: str, fg: Mapping[str, np.ndarray], *,
                      networks: Sequence[str], epochs: Sequence[int], grid: int, effective: int,
                      late_fraction: float, selection: str,
                      chosen: Mapping[str, str | Path] | None) -> tuple[list[str], dict]:
    """The first ``effective`` candidates effective for every analysed network, and the
    layer's row of ``selection.csv`` (candidates examined, effective per network, evaluated)."""
    verdicts = {net: M.effective_images(by_layer[by_layer["network"] == net], fg, grid,
                                        late_fraction, rule=selection, epochs=epochs)
                for net in networks}
    examined = list(dict.fromkeys(by_layer.loc[by_layer["network"].isin(networks), "image_id"]))
    every = pd.Series(True, index=examined)
    for verdict in verdicts.values():
        every &= verdict.reindex(examined, fill_value=False)
    chosen_ids = list(every[every].index[:effective])
    if chosen is not None and layer in chosen:
        expected = pd.read_csv(chosen[layer])["image_id"].astype(str).tolist()
        if expected != chosen_ids:
            raise RuntimeError(f"layer {layer}: the tables give evaluated images {chosen_ids}, "
                               f"but {chosen[layer]} lists {expected}")
    if len(chosen_ids) < effective:
        log.warning("layer %s: only %d of %d examined candidate images are effective for every "
                    "analysed network (wanted %d); metrics use these", layer, len(chosen_ids),
                    len(examined), effective)
    if not chosen_ids:
        raise RuntimeError(f"layer {layer}: no candidate image is effective for every analysed "
                           "network; raise quantify.candidates or train longer")
    return chosen_ids, {"layer": layer, "examined": len(examined),
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


def evaluate_seed(tables: Sequence[tuple[str, str, object, str | Path]], data_root: str | Path,
                  weight_distance: Mapping[tuple[str, str], str | Path],
                  accuracy: Mapping[tuple[str, str], str | Path], *, networks: Sequence[str],
                  epochs: Sequence[int], grid: int, b: float, effective: int, late_fraction: float,
                  selection: str = "effective", chosen: Mapping[str, str | Path] | None = None,
                  dataset: str = "", architecture: str = "", seed: int | None = None,
                  premise_margin: float = M.PREMISE_MARGIN,
                  zero_concept_images: str = "keep") -> dict[str, pd.DataFrame]:
    """Effective images, concept counts and the six metrics of one seed, every layer.

    Args:
        tables: (layer, network, epoch or "final", parquet path) rows; a (layer, network, epoch)
            may have several tables (one per round), which are concatenated.
        weight_distance: weight_distance.csv per (layer, network) for the analysed networks.
        accuracy: metrics.json per (layer, network), teacher included.
        networks: the analysed networks (the baseline and the students).
        epochs: the configured checkpoints.
        grid, b, effective, late_fraction: SPEC sections 2 to 5.
        selection: ``effective`` (the paper's image rule) or ``usable``.
        chosen: per layer, the effective-first schedule's chosen.csv: the images derived here
            must be exactly those (a consistency check of the two schedules' code paths).
        premise_margin: the teacher's smallest lead over the baseline (warned about below it).
        zero_concept_images: ``metrics.zero_concept_images`` (:func:`kdconcepts.metrics.image_metrics`).

    Returns:
        ``metrics`` (one row per layer and network), ``per_image`` (per layer, network, epoch and
        evaluated image: counts, H_bar, weight distance), ``images`` (per layer, network and
        evaluated image: the values the metrics average), ``hypotheses`` (which way each
        difference went in this seed), ``selection`` (per layer: candidates examined, effective
        per network, evaluated).
    """
    long = _long_table(tables)
    fg = _fg_grids(data_root, list(dict.fromkeys(long["image_id"])), grid)
    metric_rows, per_image_rows, image_rows, selection_rows = [], [], [], []
    for layer, by_layer in long.groupby("layer", sort=False):
        chosen_ids, selected = _evaluated_images(
            by_layer, layer, fg, networks=networks, epochs=epochs, grid=grid, effective=effective,
            late_fraction=late_fraction, selection=selection, chosen=chosen)
        selection_rows.append({"seed": seed, **selected})
        for network, rows in by_layer.groupby("network", sort=False):
            wd = _weight_distance(weight_distance[(layer, network)], layer) if network in networks else None
            counts, per_image, missed = _network_tables(
                rows[rows["image_id"].isin(chosen_ids)], fg, grid=grid, b=b, weight_distance=wd,
                zero_concept_images=zero_concept_images)
            acc = json.loads(Path(accuracy[(layer, network)]).read_text())["test_accuracy"]
            metric_rows.append({"dataset": dataset, "architecture": architecture, "seed": seed,
                                "layer": layer, "network": network, **M.aggregate_images(per_image),
                                "test_accuracy": acc, "maps_missing_target": missed})
            for frame, into in ((per_image, image_rows), (counts, per_image_rows)):
                into.append(pd.concat([pd.DataFrame({"seed": seed, "layer": layer, "network": network},
                                                    index=frame.index), frame], axis=1))
            if missed:
                log.warning("layer %s, %s: %d selected map(s) never reached the target entropy; "
                            "they are flagged target_reached = False in per_image.csv", layer, network,
                            missed)
    _warn_premise(metric_rows, seed, premise_margin)
    metrics = pd.DataFrame(metric_rows).sort_values(
        ["layer", "network"], key=lambda s: s.map(_NETWORK_ORDER) if s.name == "network" else s,
        kind="stable").reset_index(drop=True)
    hypotheses = M.compare_hypotheses(metrics, students=[n for n in networks if n != "baseline"])
    hypotheses.insert(0, "seed", seed)
    return {"metrics": metrics, "per_image": pd.concat(per_image_rows, ignore_index=True),
            "images": pd.concat(image_rows, ignore_index=True), "hypotheses": hypotheses,
            "selection": pd.DataFrame(selection_rows)}


def work_table(tables: Sequence[tuple[str, str, object, str | Path]],
               verdicts: Sequence[tuple[str, str | Path]] = (), seed: int | None = None) -> pd.DataFrame:
    """Single-sample passes spent per (layer, network, checkpoint), from the quantify tables and
    the rounds' sigma_f checks (network ``sigma_f check``)."""
    rows = []
    for layer, network, epoch, path in tables:
        t = read_table(path)
        rows.append({"seed": seed, "layer": layer, "network": network, "epoch": str(epoch),
                     "maps": int(len(t)), "optimisation_steps": int(t["passes"].sum()) if len(t) else 0,
                     "sample_passes": int(t["sample_passes"].sum()) if len(t) else 0})
    for layer, path in verdicts:
        v = pd.read_csv(path)
        rows.append({"seed": seed, "layer": layer, "network": "sigma_f check", "epoch": "early",
                     "maps": 0, "optimisation_steps": 0, "sample_passes": int(v["check_passes"].sum())})
    work = pd.DataFrame(rows)
    if len(work):
        work = work.groupby(["seed", "layer", "network", "epoch"], sort=False, as_index=False).sum()
    return work


def stale_schedules(seed_dirs: Sequence[str | Path], layers: Sequence[str], *, effective: int,
                    round_size: int, candidates: int) -> list[str]:
    """What the effective-first rounds on disk say is unfinished, per seed and layer, in words.

    A run whose changed settings make a round fail more candidates can end with a seed whose
    rounds on disk ask for another round, and whose chosen images and tables are still the old
    ones (Snakemake decided the rounds to run before the checkpoints reran; docs/ARCHITECTURE.md,
    "Known problem"). Pooling such a seed would mix old and new tables; this names it instead.
    """
    problems = []
    for folder in map(Path, seed_dirs):
        for layer in layers:
            base = folder / "quantify" / layer
            rounds = sorted(base.glob("round_*/verdict.csv"), key=lambda p: int(p.parent.name[6:]))
            if not rounds:
                continue
            verdicts = [pd.read_csv(p) for p in rounds]
            if S.needs_another_round(verdicts, effective, round_size, candidates):
                problems.append(f"{base}: the rounds on disk ask for round {len(rounds)}, which did not run")
                continue
            chosen = base / "chosen.csv"
            wanted = S.choose(verdicts, effective)["image_id"].astype(str).tolist()
            if not chosen.is_file() or pd.read_csv(chosen)["image_id"].astype(str).tolist() != wanted:
                problems.append(f"{chosen} does not list the images its rounds choose ({wanted})")
    return problems


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
    value_columns = [c for c in metrics.columns if c not in
                     ("dataset", "architecture", "seed", "layer", "network")]
    pooled = metrics.groupby(["dataset", "architecture", "layer", "network"], sort=False, dropna=False,
                             as_index=False)[value_columns].mean()
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


def entropy_map_panels(tables: Mapping[str, Sequence[str | Path]], per_image: pd.DataFrame,
                       data_root: str | Path, layer: str, *, grid: int, n_images: int, b: float,
                       seed: int) -> dict:
    """Arguments of :func:`kdconcepts.report.plot_entropy_maps` for the first evaluated images
    of one seed.

    Args:
        tables: network -> its final-checkpoint quantify tables (teacher, students, baseline).
        per_image: ``per_image.csv`` (gives the evaluated images and H_bar).
    """
    from kdconcepts.data import denormalize, load_split
    from kdconcepts.quantify import downsample_mask

    rows = per_image[(per_image["layer"] == layer) & (per_image["seed"] == seed)]
    ids = list(dict.fromkeys(rows["image_id"]))[:n_images]
    train = load_split(data_root, "train")
    pos = {image_id: k for k, image_id in enumerate(train.ids)}
    sel = [pos[i] for i in ids]
    images = denormalize(train.images[sel], train.meta).permute(0, 2, 3, 1).clamp(0, 1).numpy()
    entropy, h_bar = {}, {}
    for network, paths in tables.items():
        t = pd.concat([read_table(p) for p in paths], ignore_index=True).set_index("image_id")
        entropy[network] = np.stack([np.asarray(t.loc[i, "entropy"]).reshape(grid, grid) for i in ids])
        of_net = rows[rows["network"] == network]
        h_bar[network] = float(of_net.loc[of_net["epoch"] == of_net["epoch"].max(), "h_bar"].iloc[0])
    return {"images": images, "entropy": entropy, "fg_grid": downsample_mask(train.masks[sel], grid).numpy(),
            "h_bar": h_bar, "b": b, "image_ids": ids}
