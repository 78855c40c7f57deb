"""Snakemake script (rule ``pool``): the seeds side by side, and the pooled verdicts."""

import logging

from kdconcepts.pipeline import pool_seeds
from kdconcepts.runtime import atomic_path, snakemake_job

smk = snakemake  # noqa: F821 (injected by Snakemake)
with snakemake_job(smk) as log:
    per_seed = {name: list(getattr(smk.input, name)) for name in smk.input.keys()}
    frames = pool_seeds(per_seed, students=smk.params.students, resamples=smk.params.resamples,
                        confidence=smk.params.confidence, premise_margin=smk.params.premise_margin)
    weak = frames["premise"][~frames["premise"]["premise_held"]]
    if len(weak):
        logging.getLogger("kdconcepts").warning(
            "PREMISE NOT HELD: the teacher does not lead the baseline by at least %.2f on the "
            "target test set in seed(s) %s; the paper's claims cannot be tested on these runs "
            "(see premise.csv)", smk.params.premise_margin, ", ".join(str(s) for s in weak["seed"]))
    for name, frame in frames.items():
        with atomic_path(getattr(smk.output, name)) as tmp:
            frame.to_csv(tmp, index=False)
