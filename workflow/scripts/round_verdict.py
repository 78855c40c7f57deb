"""Snakemake script (checkpoint ``round_verdict``): which candidates of a round are effective."""

from kdconcepts.pipeline import round_verdict
from kdconcepts.runtime import atomic_path, job_logging

smk = snakemake  # noqa: F821 (injected by Snakemake)
settings = smk.params.settings
with job_logging(smk.log[0], threads=smk.threads):
    oldest = {key.removeprefix("oldest_"): path for key, path in smk.input.items() if key.startswith("oldest_")}
    table = round_verdict(oldest, smk.params.early, smk.params.data_root,
                          smk.wildcards.layer, settings["quantify"], seed=int(smk.wildcards.seed),
                          ranks=range(*smk.params.span), device=settings["device"],
                          normalize=settings["normalize"], selection=settings["selection"])
    with atomic_path(smk.output[0]) as tmp:
        table.to_csv(tmp, index=False)
