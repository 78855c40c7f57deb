"""Snakemake script: N_fg and N_bg against the weight distance, every seed."""

import pandas as pd
import seaborn as sns

from kdconcepts.report import plot_concepts_vs_distance
from kdconcepts.runtime import atomic_path, job_logging

smk = snakemake  # noqa: F821 (injected by Snakemake)
s = smk.params.settings
with job_logging(smk.log[0]):
    sns.set_theme(style="whitegrid", context="paper")
    fig = plot_concepts_vs_distance(pd.read_csv(smk.input.per_image), smk.wildcards.layer,
                                    palette=s["palette"])
    with atomic_path(smk.output[0]) as tmp:
        fig.savefig(tmp, dpi=s["dpi"], format=s["figure_format"])
