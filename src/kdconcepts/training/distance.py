"""The weight distance of SPEC section 4: how far an analysed layer's weights have travelled.

For the analysed layer's weight tensor w, accumulated over EVERY optimiser step::

    d(m) = sum over steps up to epoch m of ||w_after_step - w_before_step||_2 / ||w_0||

with w_0 the weights at the start of the analysed phase. D_mean and D_std (hypothesis 2) are
statistics of d(m_hat(x)).

Example:
    >>> w = torch.nn.Parameter(torch.ones(2))
    >>> tracker = WeightDistance({"conv": w})
    >>> tracker.before_step(); w.data += 0.3; tracker.after_step()
    >>> round(tracker.distance()["conv"], 4)
    0.3
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from kdconcepts.models import analysed_weight

__all__ = ["WeightDistance", "track_layers"]


class WeightDistance:
    """Accumulates ``sum ||w_after_step - w_before_step||_2 / ||w_0||`` per named weight tensor.

    Call :meth:`before_step` just before ``optimizer.step()`` and :meth:`after_step` just after.
    Sums stay on the weights' device (float64) so that a step needs no host synchronisation.
    """

    def __init__(self, weights: dict[str, torch.Tensor]):
        self.weights = weights
        self.initial_norm = {k: float(w.detach().double().norm()) for k, w in weights.items()}
        for name, norm in self.initial_norm.items():
            if norm == 0.0:
                raise ValueError(f"weight tensor of {name} is all zeros: the distance is undefined")
        self._sums = {k: torch.zeros((), dtype=torch.float64, device=w.device) for k, w in weights.items()}
        self.steps = 0
        self._before: dict[str, torch.Tensor] = {}

    def before_step(self) -> None:
        self._before = {k: w.detach().clone() for k, w in self.weights.items()}

    def after_step(self) -> None:
        for k, w in self.weights.items():
            self._sums[k] += (w.detach() - self._before[k]).double().norm()
        self._before = {}
        self.steps += 1

    def distance(self) -> dict[str, float]:
        """d for every tracked tensor, so far."""
        return {k: float(self._sums[k]) / self.initial_norm[k] for k in self.weights}

    def state_dict(self) -> dict:
        return {"initial_norm": dict(self.initial_norm), "total": {k: float(v) for k, v in self._sums.items()},
                "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        self.initial_norm = dict(state["initial_norm"])
        for k, value in state["total"].items():
            self._sums[k].fill_(value)
        self.steps = int(state["steps"])


def track_layers(model: nn.Module, arch: str, layers: Sequence[str]) -> WeightDistance:
    """A :class:`WeightDistance` over the analysed weight tensor of each layer."""
    return WeightDistance({layer: analysed_weight(model, arch, layer) for layer in layers})
