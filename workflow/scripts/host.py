"""Snakemake script (rule ``host``): where and how the run computed (``host.json``: the hosts its
compute jobs ran on, their kernels and pins, from the run manifest) and what it was asked to
compute (``run.json``: the run's name, config files and resolved config), for `kdconcepts verify`
and the summary."""

import json

from kdconcepts.manifest import hosts
from kdconcepts.numerics import host_info
from kdconcepts.runtime import atomic_path, snakemake_job

smk = snakemake  # noqa: F821 (injected by Snakemake)
with snakemake_job(smk):
    made = {"run": smk.params.run, "numerics": smk.params.numerics, "hosts": hosts(smk.params.results),
            "this_host": host_info(smk.params.numerics)}
    asked = {"run": smk.params.run, "config_files": smk.params.config_files, "config": smk.params.config}
    for path, content in ((smk.output.host, made), (smk.output.run, asked)):
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(content, indent=1, sort_keys=True) + "\n", encoding="utf-8")
