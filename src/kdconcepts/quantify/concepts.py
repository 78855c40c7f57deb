"""Visual concepts (knowledge points) on entropy maps, SPEC section 3."""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F


@dataclasses.dataclass
class ConceptCounts:
    """Output of :func:`concept_counts`.

    Attributes:
        n_fg: [B] int64, N_fg(x): foreground cells with H_bar - H_i > b.
        n_bg: [B] int64, N_bg(x): background cells with H_bar - H_i > b.
        is_concept: [B, G, G] bool, the concept cells.
        fg_ratio: [B] float64, N_fg / (N_fg + N_bg); 0 for an image without concepts
            (its contribution to lambda = E_x[N_fg / (N_fg + N_bg)]).
    """

    n_fg: torch.Tensor
    n_bg: torch.Tensor
    is_concept: torch.Tensor
    fg_ratio: torch.Tensor


def _as_batch(entropy: torch.Tensor, fg_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    entropy = torch.as_tensor(entropy)
    fg_mask = torch.as_tensor(fg_mask)
    if entropy.dim() == 2:
        entropy = entropy[None]
    if fg_mask.dim() == 2:
        fg_mask = fg_mask[None]
    if entropy.dim() != 3 or entropy.shape[-1] != entropy.shape[-2]:
        raise ValueError(f"entropy must be [B, G, G] or [G, G], got {tuple(entropy.shape)}")
    if fg_mask.dtype != torch.bool:
        raise ValueError(f"fg_mask must be bool, got {fg_mask.dtype}")
    if fg_mask.shape != entropy.shape:
        raise ValueError(f"fg_mask shape {tuple(fg_mask.shape)} != entropy shape "
                         f"{tuple(entropy.shape)}")
    return entropy.double(), fg_mask


def concept_counts(entropy: torch.Tensor, fg_mask: torch.Tensor,
                   h_bar: float | torch.Tensor, b: float = 0.2) -> ConceptCounts:
    """Counts the visual concepts of each entropy map.

    Cell i is a concept if ``H_bar - H_i > b``; N_fg / N_bg count them on / off the
    object. A NaN entropy (unusable image) is never a concept.

    Args:
        entropy: [B, G, G] (or [G, G]) entropy maps H_i.
        fg_mask: bool, same shape, True on foreground cells (see :func:`downsample_mask`).
        h_bar: H_bar, the background baseline: a float, or [B] to give each image its own.
        b: the threshold (0.2).

    Returns:
        A :class:`ConceptCounts`.

    Example:
        >>> h = torch.tensor([[[-3.0, -2.0], [-2.0, -2.0]]])
        >>> fg = torch.tensor([[[True, False], [False, False]]])
        >>> c = concept_counts(h, fg, h_bar=-2.0)
        >>> int(c.n_fg[0]), int(c.n_bg[0])
        (1, 0)
    """
    entropy, fg_mask = _as_batch(entropy, fg_mask)
    h_bar = torch.as_tensor(h_bar, dtype=torch.float64)
    if h_bar.dim() == 1:
        if h_bar.numel() != entropy.shape[0]:
            raise ValueError(f"h_bar has {h_bar.numel()} values for {entropy.shape[0]} maps")
        h_bar = h_bar[:, None, None]
    elif h_bar.dim() != 0:
        raise ValueError(f"h_bar must be a scalar or [B], got shape {tuple(h_bar.shape)}")
    if not math.isfinite(float(b)):
        raise ValueError(f"b must be finite, got {b}")
    is_concept = (h_bar - entropy) > b  # NaN compares False
    n_fg = (is_concept & fg_mask).sum(dim=(1, 2))
    n_bg = (is_concept & ~fg_mask).sum(dim=(1, 2))
    total = n_fg + n_bg
    # An image without concepts contributes 0 to lambda = E_x[N_fg / (N_fg + N_bg)].
    fg_ratio = torch.where(total > 0, n_fg.double() / total.clamp(min=1).double(),
                           torch.zeros((), dtype=torch.float64))
    return ConceptCounts(n_fg=n_fg, n_bg=n_bg, is_concept=is_concept, fg_ratio=fg_ratio)


def background_baseline(entropy: torch.Tensor, fg_mask: torch.Tensor) -> float:
    """H_bar: mean background entropy per image, averaged over the images.

    Images with no background cell or a NaN map (unusable) are left out; NaN if none is
    left. Compute it per network and checkpoint over the evaluated images.
    """
    entropy, fg_mask = _as_batch(entropy, fg_mask)
    background = ~fg_mask
    n_bg = background.sum(dim=(1, 2))
    per_image = torch.where(background, entropy, torch.zeros_like(entropy)).sum(dim=(1, 2)) \
        / n_bg.clamp(min=1)
    keep = (n_bg > 0) & torch.isfinite(per_image)
    if not bool(keep.any()):
        return math.nan
    return float(per_image[keep].mean())


def downsample_mask(mask: torch.Tensor, grid: int) -> torch.Tensor:
    """Object mask [B, H, W] (or [H, W]) to the G x G grid: nearest, value > 0.

    Matches the authors' ``F.interpolate(mask, size=G, mode="nearest") > 0``.
    """
    mask = torch.as_tensor(mask)
    squeeze = mask.dim() == 2
    if squeeze:
        mask = mask[None]
    if mask.dim() != 3:
        raise ValueError(f"mask must be [B, H, W] or [H, W], got {tuple(mask.shape)}")
    small = F.interpolate(mask[:, None].float(), size=(grid, grid), mode="nearest")[:, 0] > 0
    return small[0] if squeeze else small
