"""Snakemake script: sigma maps of the candidate images for one checkpoint."""

from kdconcepts.pipeline import quantify_checkpoint
from kdconcepts.runtime import atomic_path, job_logging

smk = snakemake  # noqa: F821 (injected by Snakemake)
settings = smk.params.settings
with job_logging(smk.log[0], threads=smk.threads):
    table = quantify_checkpoint(smk.input.checkpoint, smk.params.data_root, smk.wildcards.layer,
                                settings["quantify"], seed=settings["seed"],
                                device=settings["device"])
    with atomic_path(smk.output[0]) as tmp:
        table.to_parquet(tmp, index=False)
