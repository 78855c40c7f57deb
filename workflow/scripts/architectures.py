"""Snakemake script (rule ``architectures``): what stacks an architecture axis's trees, in one
job: their tables with an ``architecture`` column, the LaTeX table, the forest plot of each
layer and results/summary.md with one block per architecture, and the report's front page."""

import json
from pathlib import Path

import pandas as pd
import seaborn as sns

from kdconcepts.report import latex_table, plot_differences, save_figure, stack_architectures
from kdconcepts.summary import architectures_summary, front_page_rst, run_command
from kdconcepts.runtime import atomic_path, snakemake_job

smk = snakemake  # noqa: F821 (injected by Snakemake)
s = smk.params.settings


def write_text(text, output):
    with atomic_path(output) as tmp:
        tmp.write_text(text, encoding="utf-8")


with snakemake_job(smk):
    made = {}
    for name, paths in smk.params.tables.items():
        made[name] = stack_architectures({arch: pd.read_csv(path) for arch, path in paths.items()})
        with atomic_path(smk.output[name]) as tmp:
            made[name].to_csv(tmp, index=False)
    write_text(latex_table(made["hypotheses"], made["premise"], dataset=smk.params.dataset,
                           confidence=smk.params.confidence, teacher=made["teacher"]), smk.output.table)
    # (the rest from the tables as written, which a reader gets: the same as when each was a job)
    stacked = {name: pd.read_csv(smk.output[name]) for name in smk.params.tables}

    sns.set_theme(style="whitegrid", context="paper")
    for layer, output in zip(smk.params.layers, smk.output.figures, strict=True):
        save_figure(plot_differences(stacked["differences"], layer, palette=s["palette"],
                                     confidence=smk.params.confidence, teacher=stacked["teacher"]), output, s)

    command, config_name = run_command(smk.params.config_files)
    trees = dict(smk.params.trees)
    summaries = dict(zip(trees, smk.input.summaries, strict=True))  # (both in the trees' order)
    write_text(architectures_summary(
        command=command, config_name=config_name, hypotheses=stacked["hypotheses"], premise=stacked["premise"],
        confidence=smk.params.confidence, trees=trees,
        summaries={arch: Path(path).read_text(encoding="utf-8") for arch, path in summaries.items()}),
        smk.output.summary)
    write_text(front_page_rst(tree=str(Path(smk.output.summary).parent), hypotheses=stacked["hypotheses"],
                              premise=stacked["premise"], confidence=smk.params.confidence,
                              figures=list(smk.output.figures),
                              host=json.loads(Path(smk.input.host).read_text(encoding="utf-8"))),
               smk.output.front)
