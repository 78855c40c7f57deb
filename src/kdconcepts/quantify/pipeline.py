"""Pipeline helper: one (network, checkpoint) quantified over the candidate images."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from kdconcepts.quantify.config import SigmaConfig
from kdconcepts.quantify.engine import estimate_sigma

TABLE_COLUMNS = ("image_id", "usable", "sigma_f", "step", "mean_entropy", "target_reached",
                 "boosted", "passes", "sample_passes", "entropy", "trace")

log = logging.getLogger("kdconcepts.quantify")


def quantify_images(model: nn.Module, layer: str, images: torch.Tensor,
                    image_ids: Sequence[str], cfg: SigmaConfig, *, seed: int,
                    device: torch.device | str | None, progress_desc: str | None = None,
                    max_batch: int = 1536, precision: str = "fp32") -> pd.DataFrame:
    """Sigma maps of the images for one network checkpoint, as a table ready for parquet.

    Each image's noise is keyed by its ``image_id``, so the same image gets the same
    noise whatever other images are quantified with it.

    Args:
        model: the network at one checkpoint.
        layer: node name of the analysed layer (see :func:`estimate_sigma`).
        images: [B, C, H, W] float, normalised as the model expects.
        image_ids: B distinct ids (stable across networks and checkpoints).
        cfg: the method's settings (``SigmaConfig.from_mapping(config["quantify"])``).
        seed: the noise seed.
        device: "cpu", "cuda", "cuda:N", "auto"/None, or a ``torch.device``.
        progress_desc: label of the progress bar (stderr); None shows no bar.
        max_batch: (image, noise sample) rows per forward chunk (config ``max_batch``).
        precision: "fp32" | "bf16" | "fp16" (config ``precision``).

    Returns:
        One row per image, columns ``image_id`` (str), ``usable`` (bool), ``sigma_f``
        (float), ``step`` (int, -1 if unusable), ``mean_entropy`` (float, mean entropy of
        the selected map; NaN if unusable), ``target_reached`` (bool: the trace reached H*;
        False means the map is the nearest the optimisation got, and a warning is logged),
        ``boosted`` (bool), ``passes`` (int, forward+backward passes of K samples),
        ``sample_passes`` (int, single-sample passes: ``passes`` x K + K for sigma_f),
        ``entropy`` (list of G*G float32, row-major; NaN if unusable), ``trace`` (list of
        ``steps`` float64: the mean entropy of each recorded snapshot, NaN after the image
        stopped; what ``benchmarks/bench_settled.py`` replays the early-stop rule on).
    """
    ids = [str(i) for i in image_ids]
    if len(ids) != images.shape[0]:
        raise ValueError(f"{len(ids)} image_ids for {images.shape[0]} images")
    result = estimate_sigma(model, layer, images, cfg, seed=seed, image_keys=ids,
                            device=device, max_batch=max_batch, precision=precision,
                            progress=progress_desc is not None, progress_desc=progress_desc)
    entropy = result.entropy.flatten(1).numpy().astype(np.float32)
    missed = [i for i, ok, reached in zip(ids, result.usable.tolist(), result.target_reached.tolist())
              if ok and not reached]
    if missed:
        log.warning("%d image(s) never reached the target mean entropy H* = %s: their maps are "
                    "the nearest the optimisation got, flagged target_reached = False: %s",
                    len(missed), cfg.target_entropy, ", ".join(missed[:20]))
    return pd.DataFrame({
        "image_id": pd.Series(ids, dtype=object),
        "usable": result.usable.numpy().astype(bool),
        "sigma_f": result.sigma_f.numpy().astype(np.float64),
        "step": result.step.numpy().astype(np.int64),
        "mean_entropy": result.mean_entropy.numpy().astype(np.float64),
        "target_reached": result.target_reached.numpy().astype(bool),
        "boosted": result.boosted.numpy().astype(bool),
        "passes": result.passes.numpy().astype(np.int64),
        "sample_passes": result.sample_passes.numpy().astype(np.int64),
        "entropy": list(entropy),
        "trace": list(result.trace.numpy().astype(np.float64)),
    }, columns=list(TABLE_COLUMNS))
