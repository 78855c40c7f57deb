"""Entropy-map figures: the input image beside its G x G entropy map."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from kdconcepts.runtime import atomic_path


def save_entropy_map(path: str | os.PathLike, image: torch.Tensor, entropy: torch.Tensor,
                     fg_mask: torch.Tensor | None = None, title: str | None = None,
                     dpi: int = 100) -> Path:
    """Writes a PNG (atomically): the image, and its entropy map H_i upsampled to pixels.

    Args:
        path: output file.
        image: [3, H, W] float in any range (min-max scaled for display).
        entropy: [G, G] entropy map (NaN cells shown blank).
        fg_mask: optional [G, G] bool foreground grid, outlined on the map.
        title: figure title.
        dpi: resolution.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    shown = image.detach().float().cpu()
    shown = (shown - shown.min()) / (shown.max() - shown.min()).clamp(min=1e-12)
    grid = entropy.shape[-1]
    height, width = image.shape[-2:]
    fig, (ax_image, ax_map) = plt.subplots(1, 2, figsize=(6.4, 3.0), dpi=dpi)
    ax_image.imshow(shown.permute(1, 2, 0).numpy())
    ax_image.set_title("input")
    values = entropy.detach().double().cpu().numpy()
    im = ax_map.imshow(values, cmap="hot", interpolation="nearest",
                       extent=(0, width, height, 0))
    if fg_mask is not None:
        ax_map.contour(np.kron(fg_mask.cpu().numpy().astype(float),
                               np.ones((height // grid, width // grid))),
                       levels=[0.5], colors="cyan", linewidths=0.8)
    ax_map.set_title("entropy $H_i$ (low: information kept)")
    fig.colorbar(im, ax=ax_map, fraction=0.046)
    for ax in (ax_image, ax_map):
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:  # the usual file mode (umask), as every output
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
    return path
