"""All sigma maps of one (output tree, seed, layer), in one job that resumes from the maps on disk.

The effective-first walk (``kdconcepts.schedule`` explains it) decides which maps it needs from
the maps it has made: candidates come in rounds; in a round each network's late checkpoints are
quantified newest first, survivors only; the survivors' sigma_f is checked at the early
checkpoints; rounds go on until every comparison (a student and the baseline) has its first E
effective images, or the candidates run out; then the chosen images are quantified at the early
checkpoints and at the teacher's final one. ``schedule: exhaustive`` quantifies every candidate
at every checkpoint first and then walks the same way (every map is then already made).

Why one job, not one per round: the rounds are a chain anyway, and as Snakemake checkpoints a
missing or deleted round file was not remade by a plain rerun (issue 32). Here every map is a
cache entry (:class:`MapCache`, ``results/.maps/``, shared by the runs of a clone) keyed by the
content of its checkpoint and by the settings, so a rerun after a crash, a deleted output or a
retrained network recomputes exactly the maps that are missing or stale and reads the rest, and
another run with the same networks (``config/extended.yaml`` beside the default) reads them.

Each comparison (student, baseline) gets its own first E effective images (SPEC section 5:
"effective for both"), so adding a student changes no other comparison's images.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from kdconcepts import schedule as S
from kdconcepts.manifest import file_sha256

__all__ = ["MapCache", "SeedMaps", "quantify_seed", "ROUND_COLUMNS", "CHOSEN_COLUMNS"]

log = logging.getLogger("kdconcepts")

#: rounds.csv: one row per (comparison, round, candidate).
ROUND_COLUMNS = ["comparison", "round", "candidate_rank", "image_id", "effective", "reason", "check_passes"]
#: chosen.csv: the evaluated images of each comparison, in candidate order.
CHOSEN_COLUMNS = ["comparison", "candidate_rank", "image_id", "round"]
# Quantify tables: the engine's columns after these.
_PREFIX = ("network", "epoch", "candidate_rank")


class MapCache:
    """Maps already made, one parquet file per checkpoint, in ``folder``.

    A file's name carries a key of the checkpoint's content (sha256) and of everything else the
    maps depend on (``settings``: the sigma settings, seed, layer, input normalisation and the
    data's hash), so a retrained network or a changed setting finds no entry and recomputes,
    while an unchanged one reads its maps back. A file that cannot be read is set aside
    (``*.corrupt``) and its maps recomputed.
    """

    def __init__(self, folder: str | Path, settings: Mapping) -> None:
        self.folder = Path(folder)
        self.settings_key = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()
        self.used: set[Path] = set()

    def path(self, network: str, epoch: object, checkpoint: str | Path) -> Path:
        key = hashlib.sha256((self.settings_key + file_sha256(checkpoint)).encode()).hexdigest()[:20]
        return self.folder / f"{network}_epoch_{epoch}_{key}.parquet"

    def read(self, path: Path) -> pd.DataFrame | None:
        self.used.add(path)
        if not path.exists():
            return None
        try:
            return pd.read_parquet(path)
        except Exception as error:  # a torn or foreign file: recompute its maps
            log.warning("cached maps %s cannot be read (%s: %s); set aside as .corrupt, recomputing",
                        path, type(error).__name__, error)
            path.replace(path.with_suffix(".corrupt"))
            return None

    def write(self, path: Path, table: pd.DataFrame) -> None:
        from kdconcepts.runtime import atomic_path

        with atomic_path(path) as tmp:
            table.to_parquet(tmp, index=False)


class SeedMaps:
    """The maps of one (seed, layer) job: made on demand, read from the cache when there.

    Args:
        checkpoints: network -> epoch -> checkpoint path (the teacher: ``{"final": path}``).
        candidates: the seeded candidate ids, in sampling order (rank = position).
    """

    def __init__(self, checkpoints: Mapping[str, Mapping[object, str | Path]], data_root: str | Path,
                 layer: str, quantify_cfg: Mapping, *, seed: int, candidates: Sequence[str],
                 cache_dir: str | Path, device: str = "auto", normalize: str = "dataset") -> None:
        from kdconcepts.data import data_hash, load_split

        self.checkpoints, self.layer, self.quantify_cfg = checkpoints, layer, quantify_cfg
        self.seed, self.device, self.normalize = seed, device, normalize
        self.rank = {image_id: r for r, image_id in enumerate(candidates)}
        self.train = load_split(data_root, "train", normalize=normalize)  # the space the network sees
        self.position = {image_id: k for k, image_id in enumerate(self.train.ids)}
        settings = {"quantify": {k: v for k, v in quantify_cfg.items()
                                 if k not in ("candidates", "schedule", "round_size", "threads")},
                    "seed": seed, "layer": layer, "normalize": normalize, "data": data_hash(data_root)}
        self.cache = MapCache(cache_dir, settings)  # (shared by the runs: keyed by content)
        self.made: dict[tuple[str, object], pd.DataFrame] = {}  # (network, epoch) -> its rows so far
        self.used: dict[tuple[str, object], set[str]] = {}      # the rows the walk asked for
        self.checked: dict[tuple[str, object], dict[str, bool]] = {}

    def _images(self, ids: Sequence[str]):
        import torch

        return self.train.images[torch.as_tensor([self.position[i] for i in ids])]

    def _model(self, checkpoint):
        from kdconcepts.checkpoints import load_checkpoint
        from kdconcepts.runtime import resolve_device

        dev = resolve_device(self.device)
        model, info = load_checkpoint(checkpoint, map_location=dev)
        return model.eval(), info, dev

    def _table(self, network: str, epoch: object) -> pd.DataFrame:
        key = (network, epoch)
        if key not in self.made:
            path = self.cache.path(network, epoch, self.checkpoints[network][epoch])
            self.made[key] = self.cache.read(path)
        return self.made[key]

    def maps(self, network: str, epoch: object, ids: Sequence[str]) -> pd.DataFrame:
        """The maps of ``ids`` at one checkpoint, in the order of ``ids`` (made if missing)."""
        from kdconcepts.models import resolve_layer
        from kdconcepts.quantify import SigmaConfig, quantify_images

        table = self._table(network, epoch)
        have = set() if table is None else set(table["image_id"])
        missing = [i for i in ids if i not in have]
        if missing:
            checkpoint = self.checkpoints[network][epoch]
            model, info, dev = self._model(checkpoint)
            log.info("quantify %s layer %s: %d images on %s", checkpoint, self.layer, len(missing), dev)
            new = quantify_images(model, resolve_layer(info["arch"], self.layer), self._images(missing),
                                  missing, SigmaConfig.from_mapping(self.quantify_cfg), seed=self.seed,
                                  device=dev, max_batch=int(self.quantify_cfg["max_batch"]),
                                  precision=self.quantify_cfg["precision"],
                                  progress_desc=f"{network} epoch {epoch}")
            new.insert(0, "network", network)
            new.insert(1, "epoch", int(info.get("epoch", -1)))
            new.insert(2, "candidate_rank", [self.rank.get(i, -1) for i in missing])
            table = new if table is None else pd.concat([table, new], ignore_index=True)
            self.made[(network, epoch)] = table
            self.cache.write(self.cache.path(network, epoch, checkpoint), table)
        self.used.setdefault((network, epoch), set()).update(ids)
        return table.set_index("image_id", drop=False).loc[list(ids)].reset_index(drop=True)

    def usable(self, network: str, epoch: object, ids: Sequence[str]) -> dict[str, bool]:
        """sigma_f != 0 per image at one checkpoint: from its map if made, else one forward of
        K samples (:func:`kdconcepts.quantify.estimate_sigma_f`, the map's first draw)."""
        from kdconcepts.models import resolve_layer
        from kdconcepts.quantify import SigmaConfig, estimate_sigma_f

        table = self._table(network, epoch)
        known = {} if table is None else dict(zip(table["image_id"], table["usable"].astype(bool)))
        checked = self.checked.setdefault((network, epoch), {})
        missing = [i for i in ids if i not in known and i not in checked]
        if missing:
            model, info, dev = self._model(self.checkpoints[network][epoch])
            _, ok = estimate_sigma_f(model, resolve_layer(info["arch"], self.layer), self._images(missing),
                                     SigmaConfig.from_mapping(self.quantify_cfg), seed=self.seed,
                                     image_keys=missing, device=dev,
                                     max_batch=int(self.quantify_cfg["max_batch"]),
                                     precision=self.quantify_cfg["precision"])
            checked.update(zip(missing, ok.tolist()))
        return {i: bool(known[i]) if i in known else bool(checked[i]) for i in ids}

    def table(self) -> pd.DataFrame:
        """Every map the walk asked for, one row per (network, checkpoint, image)."""
        frames = [self.made[key][self.made[key]["image_id"].isin(ids)] for key, ids in self.used.items()]
        return pd.concat(frames, ignore_index=True).sort_values(
            ["network", "epoch", "candidate_rank"], kind="stable").reset_index(drop=True)


def _comparison_networks(comparisons: Sequence[tuple[str, str]]) -> list[str]:
    return list(dict.fromkeys(n for pair in comparisons for n in pair))


def _late_walk(maps: SeedMaps, candidates: Sequence[str], pairs: Sequence[tuple[str, str]],
               late: Sequence[int], fg: Mapping[str, np.ndarray], grid: int, rule: str) -> dict:
    """One round's late checkpoints, newest first: per comparison, the candidates that pass the
    image rule at every late checkpoint for both of its networks. A network is quantified on the
    images still in the running for at least one of its comparisons."""
    alive = {pair: list(candidates) for pair in pairs}
    for epoch in sorted(late, reverse=True):
        failed = {}
        for network in _comparison_networks(pairs):
            ids = [i for i in candidates if any(i in alive[p] for p in pairs if network in p)]
            if ids:
                failed[network] = S.rule_failures(maps.maps(network, epoch, ids), fg, grid, rule)
        for pair in pairs:
            alive[pair] = [i for i in alive[pair] if not any(i in failed.get(n, ()) for n in pair)]
    return alive


def _round_verdict(maps: SeedMaps, r: int, ranks: Sequence[int], candidates: Sequence[str],
                   alive: Mapping[tuple[str, str], list[str]], early: Sequence[int], samples: int) -> pd.DataFrame:
    """Per comparison and candidate of round r: effective (the late rule held, and sigma_f != 0
    at every early checkpoint for both networks), and why not."""
    usable = {}
    for network in _comparison_networks(list(alive)):
        ids = sorted({i for p, ids in alive.items() if network in p for i in ids}, key=candidates.index)
        usable[network] = {e: maps.usable(network, e, ids) if ids else {} for e in early}
    rows = []
    for (student, baseline), passed in alive.items():
        early_usable = {n: {e: {i for i, ok in usable[n][e].items() if ok} for e in early}
                        for n in (student, baseline)}
        table = S.verdict_table(candidates, list(ranks), passed, early_usable)
        table["check_passes"] = np.where(table["image_id"].isin(passed), 2 * len(early) * samples, 0)
        rows.append(table.assign(comparison=student, round=r))
    return pd.concat(rows, ignore_index=True)[ROUND_COLUMNS]


def quantify_seed(checkpoints: Mapping[str, Mapping[object, str | Path]], data_root: str | Path, layer: str,
                  quantify_cfg: Mapping, *, seed: int, comparisons: Sequence[tuple[str, str]], epochs: Sequence[int],
                  effective: int, late_fraction: float, cache_dir: str | Path, device: str = "auto",
                  normalize: str = "dataset", selection: str = "effective") -> dict[str, pd.DataFrame]:
    """Every sigma map one (seed, layer) needs, the rounds' verdicts and the chosen images.

    Args:
        checkpoints: network -> epoch -> checkpoint path for the analysed networks, and
            ``{"teacher": {"final": path}}``.
        comparisons: (student, baseline) pairs; each gets its own first ``effective`` images.
        epochs: the configured checkpoints; ``late_fraction`` splits them (SPEC section 5).
        quantify_cfg: config ``quantify`` (``candidates``, ``round_size``, ``schedule``, the
            sigma settings).
        cache_dir: where the maps are kept between runs (:class:`MapCache`).
        selection: the image rule (config ``metrics.selection``), the one the metrics apply.

    Returns:
        ``maps`` (one row per network, checkpoint and quantified image: ``network``, ``epoch``,
        ``candidate_rank`` and the engine's columns), ``rounds`` (:data:`ROUND_COLUMNS`) and
        ``chosen`` (:data:`CHOSEN_COLUMNS`).
    """
    from kdconcepts.pipeline import _fg_grids, candidate_ids

    grid, n = int(quantify_cfg["grid"]), int(quantify_cfg["candidates"])
    round_size = int(quantify_cfg["round_size"])
    from kdconcepts.data import read_index

    train_ids = [row.id for row in read_index(data_root) if row.split == "train"]
    candidates = candidate_ids(train_ids, n, seed)
    late, early = S.late_epochs(epochs, late_fraction), S.early_epochs(epochs, late_fraction)
    maps = SeedMaps(checkpoints, data_root, layer, quantify_cfg, seed=seed, candidates=candidates,
                    cache_dir=cache_dir, device=device, normalize=normalize)
    fg = _fg_grids(data_root, candidates, grid)
    if quantify_cfg["schedule"] == "exhaustive":  # every map first; the walk then reads them
        for network in _comparison_networks(comparisons):
            for epoch in epochs:
                maps.maps(network, epoch, candidates)
        maps.maps("teacher", "final", candidates)
    verdicts, found = [], {student: 0 for student, _ in comparisons}
    for r, start in enumerate(range(0, n, round_size)):
        needed = [pair for pair in comparisons if found[pair[0]] < effective]
        if not needed:
            break
        ranks = range(start, min(start + round_size, n))
        ids = [candidates[k] for k in ranks]
        alive = _late_walk(maps, ids, needed, late, fg, grid, selection)
        verdict = _round_verdict(maps, r, ranks, ids, alive, early, int(quantify_cfg["samples"]))
        for student, _ in needed:
            found[student] += int(verdict.loc[verdict["comparison"] == student, "effective"].sum())
        log.info("round %d (candidates %d-%d): effective %s", r, ranks.start, ranks.stop - 1,
                 {s: int(verdict.loc[verdict["comparison"] == s, "effective"].sum()) for s, _ in needed})
        verdicts.append(verdict)
    rounds = pd.concat(verdicts, ignore_index=True) if verdicts else pd.DataFrame(columns=ROUND_COLUMNS)
    chosen = _chosen(rounds, comparisons, effective)
    for student, baseline in comparisons:
        ids = chosen.loc[chosen["comparison"] == student, "image_id"].tolist()
        for network in (student, baseline):
            for epoch in early:
                maps.maps(network, epoch, ids)
    every = list(dict.fromkeys(chosen["image_id"]))
    if every:
        maps.maps("teacher", "final", every)
    return {"maps": maps.table(), "rounds": rounds, "chosen": chosen}


def _chosen(rounds: pd.DataFrame, comparisons: Sequence[tuple[str, str]], effective: int) -> pd.DataFrame:
    """The first ``effective`` effective images of each comparison, in candidate order."""
    frames = []
    for student, _ in comparisons:
        of = rounds[(rounds["comparison"] == student) & rounds["effective"].astype(bool)]
        frames.append(of.sort_values("candidate_rank", kind="stable").head(effective))
    table = pd.concat(frames, ignore_index=True) if frames else rounds.iloc[:0]
    return table[CHOSEN_COLUMNS].reset_index(drop=True)
