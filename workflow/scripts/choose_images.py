"""Snakemake script (rule ``choose_images``): the first E effective images over the rounds."""

import pandas as pd

from kdconcepts.runtime import atomic_path, job_logging
from kdconcepts.schedule import choose

smk = snakemake  # noqa: F821 (injected by Snakemake)
with job_logging(smk.log[0]):
    chosen = choose([pd.read_csv(path) for path in smk.input], smk.params.effective)
    with atomic_path(smk.output[0]) as tmp:
        chosen.to_csv(tmp, index=False)
