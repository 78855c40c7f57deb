"""Snakemake script (rule ``quantify_late``): one late checkpoint of one network in a round."""

from kdconcepts.pipeline import quantify_late_step
from kdconcepts.runtime import atomic_path, job_logging

smk = snakemake  # noqa: F821 (injected by Snakemake)
settings = smk.params.settings
with job_logging(smk.log[0], threads=smk.threads):
    newer = {key: path for key, path in smk.input.items() if key not in ("checkpoint", "data")}
    table = quantify_late_step(smk.input.checkpoint, smk.params.data_root, smk.wildcards.layer,
                               settings["quantify"], seed=int(smk.wildcards.seed),
                               ranks=range(*smk.params.span), newer=newer,
                               device=settings["device"])
    with atomic_path(smk.output[0]) as tmp:
        table.to_parquet(tmp, index=False)
