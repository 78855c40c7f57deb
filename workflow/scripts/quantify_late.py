"""Snakemake script (rule ``quantify_late``): one late checkpoint of every network in a round."""

from kdconcepts.pipeline import quantify_late_step
from kdconcepts.runtime import atomic_path, job_logging

smk = snakemake  # noqa: F821 (injected by Snakemake)
settings = smk.params.settings
with job_logging(smk.log[0], threads=smk.threads):
    newer = {key.removeprefix("newer_"): path for key, path in smk.input.items() if key.startswith("newer_")}
    for network, output in zip(smk.params.networks, smk.output, strict=True):
        table = quantify_late_step(smk.input[f"checkpoint_{network}"], smk.params.data_root,
                                   smk.wildcards.layer, settings["quantify"], seed=int(smk.wildcards.seed),
                                   ranks=range(*smk.params.span), newer=newer, device=settings["device"],
                                   normalize=settings["normalize"], selection=settings["selection"])
        with atomic_path(output) as tmp:
            table.to_parquet(tmp, index=False)
