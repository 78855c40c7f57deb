"""Snakemake script (rule ``metrics``): effective images, concept counts and the six metrics of
one seed, and the work its quantification spent."""

from kdconcepts.pipeline import evaluate_seed, work_table
from kdconcepts.runtime import atomic_path, snakemake_job

smk = snakemake  # noqa: F821 (injected by Snakemake)
s, paths = smk.params.settings, smk.params.paths
seed = int(smk.wildcards.seed)
with snakemake_job(smk):
    quantified = paths["quantified"]
    frames = evaluate_seed(
        quantified, smk.params.data_root,
        {(layer, net): p for layer, net, p in paths["weight_distance"]},
        {(layer, net): p for layer, net, p in paths["accuracy"]},
        comparisons=[tuple(c) for c in s["comparisons"]], epochs=s["checkpoints"], grid=s["grid"],
        b=s["metrics"]["b"], effective=s["metrics"]["effective"], late_fraction=s["metrics"]["late_fraction"],
        selection=s["metrics"]["selection"], dataset=s["dataset"], architecture=s["architecture"], seed=seed,
        premise_margin=s["metrics"]["premise_margin"], zero_concept_images=s["metrics"]["zero_concept_images"])
    frames["work"] = work_table([(layer, q["maps"]) for layer, q in quantified.items()],
                                [(layer, q["rounds"]) for layer, q in quantified.items()], seed=seed)
    for name, frame in frames.items():
        with atomic_path(getattr(smk.output, name)) as tmp:
            frame.to_csv(tmp, index=False)
