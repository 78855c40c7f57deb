"""kdconcepts: quantify the visual concepts learned by a teacher, a distilled student and a
baseline, reproducing Cheng, Rao, Chen and Zhang, "Explaining Knowledge Distillation by
Quantifying the Knowledge", CVPR 2020.

Sub-packages: :mod:`kdconcepts.data` (prepared datasets), :mod:`kdconcepts.models`,
:mod:`kdconcepts.training`, :mod:`kdconcepts.checkpoints`, :mod:`kdconcepts.quantify` (the method), :mod:`kdconcepts.metrics`,
:mod:`kdconcepts.report`.
"""

__version__ = "0.1.0"
