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


# The default target (kept here: Snakemake honours default_target only in the main Snakefile).
# Each seed's tables are listed too, so that a seed's tables lost after a failed job are remade
# even when the pooled ones are still there; and any round of the effective-first schedule that
# the verdicts on disk already say is needed (common.smk, pending_rounds, says why).
rule all:
    input:
        expand("{tree}/tables/table.tex", tree=TREES),
        expand("{tree}/summary.md", tree=TREES),
        expand("{tree}/seed_{seed}/tables/metrics.csv", tree=TREES, seed=SEEDS),
        REPORT_FIGURES,
        REPORT_FRONTS if not ARCHITECTURE_AXIS else [],  # (an axis has one front page for all)
        SWEEP_OUTPUTS,
        AXIS_OUTPUTS,
        pending_rounds,
    default_target: True
