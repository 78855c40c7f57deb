"""Snakemake script: entropy maps of the same images for the teacher, students and baseline."""

import pandas as pd

from kdconcepts.pipeline import entropy_map_panels
from kdconcepts.report import plot_entropy_maps
from kdconcepts.runtime import atomic_path, job_logging

smk = snakemake  # noqa: F821 (injected by Snakemake)
s = smk.params.settings
with job_logging(smk.log[0]):
    panels = entropy_map_panels(smk.params.tables, pd.read_csv(smk.input.per_image),
                                smk.params.data_root, smk.wildcards.layer, grid=smk.params.grid,
                                n_images=s["example_images"], b=smk.params.b, seed=smk.params.seed)
    fig = plot_entropy_maps(**panels)
    with atomic_path(smk.output[0]) as tmp:
        fig.savefig(tmp, dpi=s["dpi"], format=s["figure_format"])
