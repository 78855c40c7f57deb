"""Snakemake script (rule ``table``): the LaTeX results table of one output tree."""

import pandas as pd

from kdconcepts.report import latex_table
from kdconcepts.runtime import atomic_path, job_logging

smk = snakemake  # noqa: F821 (injected by Snakemake)
with job_logging(smk.log[0]):
    tex = latex_table(pd.read_csv(smk.input.hypotheses), pd.read_csv(smk.input.premise),
                      dataset=smk.params.dataset, architecture=smk.params.architecture,
                      confidence=smk.params.confidence, teacher=pd.read_csv(smk.input.teacher))
    with atomic_path(smk.output[0]) as tmp:
        tmp.write_text(tex, encoding="utf-8")
