# kdconcepts: teacher, students and baseline per seed; their visual concepts over training; the
# paper's metrics pooled over seeds, figures, table and summary. Run: snakemake --cores all
# (config/config.yaml is the embedded default; pass --configfile for another).

configfile: "config/config.yaml"
report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/quantify.smk"
include: "workflow/rules/metrics.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        expand("{tree}/tables/table.tex", tree=TREES),
        expand("{tree}/summary.md", tree=TREES),
        REPORT_FIGURES,
        SWEEP_OUTPUTS,
    default_target: True
