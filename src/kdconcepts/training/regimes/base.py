"""What a training regime is: a loss on a batch, returned term by term.

Like mdistiller's distillers, a regime returns its losses by name (``{"ce": ...}``,
``{"kd": ..., "ce": ...}``); the loop minimises their sum and logs each term. A regime's module
also holds the recipe that trains its network (phases, checkpoints, weight distance): a
:class:`Regime` subclass and its ``train_*`` function built on :mod:`kdconcepts.training.loop`.
A new regime is that module, a rule in ``workflow/rules/train.smk`` and its entry in
``workflow/scripts/train.py`` (the pipeline picks the recipe by rule, not by a registry).
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Regime", "CrossEntropy"]

class Regime:
    """A training loss for ``model``; subclasses define :meth:`losses`.

    Attributes:
        role: the network it trains, as named in outputs (``teacher``, ``baseline``, ...).
    """

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
