"""Snakemake script (rule ``figures``): a tree's figures of one layer: entropy maps of the same
images for the teacher, students and baseline; N_fg and N_bg against the weight distance, every
seed; student-minus-baseline differences with intervals, per seed and pooled."""

import pandas as pd
import seaborn as sns

from kdconcepts.pipeline import entropy_map_panels
from kdconcepts.report import plot_concepts_vs_distance, plot_differences, plot_entropy_maps, save_figure
from kdconcepts.runtime import snakemake_job

smk = snakemake  # noqa: F821 (injected by Snakemake)
s = smk.params.settings
layer = smk.wildcards.layer


with snakemake_job(smk):
    per_image = pd.read_csv(smk.input.per_image)
    panels = entropy_map_panels(smk.input.maps, per_image, smk.params.data_root, layer,
                                grid=smk.params.grid, n_images=s["example_images"], b=smk.params.b,
                                seed=smk.params.seed, final_epoch=smk.params.final_epoch)
    save_figure(plot_entropy_maps(**panels), smk.output.entropy_maps, s)
    sns.set_theme(style="whitegrid", context="paper")
    save_figure(plot_concepts_vs_distance(per_image, layer, palette=s["palette"]), smk.output.concepts_vs_distance, s)
    save_figure(plot_differences(pd.read_csv(smk.input.differences), layer, palette=s["palette"],
                                 confidence=smk.params.confidence, teacher=pd.read_csv(smk.input.teacher)),
                smk.output.differences, s)
