"""Snakemake script (rule ``quantify_chosen``): a round's chosen images at every early checkpoint
of every network and at the teacher's final checkpoint."""

from kdconcepts.pipeline import quantify_at
from kdconcepts.runtime import atomic_path, job_logging

smk = snakemake  # noqa: F821 (injected by Snakemake)
settings = smk.params.settings
with job_logging(smk.log[0], threads=smk.threads):
    for checkpoint, output in zip(smk.input.checkpoints, smk.output, strict=True):
        table = quantify_at(checkpoint, smk.params.data_root, smk.wildcards.layer, settings["quantify"],
                            smk.params.images, seed=int(smk.wildcards.seed),
                            n_candidates=smk.params.span[1], device=settings["device"],
                            normalize=settings["normalize"])
        with atomic_path(output) as tmp:
            table.to_parquet(tmp, index=False)
