"""The logit student: Hinton, Vinyals and Dean (2015) distillation of the teacher's logits.

Beyond the paper, which explains feature distillation only. The whole net is trained (there is
no head phase) on::

    alpha * T^2 * KL(softmax(z_teacher / T) || softmax(z_student / T)) + (1 - alpha) * CE(z_student, y)

the teacher in eval mode on the same augmented batch. T^2 keeps the soft term's gradient on
the scale of the hard term's as T changes (Hinton et al., section 2). It starts from the same
initial weights as the baseline and the distilled student, and is analysed like them: its
checkpoints, the weight distance of every analysed layer, quantification and metrics.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kdconcepts.training.augment import Augment
from kdconcepts.training.distance import track_layers
from kdconcepts.training.loop import (Data, Job, Phase, RunOptions, check_checkpoints, finish,
                                      run_phase, setup, sgd)
from kdconcepts.training.regimes.base import Regime

__all__ = ["LogitDistillation", "train_logit_student"]


class LogitDistillation(Regime):
    """``{"kd": alpha T^2 KL(p_teacher || p_student), "ce": (1 - alpha) CE}`` at temperature T.

    Example:
        >>> net = torch.nn.Linear(4, 3)
        >>> job = type("J", (), {"device": torch.device("cpu"), "prepare": lambda self, m: m})()
        >>> regime = LogitDistillation(net, job, teacher=net, temperature=4.0, alpha=0.9)
        >>> named, _ = regime.losses(torch.ones(2, 4), torch.tensor([0, 1]), None)
        >>> round(float(named["kd"]), 6)  # the teacher is the student: no divergence
        0.0
    """

    role = "logit_student"

    def __init__(self, model: nn.Module, job: Job, *, teacher: nn.Module, temperature: float,
                 alpha: float) -> None:
        super().__init__(model)
        if not (math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature must be finite and > 0, got {temperature}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        self.temperature, self.alpha = float(temperature), float(alpha)
        self.teacher = job.prepare(teacher).eval()
        self.teacher.requires_grad_(False)

    def losses(self, x, y, index):
        logits = self.model(x)
        self.teacher.eval()  # whatever the student's mode
        with torch.no_grad():
            teacher_logits = self.teacher(x)
        t = self.temperature
        kl = F.kl_div(F.log_softmax(logits.float() / t, dim=1),
                      F.log_softmax(teacher_logits.float() / t, dim=1),
                      reduction="batchmean", log_target=True)
        ce = F.cross_entropy(logits.float(), y)
        return {"kd": self.alpha * t * t * kl, "ce": (1.0 - self.alpha) * ce}, logits


def train_logit_student(
    out_dir: str | os.PathLike,
    *,
    arch: str,
    train: Any,
    test: Any,
    schedule: Phase,
    layers: Sequence[str],
    checkpoint_epochs: Sequence[int],
    teacher: nn.Module,
    temperature: float = 4.0,
    alpha: float = 0.9,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    augment: Augment = Augment(),
    options: RunOptions = RunOptions(),
    on_epoch_end: Callable[[str, int], None] | None = None,
) -> dict:
    """Train the logit student from the students' random init.

    Args:
        out_dir: output folder (``results/.../train/logit_student``).
        schedule: epochs, batch size and log-linear learning rates.
        layers: analysed layers; the weight distance of each is tracked.
        checkpoint_epochs: epochs to save (0 = init).
        teacher: the trained teacher.
        temperature, alpha: T and alpha of the loss.
        Other arguments as in :func:`kdconcepts.training.train_teacher`.

    Returns:
        The metrics written to ``metrics.json``.
    """
    checkpoint_epochs = check_checkpoints(checkpoint_epochs, schedule.epochs, "logit distillation")
    job = setup(options, out_dir, "logit_student", arch, train, None, on_epoch_end)
    train_data, test_data = Data.of(train), Data.of(test)
    model = job.student_init(options.seed)
    regime = LogitDistillation(model, job, teacher=teacher, temperature=temperature, alpha=alpha)
    tracker = track_layers(model, arch, layers)
    run_phase(job, phase="train", model=model, data=train_data, schedule=schedule,
              optimizer=sgd(model.parameters(), schedule.lr_start, momentum, weight_decay),
              losses=regime, augment=augment, tracker=tracker, checkpoint_epochs=checkpoint_epochs)
    return finish(job, model, test_data, tracker.distance(), schedule.epochs,
                  {"temperature": temperature, "alpha": alpha})
