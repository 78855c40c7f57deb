"""Training of the networks (SPEC sections 1 and 4), one file per concern.

- :mod:`~kdconcepts.training.loop`: the epoch loop, its schedule and resume state;
- :mod:`kdconcepts.checkpoints`: checkpoint files (outside this package, so that quantification
  loads networks without importing training);
- :mod:`~kdconcepts.training.distance`: the weight distance d(m);
- :mod:`~kdconcepts.training.augment`: flips and random crops;
- :mod:`~kdconcepts.training.regimes`: teacher, feature distillation (the distilled student),
  logit distillation (the logit student) and the baseline, each a small class that returns its
  losses by name, with the recipe that trains its network.

Outputs per network folder: ``epoch_EEE.pt`` for each configured epoch of the analysed phase,
``final.pt``, ``weight_distance.csv``, ``train_log.jsonl``, ``metrics.json``.
"""

from kdconcepts.checkpoints import checkpoint_name, load_checkpoint, save_checkpoint
from kdconcepts.training.augment import Augment
from kdconcepts.training.distance import WeightDistance
from kdconcepts.training.loop import (PROGRESS_LOG, RESUME_CHECKPOINTS, RESUME_FILE, Phase, RunOptions,
                                      dataset_hash, log_linear_lr, settings_hash)
from kdconcepts.training.regimes import (pretrain_teacher, train_baseline, train_distilled_student,
                                         train_logit_student, train_teacher)

__all__ = [
    "Augment",
    "PROGRESS_LOG",
    "Phase",
    "RESUME_CHECKPOINTS",
    "RESUME_FILE",
    "RunOptions",
    "WeightDistance",
    "checkpoint_name",
    "dataset_hash",
    "load_checkpoint",
    "log_linear_lr",
    "pretrain_teacher",
    "save_checkpoint",
    "settings_hash",
    "train_baseline",
    "train_distilled_student",
    "train_logit_student",
    "train_teacher",
]
