"""The training regimes, one module each: its loss (a :class:`Regime`) and its recipe."""

from kdconcepts.training.regimes.base import CrossEntropy, Regime
from kdconcepts.training.regimes.baseline import Baseline, train_baseline
from kdconcepts.training.regimes.feature_distillation import FeatureDistillation, train_distilled_student
from kdconcepts.training.regimes.logit_distillation import LogitDistillation, train_logit_student
from kdconcepts.training.regimes.teacher import TEACHER_INITS, Teacher, pretrain_teacher, train_teacher

__all__ = ["Regime", "CrossEntropy", "Teacher", "Baseline",
           "FeatureDistillation", "LogitDistillation", "TEACHER_INITS", "pretrain_teacher", "train_teacher",
           "train_baseline", "train_distilled_student", "train_logit_student"]
