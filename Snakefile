# kdconcepts: teacher, distilled student and baseline; their visual concepts over training;
# the paper's metrics, figures and table. Run: snakemake --cores all
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
        "results/tables/metrics.csv",
        "results/tables/table.tex",
        REPORT_FIGURES,
    default_target: True
