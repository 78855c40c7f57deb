"""Snakemake script (rule ``architectures_summary``): results/summary.md of an architecture axis,
one block per architecture, then each tree's own summary."""

from pathlib import Path

import pandas as pd

from kdconcepts.report import architectures_summary
from kdconcepts.runtime import atomic_path, job_logging

smk = snakemake  # noqa: F821 (injected by Snakemake)
with job_logging(smk.log[0]):
    extra = [f for f in smk.params.config_files if Path(f).as_posix() != "config/config.yaml"]
    trees = dict(smk.params.trees)
    text = architectures_summary(
        command="snakemake --cores all" + "".join(f" --configfile {f}" for f in extra),
        config_name="config/config.yaml" + "".join(f", overridden by {f}" for f in extra),
        hypotheses=pd.read_csv(smk.input.hypotheses), premise=pd.read_csv(smk.input.premise),
        confidence=smk.params.confidence, trees=trees,
        summaries={arch: Path(f"{tree}/summary.md").read_text(encoding="utf-8") for arch, tree in trees.items()})
    with atomic_path(smk.output[0]) as tmp:
        tmp.write_text(text, encoding="utf-8")
