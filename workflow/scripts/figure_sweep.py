"""Snakemake script (rule ``figure_sweep``): the pooled differences against the swept value."""

import pandas as pd
import seaborn as sns

from kdconcepts.report import plot_sweep, save_figure
from kdconcepts.runtime import atomic_path, snakemake_job

smk = snakemake  # noqa: F821 (injected by Snakemake)
s = smk.params.settings
with snakemake_job(smk):
    sweep = pd.concat([pd.read_csv(path).assign(value=value)
                       for path, value in zip(smk.input.hypotheses, smk.params.values, strict=True)],
                      ignore_index=True)
    sweep.insert(0, smk.params.parameter, sweep.pop("value"))
    sweep["value"] = sweep[smk.params.parameter]
    with atomic_path(smk.output.table) as tmp:
        sweep.drop(columns=["value"]).to_csv(tmp, index=False)
    sns.set_theme(style="whitegrid", context="paper")
    fig = plot_sweep(sweep, smk.params.parameter, palette=s["palette"], confidence=smk.params.confidence)
    save_figure(fig, smk.output.figure, s)
