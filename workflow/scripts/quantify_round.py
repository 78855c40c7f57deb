"""Snakemake script (checkpoint ``quantify_round``): one round of the effective-first schedule,
the late checkpoints newest first, then which candidates are effective."""

from kdconcepts.pipeline import quantify_round
from kdconcepts.runtime import atomic_path, job_logging

smk = snakemake  # noqa: F821 (injected by Snakemake)
settings = smk.params.settings
with job_logging(smk.log[0], threads=smk.threads):
    table = quantify_round(smk.params.late, smk.params.early, smk.params.tables, smk.params.data_root,
                           smk.wildcards.layer, settings["quantify"], seed=int(smk.wildcards.seed),
                           ranks=range(*smk.params.span), device=settings["device"],
                           normalize=settings["normalize"], selection=settings["selection"])
    with atomic_path(smk.output.verdict) as tmp:
        table.to_csv(tmp, index=False)
