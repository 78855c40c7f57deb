"""Snakemake script (rule ``metrics``): effective images, concept counts and the six metrics of
one seed, and the work its quantification spent."""

from kdconcepts.pipeline import evaluate_seed, work_table
from kdconcepts.runtime import atomic_path, job_logging

smk = snakemake  # noqa: F821 (injected by Snakemake)
s, paths = smk.params.settings, smk.params.paths
seed = int(smk.wildcards.seed)
with job_logging(smk.log[0]):
    tables = [tuple(row) for row in paths["tables"]]
    frames = evaluate_seed(
        tables, smk.params.data_root,
        {(layer, net): p for layer, net, p in paths["weight_distance"]},
        {(layer, net): p for layer, net, p in paths["accuracy"]},
        networks=s["networks"], epochs=s["checkpoints"], grid=s["grid"], b=s["metrics"]["b"],
        effective=s["metrics"]["effective"], late_fraction=s["metrics"]["late_fraction"],
        selection=s["metrics"]["selection"], chosen=paths["chosen"], dataset=s["dataset"],
        architecture=s["architecture"], seed=seed, premise_margin=s["metrics"]["premise_margin"],
        zero_concept_images=s["metrics"]["zero_concept_images"])
    frames["work"] = work_table(tables, [tuple(row) for row in paths["verdicts"]], seed=seed)
    for name, frame in frames.items():
        with atomic_path(getattr(smk.output, name)) as tmp:
            frame.to_csv(tmp, index=False)
