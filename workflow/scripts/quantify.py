"""Snakemake script (rule ``quantify``): every sigma map of one (tree, seed, layer), the rounds'
verdicts and the chosen images (kdconcepts.walk.quantify_seed)."""

from kdconcepts.runtime import atomic_path, snakemake_job
from kdconcepts.walk import quantify_seed

smk = snakemake  # noqa: F821 (injected by Snakemake)
s = smk.params.settings
with snakemake_job(smk, threads=smk.threads):
    made = quantify_seed(smk.params.checkpoints, smk.params.data_root, smk.wildcards.layer, s["quantify"],
                         seed=int(smk.wildcards.seed), comparisons=[tuple(c) for c in smk.params.comparisons],
                         epochs=s["checkpoints"], effective=s["effective"], late_fraction=s["late_fraction"],
                         cache_dir=smk.params.cache, device=s["device"], normalize=s["normalize"],
                         selection=s["selection"])
    with atomic_path(smk.output.maps) as tmp:
        made["maps"].to_parquet(tmp, index=False)
    for name in ("rounds", "chosen"):
        with atomic_path(getattr(smk.output, name)) as tmp:
            made[name].to_csv(tmp, index=False)
