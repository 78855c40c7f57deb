"""The distilled student (SPEC section 1): it mimics the teacher's feature at one layer L.

Phase ``distill`` (analysed, checkpointed, weight distance of L tracked) minimises only
``MSE(student_L(x), teacher_L(x))``, teacher in eval mode, on the same augmented batch; only the
layers up to L receive gradients. The target is the teacher's *pre-ReLU* tap output, as the
authors' code distils it (the quantified feature of SPEC section 2 is ReLU of the tap, so
matching pre-ReLU values also matches that feature, and keeps a gradient for negative units).
Phase ``head`` (not analysed): layers up to L frozen, BatchNorm statistics included, the
layers above trained with cross-entropy, SGD with ReduceLROnPlateau on the training loss.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kdconcepts.features import tap
from kdconcepts.models import resolve_layer, trunk_parameters
from kdconcepts.training.augment import Augment
from kdconcepts.training.distance import track_layers
from kdconcepts.training.loop import (Data, Job, Phase, RunOptions, check_checkpoints, finish,
                                      run_phase, setup, sgd)
from kdconcepts.training.regimes.base import CrossEntropy, Regime

__all__ = ["FeatureDistillation", "train_distilled_student"]


class FeatureDistillation(Regime):
    """``{"mse": MSE(student_L(x), teacher_L(x))}``, the target online or precomputed.

    Args:
        model: the student.
        node: the distilled layer's node name.
        job: the training job (device).
        teacher: the trained teacher, for targets computed on the batch (any augmentation).
        teacher_features: precomputed targets in the training split's order (no augmentation).
    """

    role = "distilled_student"

    def __init__(self, model: nn.Module, node: str, job: Job, *, teacher: nn.Module | None = None,
                 teacher_features: torch.Tensor | None = None) -> None:
        super().__init__(model)
        self.student_tap = tap(model, node)
        self.device = job.device
        self.teacher_features = teacher_features
        self.teacher = None
        if teacher_features is None:
            if teacher is None:
                raise ValueError("the distilled student needs the teacher or its precomputed features")
            self.teacher = job.prepare(teacher).eval()
            self.teacher.requires_grad_(False)
            self.teacher_tap = tap(self.teacher, node)

    def target(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        if self.teacher_features is not None:
            return self.teacher_features[index].to(self.device)
        self.teacher.eval()  # whatever the student's mode
        with torch.no_grad():
            return self.teacher_tap(x)

    def losses(self, x, y, index):
        output = self.student_tap(x)
        target = self.target(x, index)
        if output.shape != target.shape:
            raise ValueError(f"student tap {tuple(output.shape)} != teacher feature {tuple(target.shape)}")
        return {"mse": F.mse_loss(output.float(), target.float())}, None


def train_distilled_student(
    out_dir: str | os.PathLike,
    *,
    arch: str,
    layer: str,
    train: Any,
    test: Any,
    schedule: Phase,
    checkpoint_epochs: Sequence[int],
    head_epochs: int,
    head_batch_size: int,
    head_lr: float,
    plateau_factor: float = 0.3,
    plateau_patience: int = 10,
    teacher: nn.Module | None = None,
    teacher_features: torch.Tensor | None = None,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    augment: Augment = Augment(),
    options: RunOptions = RunOptions(),
    on_epoch_end: Callable[[str, int], None] | None = None,
) -> dict:
    """Distilled student: MSE to the teacher's layer-L feature, then a cross-entropy head.

    Args:
        out_dir: output folder (``results/.../train/distilled_student/<layer>``).
        layer: the analysed (= distilled) layer L, alias or node name.
        schedule: the distillation phase's epochs, batch size and rates.
        checkpoint_epochs: distillation epochs to save (0 = init).
        head_epochs, head_batch_size, head_lr, plateau_factor, plateau_patience: phase 2.
        teacher: the trained teacher (needed when ``teacher_features`` is None or with
            augmentation).
        teacher_features: precomputed targets [N_train, ...] in the train split's order
            (:func:`kdconcepts.features.extract_features`); only valid without augmentation.
        Other arguments as in :func:`kdconcepts.training.train_teacher`.

    Returns:
        The metrics written to ``metrics.json`` (``test_accuracy`` after the head phase,
        ``distill_mse`` of the last distillation epoch).
    """
    checkpoint_epochs = check_checkpoints(checkpoint_epochs, schedule.epochs, "distillation")
    node = resolve_layer(arch, layer)
    if teacher_features is not None and augment.active:
        raise ValueError("precomputed teacher features cannot follow random flips or crops: "
                         "pass the teacher instead")
    if teacher_features is None and teacher is None:
        raise ValueError("the distilled student needs the teacher or its precomputed features")
    job = setup(options, out_dir, "distilled_student", arch, train, layer, on_epoch_end)
    train_data, test_data = Data.of(train), Data.of(test)
    if teacher_features is not None and len(teacher_features) != len(train_data.images):
        raise ValueError(f"{len(teacher_features)} teacher features for {len(train_data.images)} training images")
    model = job.student_init(options.seed)
    regime = FeatureDistillation(model, node, job, teacher=teacher, teacher_features=teacher_features)

    tracker = track_layers(model, arch, [layer])
    resume_phase = job.resume["phase"] if job.resume is not None else None
    trunk_names, head_names = trunk_parameters(model, arch, layer)
    params = dict(model.named_parameters())
    if resume_phase != "head":
        run_phase(job, phase="distill", model=model, data=train_data, schedule=schedule,
                  optimizer=sgd([params[n] for n in trunk_names], schedule.lr_start, momentum, weight_decay),
                  losses=regime, augment=augment, tracker=tracker, checkpoint_epochs=checkpoint_epochs)
    # The distillation phase's final distance (the rows survive a resume in the head phase).
    distance = {row["layer"]: row["weight_distance"] for row in job.distance_rows}
    distill_records = [r for r in job.records if r["phase"] == "distill"]
    distill_mse = distill_records[-1]["mse"] if distill_records else None

    # Phase 2: freeze the trunk (parameters and BatchNorm statistics), train the head.
    for name in trunk_names:
        params[name].requires_grad_(False)
    frozen_ids = {id(m) for m in regime.student_tap.modules()}
    frozen = [m for m in model.modules() if id(m) in frozen_ids]
    optimizer = sgd([params[n] for n in head_names], head_lr, momentum, weight_decay)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=plateau_factor,
                                                         patience=plateau_patience)
    if head_names and head_epochs > 0:
        run_phase(job, phase="head", model=model, data=train_data, schedule=None, plateau=plateau,
                  epochs=head_epochs, batch_size=head_batch_size, optimizer=optimizer,
                  losses=CrossEntropy(model), augment=augment, frozen=frozen)
    return finish(job, model, test_data, distance, schedule.epochs, {"distill_mse": distill_mse, "node": node})
