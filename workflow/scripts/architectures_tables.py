"""Snakemake script (rule ``architectures_tables``): an architecture axis's tables, each tree's
stacked with an ``architecture`` column, and its LaTeX table with one block per architecture."""

import pandas as pd

from kdconcepts.report import latex_table, stack_architectures
from kdconcepts.runtime import atomic_path, job_logging

smk = snakemake  # noqa: F821 (injected by Snakemake)
with job_logging(smk.log[0]):
    stacked = {}
    for name, paths in smk.params.tables.items():
        stacked[name] = stack_architectures({arch: pd.read_csv(path) for arch, path in paths.items()})
        with atomic_path(smk.output[name]) as tmp:
            stacked[name].to_csv(tmp, index=False)
    tex = latex_table(stacked["hypotheses"], stacked["premise"], dataset=smk.params.dataset,
                      confidence=smk.params.confidence, teacher=stacked["teacher"])
    with atomic_path(smk.output.table) as tmp:
        tmp.write_text(tex, encoding="utf-8")
