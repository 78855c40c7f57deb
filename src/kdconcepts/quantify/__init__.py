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

import importlib

# The public names and the modules that define them. They are imported on first use (PEP 562), so
# that importing ``kdconcepts.quantify.config`` (the Snakefile's config check does, at every
# `snakemake` call) does not import torch.
_DEFINED_IN = {
    "SigmaConfig": "config",
    "estimate_sigma": "engine",
    "estimate_sigma_f": "engine",
    "concept_counts": "concepts",
    "quantify_images": "pipeline",
    "background_baseline": "concepts",
    "downsample_mask": "concepts",
}

__all__ = [
    "SigmaConfig",
    "estimate_sigma",
    "estimate_sigma_f",
    "concept_counts",
    "quantify_images",
    "background_baseline",
    "downsample_mask",
]


def __getattr__(name: str):
    if name in _DEFINED_IN:
        value = getattr(importlib.import_module(f"{__name__}.{_DEFINED_IN[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
