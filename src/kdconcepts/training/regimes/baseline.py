"""The baseline (SPEC section 1), "learned from raw data": random init, cross-entropy only.

It starts from the same initial weights as the distilled student (one seed, one init).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from kdconcepts.training.augment import Augment
from kdconcepts.training.distance import track_layers
from kdconcepts.training.loop import Data, Phase, RunOptions, check_checkpoints, finish, run_phase, setup, sgd
from kdconcepts.training.regimes.base import CrossEntropy

__all__ = ["Baseline", "train_baseline"]


class Baseline(CrossEntropy):
    """Cross-entropy on the target labels: ``{"ce": ...}``."""

    role = "baseline"


def train_baseline(
    out_dir: str | os.PathLike,
    *,
    arch: str,
    train: Any,
    test: Any,
    schedule: Phase,
    layers: Sequence[str],
    checkpoint_epochs: Sequence[int],
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    augment: Augment = Augment(),
    options: RunOptions = RunOptions(),
    on_epoch_end: Callable[[str, int], None] | None = None,
) -> dict:
    """Train the baseline from the students' random init with cross-entropy.

    Args:
        out_dir: output folder (``results/.../train/baseline``).
        schedule: epochs, batch size and log-linear learning rates.
        layers: analysed layers; the weight distance of each is tracked.
        checkpoint_epochs: epochs to save (0 = init).
        Other arguments as in :func:`kdconcepts.training.train_teacher`.

    Returns:
        The metrics written to ``metrics.json``.
    """
    checkpoint_epochs = check_checkpoints(checkpoint_epochs, schedule.epochs, "baseline")
    job = setup(options, out_dir, "baseline", arch, train, None, on_epoch_end)
    train_data, test_data = Data.of(train), Data.of(test)
    model = job.student_init(options.seed)
    tracker = track_layers(model, arch, layers)
    run_phase(job, phase="train", model=model, data=train_data, schedule=schedule,
              optimizer=sgd(model.parameters(), schedule.lr_start, momentum, weight_decay),
              losses=Baseline(model), augment=augment, tracker=tracker,
              checkpoint_epochs=checkpoint_epochs)
    return finish(job, model, test_data, tracker.distance(), schedule.epochs, {})
