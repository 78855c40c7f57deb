"""Snakemake script (rule ``report_front``): the report's front page, the
answer first."""

import json
from pathlib import Path

import pandas as pd

from kdconcepts.summary import front_page_rst
from kdconcepts.runtime import atomic_path, snakemake_job

smk = snakemake  # noqa: F821 (injected by Snakemake)
with snakemake_job(smk):
    text = front_page_rst(tree=smk.wildcards.tree, hypotheses=pd.read_csv(smk.input.hypotheses),
                          premise=pd.read_csv(smk.input.premise), confidence=smk.params.confidence,
                          figures=list(smk.input.figures),
                          host=json.loads(Path(smk.input.host).read_text(encoding="utf-8")))
    with atomic_path(smk.output[0]) as tmp:
        tmp.write_text(text, encoding="utf-8")
