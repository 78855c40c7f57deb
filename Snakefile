# kdconcepts: teacher, students and baseline per seed; their visual concepts over training; the
# paper's metrics pooled over seeds, figures, table and summary. Run: snakemake --cores all
# (config/config.yaml is the embedded default; pass --configfile for another).

# (The default config, config/config.yaml, is read in workflow/rules/common.smk, after the
# config files are checked as YAML; the report's front page is chosen in workflow/rules/report.smk.)


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/quantify.smk"
include: "workflow/rules/metrics.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/targets.smk"


# The default target (kept here: Snakemake honours default_target only in the main Snakefile).
# Every output of every job is listed (workflow/rules/targets.smk, EXPECTED), so that one plain
# run remakes whatever is missing, and what depends on it.
rule all:
    input:
        expand("{tree}/tables/table.tex", tree=TREES),
        expand("{tree}/summary.md", tree=TREES),
        EXPECTED,
        REPORT_FIGURES,
        REPORT_FRONTS if not ARCHITECTURE_AXIS else [],  # (an axis has one front page for all)
        SWEEP_OUTPUTS,
        AXIS_OUTPUTS,
    default_target: True
