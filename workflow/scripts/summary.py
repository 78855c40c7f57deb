"""Snakemake script (rule ``summary``): a tree's LaTeX results table, and its summary.md made from
the tables (showyourwork style): the premise line, the verdicts, and the time and passes spent."""

from pathlib import Path

import pandas as pd

import json

from kdconcepts.report import latex_table
from kdconcepts.summary import run_command, summary_markdown
from kdconcepts.runtime import atomic_path, snakemake_job

smk = snakemake  # noqa: F821 (injected by Snakemake)


def _times(*folders):
    """One row per job benchmark (logs/benchmarks/...): stage, wall and CPU seconds."""
    rows = []
    for folder in folders:
        for path in sorted(Path(folder).rglob("*.tsv")):
            parts = path.relative_to(folder).parts
            stage = "data" if folder.endswith("data") else (parts[1] if parts[0].startswith("seed_") else parts[0])
            if stage == "metrics.tsv":
                stage = "metrics"
            table = pd.read_csv(path, sep="\t")
            rows.append({"stage": stage.removesuffix(".tsv"), "seconds": float(table["s"].iloc[-1]),
                         "cpu_seconds": float(table["cpu_time"].iloc[-1]) if "cpu_time" in table else float("nan")})
    return pd.DataFrame(rows, columns=["stage", "seconds", "cpu_seconds"])


with snakemake_job(smk):
    tex = latex_table(pd.read_csv(smk.input.hypotheses), pd.read_csv(smk.input.premise),
                      dataset=smk.params.dataset, architecture=smk.params.architecture,
                      confidence=smk.params.confidence, teacher=pd.read_csv(smk.input.teacher))
    with atomic_path(smk.output.table) as tmp:
        tmp.write_text(tex, encoding="utf-8")
    command, config_name = run_command(smk.params.config_files)
    text = summary_markdown(
        command=command, tree=smk.wildcards.tree,
        hypotheses=pd.read_csv(smk.input.hypotheses), premise=pd.read_csv(smk.input.premise),
        selection=pd.read_csv(smk.input.selection), work=pd.read_csv(smk.input.work),
        times=_times(smk.params.benchmarks, smk.params.data_benchmarks),
        confidence=smk.params.confidence, teacher=pd.read_csv(smk.input.teacher),
        metrics=pd.read_csv(smk.input.metrics), differences=pd.read_csv(smk.input.differences),
        zero_concept_images=smk.params.zero_concept_images,
        config_name=config_name, host=json.loads(Path(smk.input.host).read_text(encoding="utf-8")))
    with atomic_path(smk.output.summary) as tmp:
        tmp.write_text(text, encoding="utf-8")
