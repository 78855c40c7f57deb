"""Quantifying the knowledge in a DNN: sigma maps and visual concepts (SPEC sections 2, 3).

Example:
    >>> import torch
    >>> from kdconcepts.quantify import SigmaConfig, estimate_sigma, concept_counts
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1))
    >>> cfg = SigmaConfig(grid=4, steps=6, boost_after=4, samples=4)
    >>> res = estimate_sigma(net, "0", torch.rand(2, 3, 8, 8), cfg, seed=0)
    >>> counts = concept_counts(res.entropy, torch.zeros(2, 4, 4, dtype=torch.bool), -2.0)
    >>> counts.n_fg.tolist()
    [0, 0]
"""

from kdconcepts.quantify.concepts import background_baseline, concept_counts, downsample_mask
from kdconcepts.quantify.config import SigmaConfig
from kdconcepts.quantify.engine import estimate_sigma, estimate_sigma_f
from kdconcepts.quantify.pipeline import quantify_images

__all__ = [
    "SigmaConfig",
    "estimate_sigma",
    "estimate_sigma_f",
    "concept_counts",
    "quantify_images",
    "background_baseline",
    "downsample_mask",
]
