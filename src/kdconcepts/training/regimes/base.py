"""What a training regime is: a loss on a batch, returned term by term, registered by name.

Like mdistiller's distillers, a regime returns its losses by name (``{"ce": ...}``,
``{"kd": ..., "ce": ...}``); the loop minimises their sum and logs each term. A regime's module
also holds the recipe that trains its network (phases, checkpoints, weight distance), so a new
regime is one small file: a :class:`Regime` subclass decorated with :func:`register`, and its
``train_*`` function built on :mod:`kdconcepts.training.loop`.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["REGIMES", "Regime", "CrossEntropy", "register", "get_regime"]

#: Regime name -> class.
REGIMES: dict[str, type[Regime]] = {}


def register(name: str):
    """Class decorator: make a regime available as ``get_regime(name)``."""
    def add(cls: type[Regime]) -> type[Regime]:
        if name in REGIMES:
            raise ValueError(f"regime {name!r} is registered twice")
        cls.name = name
        REGIMES[name] = cls
        return cls
    return add


def get_regime(name: str) -> type[Regime]:
    """The regime class registered as ``name``."""
    if name not in REGIMES:
        raise ValueError(f"unknown training regime {name!r}; known: {sorted(REGIMES)}")
    return REGIMES[name]


class Regime:
    """A training loss for ``model``; subclasses define :meth:`losses`.

    Attributes:
        name: the registered name.
        role: the network it trains, as named in outputs (``teacher``, ``baseline``, ...).
    """

    name: ClassVar[str] = ""
    role: ClassVar[str] = ""

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def losses(self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor
               ) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        """Named loss terms of a batch (their sum is minimised) and the logits, if computed.

        Args:
            x: the augmented batch on the device. y: its labels. index: its positions in the
            training split (for precomputed targets).
        """
        raise NotImplementedError

    def __call__(self, x, y, index):
        return self.losses(x, y, index)


class CrossEntropy(Regime):
    """Cross-entropy on the labels: ``{"ce": CE(model(x), y)}``."""

    def losses(self, x, y, index):
        logits = self.model(x)
        loss = F.cross_entropy(logits.float(), y)
        return {"ce": loss}, logits
