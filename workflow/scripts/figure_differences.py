"""Snakemake script: student-minus-baseline differences with intervals, per seed and pooled."""

import pandas as pd
import seaborn as sns

from kdconcepts.report import plot_differences
from kdconcepts.runtime import atomic_path, job_logging

smk = snakemake  # noqa: F821 (injected by Snakemake)
s = smk.params.settings
with job_logging(smk.log[0]):
    sns.set_theme(style="whitegrid", context="paper")
    fig = plot_differences(pd.read_csv(smk.input.differences), smk.wildcards.layer,
                           palette=s["palette"], confidence=smk.params.confidence,
                           teacher=pd.read_csv(smk.input.teacher))
    with atomic_path(smk.output[0]) as tmp:
        fig.savefig(tmp, dpi=s["dpi"], format=s["figure_format"])
