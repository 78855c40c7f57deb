"""Snakemake script (rules ``quantify_all``, ``quantify_all_teacher``): every candidate at one
checkpoint (the exhaustive schedule)."""

from kdconcepts.pipeline import quantify_all_candidates
from kdconcepts.runtime import atomic_path, job_logging

smk = snakemake  # noqa: F821 (injected by Snakemake)
settings = smk.params.settings
with job_logging(smk.log[0], threads=smk.threads):
    table = quantify_all_candidates(smk.input.checkpoint, smk.params.data_root, smk.wildcards.layer,
                                    settings["quantify"], seed=int(smk.wildcards.seed),
                                    device=settings["device"], normalize=settings["normalize"])
    with atomic_path(smk.output[0]) as tmp:
        table.to_parquet(tmp, index=False)
