"""The teacher (SPEC section 1): pre-trained on extra data, then fine-tuned on the target set.

Its extra knowledge comes from the extra data: ImageNet weights in the paper, or a pre-training
phase on a prepared extra dataset (the embedded default's ``pretrain`` set).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import torch

from kdconcepts.checkpoints import load_checkpoint
from kdconcepts.models import build_model, init_student_weights, load_imagenet_weights
from kdconcepts.training.augment import Augment
from kdconcepts.training.distance import track_layers
from kdconcepts.training.loop import (Data, Phase, RunOptions, check_checkpoints, derived_seed,
                                      finish, run_phase, setup, sgd)
from kdconcepts.training.regimes.base import CrossEntropy

__all__ = ["Teacher", "TEACHER_INITS", "pretrain_teacher", "train_teacher"]

TEACHER_INITS = ("pretrain", "imagenet", "none")


class Teacher(CrossEntropy):
    """Cross-entropy, in pre-training and in fine-tuning: ``{"ce": ...}``."""

    role = "teacher"


def train_teacher(
    out_dir: str | os.PathLike,
    *,
    arch: str,
    train: Any,
    test: Any,
    init: str,
    finetune: Phase,
    layers: Sequence[str],
    checkpoint_epochs: Sequence[int],
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    augment: Augment = Augment(),
    pretrain_data: Any = None,
    pretrain: Phase | None = None,
    weights: str | os.PathLike | None = None,
    pretrained: str | os.PathLike | None = None,
    options: RunOptions = RunOptions(),
    on_epoch_end: Callable[[str, int], None] | None = None,
) -> dict:
    """Teacher: pre-training (extra data or ImageNet), then cross-entropy fine-tuning.

    Args:
        out_dir: output folder (``results/.../train/teacher``).
        arch: architecture name.
        train, test: target splits (``kdconcepts.data.LabelledImages``-like: ``images``,
            ``labels``, ``meta``).
        init: ``pretrain`` (train on ``pretrain_data`` with ``pretrain`` first), ``imagenet``
            (torchvision weights from ``weights`` or the torch cache) or ``none``.
        finetune: the fine-tuning schedule; its epochs are the checkpointed, tracked epochs
            (epoch 0 = the pre-trained network).
        layers: analysed layers whose weight distance is tracked during fine-tuning.
        checkpoint_epochs: epochs of the fine-tuning phase to save (<= finetune.epochs).
        momentum, weight_decay: SGD settings.
        augment: training-time augmentation (flips, crops).
        pretrain_data: the extra data set (same format; its own classes: the output layer is
            re-initialised for the target classes after pre-training).
        pretrain: the pre-training schedule (init=pretrain).
        weights: ImageNet state-dict file (init=imagenet); None = torch hub cache.
        pretrained: init=pretrain: the ``final.pt`` of a :func:`pretrain_teacher` run to
            fine-tune instead of pre-training here (``teacher.shared_pretrain``: one pre-training
            for every seed). Pre-trained with the same seed, the result is the same network.
        options: run options (seed, device, precision, hashes, ...).
        on_epoch_end: called with (phase, epoch) after each epoch's resume state is saved
            (tests use it to simulate a crash).

    Returns:
        The metrics written to ``metrics.json`` (``test_accuracy`` on the target test split).
    """
    if init not in TEACHER_INITS:
        raise ValueError(f"teacher init must be one of {TEACHER_INITS}, got {init!r}")
    checkpoint_epochs = check_checkpoints(checkpoint_epochs, finetune.epochs, "teacher fine-tuning")
    job = setup(options, out_dir, "teacher", arch, train, None, on_epoch_end)
    train_data, test_data = Data.of(train), Data.of(test)
    torch.manual_seed(derived_seed(options.seed, "teacher", "init"))
    extra: dict[str, Any] = {"init": init}
    if init == "pretrain":
        if pretrained is not None:
            model, info = load_checkpoint(pretrained)
            if info["arch"] != arch or info["role"] != "pretrain":
                raise ValueError(f"{pretrained} is a {info['arch']} {info['role']} checkpoint, not the "
                                 f"pre-trained {arch} teacher.init=pretrain needs")
            source_classes = int(info["num_classes"])
            extra["pretrained"] = str(pretrained)
        else:
            if pretrain_data is None or pretrain is None:
                raise ValueError("teacher init=pretrain needs pretrain_data and a pretrain schedule")
            model, source_classes = _pretrain_model(job, arch, pretrain_data)
            in_pretrain = job.resume is not None and job.resume["phase"] == "pretrain"
            if job.resume is None or in_pretrain:
                _pretrain(job, model, pretrain_data, pretrain, momentum, weight_decay, augment)
        # Keep everything but the output layer (its class count differs).
        trunk = dict(model.state_dict())
        torch.manual_seed(derived_seed(options.seed, "teacher", "head"))
        model = init_student_weights(build_model(arch, job.num_classes, job.image_size))
        target = model.state_dict()
        model.load_state_dict({k: v.cpu() for k, v in trunk.items() if target[k].shape == v.shape},
                              strict=False)
        model = job.prepare(model)
        extra["pretrain_classes"] = source_classes
    elif init == "imagenet":
        model = job.prepare(load_imagenet_weights(build_model(arch, job.num_classes, job.image_size),
                                                  arch, weights))
    else:
        model = job.prepare(init_student_weights(build_model(arch, job.num_classes, job.image_size)))
    tracker = track_layers(model, arch, layers)
    run_phase(job, phase="finetune", model=model, data=train_data, schedule=finetune,
              optimizer=sgd(model.parameters(), finetune.lr_start, momentum, weight_decay),
              losses=Teacher(model), augment=augment, tracker=tracker,
              checkpoint_epochs=checkpoint_epochs)
    return finish(job, model, test_data, tracker.distance(), finetune.epochs, extra)


def pretrain_teacher(
    out_dir: str | os.PathLike,
    *,
    arch: str,
    train: Any,
    test: Any,
    schedule: Phase,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    augment: Augment = Augment(),
    options: RunOptions = RunOptions(),
    on_epoch_end: Callable[[str, int], None] | None = None,
) -> dict:
    """The teacher's pre-training alone, for ``teacher.shared_pretrain``: one network trained
    on the extra data, which every seed's :func:`train_teacher` then fine-tunes
    (``pretrained=<out_dir>/final.pt``), as the paper fine-tunes one ImageNet model.

    The same initialisation and batches as the pre-training inside :func:`train_teacher` with
    the same seed. Writes ``final.pt`` (role ``pretrain``, the extra data's classes),
    ``train_log.jsonl`` and ``metrics.json`` (``test_accuracy`` on ``test``, the extra data's
    test split); resumes like every training job.
    """
    job = setup(options, out_dir, "pretrain", arch, train, None, on_epoch_end)
    job.seed_role = "teacher"  # the batches of the pre-training inside train_teacher
    model, _ = _pretrain_model(job, arch, train)
    _pretrain(job, model, train, schedule, momentum, weight_decay, augment)
    return finish(job, model, Data.of(test), {}, schedule.epochs, {"init": "pretrain"})


def _pretrain_model(job, arch: str, pretrain_data: Any):
    """The network pre-training starts from (seeded like the teacher's init), and its class count."""
    source = Data.of(pretrain_data)
    meta = getattr(pretrain_data, "meta", None) or {}
    source_classes = int(meta.get("num_classes", int(source.labels.max()) + 1))
    torch.manual_seed(derived_seed(job.options.seed, "teacher", "init"))
    return job.prepare(init_student_weights(build_model(arch, source_classes, job.image_size))), source_classes


def _pretrain(job, model, pretrain_data: Any, schedule: Phase, momentum: float, weight_decay: float,
              augment: Augment) -> None:
    run_phase(job, phase="pretrain", model=model, data=Data.of(pretrain_data), schedule=schedule,
              optimizer=sgd(model.parameters(), schedule.lr_start, momentum, weight_decay),
              losses=Teacher(model), augment=augment)
