"""Snakemake script: effective images, concept counts and the six metrics."""

from kdconcepts.pipeline import evaluate_metrics
from kdconcepts.runtime import atomic_path, job_logging

smk = snakemake  # noqa: F821 (injected by Snakemake)
s, paths = smk.params.settings, smk.params.paths
with job_logging(smk.log[0]):
    metrics, per_image, hypotheses = evaluate_metrics(
        {(layer, net, epoch): p for layer, net, epoch, p in paths["tables"]},
        smk.params.data_root,
        {(layer, net): p for layer, net, p in paths["weight_distance"]},
        {(layer, net): p for layer, net, p in paths["accuracy"]},
        grid=s["grid"], b=s["metrics"]["b"], effective=s["metrics"]["effective"],
        late_fraction=s["metrics"]["late_fraction"], selection=s["metrics"]["selection"],
        dataset=s["dataset"],
        architecture=s["architecture"])
    for frame, out in ((metrics, smk.output.metrics), (per_image, smk.output.per_image),
                       (hypotheses, smk.output.hypotheses)):
        with atomic_path(out) as tmp:
            frame.to_csv(tmp, index=False)
