"""The training regimes, one module each, registered by name (:data:`REGIMES`)."""

from kdconcepts.training.regimes.base import REGIMES, CrossEntropy, Regime, get_regime, register
from kdconcepts.training.regimes.baseline import Baseline, train_baseline
from kdconcepts.training.regimes.feature_distillation import FeatureDistillation, train_distilled_student
from kdconcepts.training.regimes.logit_distillation import LogitDistillation, train_logit_student
from kdconcepts.training.regimes.teacher import TEACHER_INITS, Teacher, pretrain_teacher, train_teacher

__all__ = ["REGIMES", "Regime", "CrossEntropy", "register", "get_regime", "Teacher", "Baseline",
           "FeatureDistillation", "LogitDistillation", "TEACHER_INITS", "pretrain_teacher", "train_teacher",
           "train_baseline", "train_distilled_student", "train_logit_student"]
