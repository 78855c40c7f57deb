# Table, figures and summary of each output tree, and the sweep figure. Only config["report"]
# (and the statistics settings) reach these rules' params, so a figure setting reruns them and
# nothing upstream.

import os

FIG_EXT = config["report"]["figure_format"]


def _tree_figures(tree):
    return expand("{tree}/figures/{layer}/{figure}.{ext}", tree=tree, layer=LAYERS,
                  figure=["entropy_maps", "concepts_vs_distance", "differences"], ext=FIG_EXT)


REPORT_FIGURES = [f for tree in TREES for f in _tree_figures(tree)]
SWEEP_OUTPUTS = (
    [f"{RESULTS}/figures/sweep_{config['sweep']['parameter']}.{FIG_EXT}",
     f"{RESULTS}/tables/sweep_{config['sweep']['parameter']}.csv"] if config["sweep"] else [])
# An architecture axis: its trees' tables stacked, one table, forest plot and summary for all.
STACKED_TABLES = ("hypotheses", "premise", "teacher", "differences")
AXIS_OUTPUTS = (
    [*(f"{RESULTS}/tables/{name}.csv" for name in STACKED_TABLES), f"{RESULTS}/tables/table.tex",
     f"{RESULTS}/summary.md", f"{RESULTS}/report_front.rst",
     *expand(f"{RESULTS}/figures/{{layer}}/differences.%s" % FIG_EXT, layer=LAYERS)]
    if ARCHITECTURE_AXIS else [])


# Where and how the run computed (host.json, from the manifest records of its compute jobs) and
# what it was asked (run.json: config files and resolved config). After every seed's tables, so
# that it sees every compute job; a rerun of any of them makes it again.
rule host:
    input:
        expand("{tree}/seed_{seed}/tables/metrics.csv", tree=TREES, seed=SEEDS),
    output:
        host=f"{RESULTS}/host.json",
        run=f"{RESULTS}/run.json",
    params:
        run=RUN,
        results=lambda w, output: os.path.dirname(output.host),
        numerics=config["numerics"],
        config_files=[os.path.relpath(f, workflow.basedir) for f in workflow.configfiles],
        config={k: v for k, v in config.items() if k not in ("report", "resources", "device", "run")},
    log:
        f"logs/{RESULTS}/host.log",
    benchmark:
        f"logs/benchmarks/{RESULTS}/host.tsv"
    script:
        "../scripts/host.py"


# The three figures of a tree and layer in one job (one start-up: imports, data).
rule figures:
    input:
        maps=lambda w: f"{quantify_dir(w.tree, SEEDS[0], w.layer)}/maps.parquet",
        per_image="{tree}/tables/per_image.csv",
        differences="{tree}/tables/differences.csv",
        teacher="{tree}/tables/teacher.csv",
        data=lambda w: data_ready(data_root(w.tree)),
    output:
        entropy_maps=report(
            "{tree}/figures/{layer}/entropy_maps.%s" % FIG_EXT,
            caption="../report/entropy_maps.rst",
            category="Figures",
            subcategory="{tree}, layer {layer}",
        ),
        concepts_vs_distance=report(
            "{tree}/figures/{layer}/concepts_vs_distance.%s" % FIG_EXT,
            caption="../report/concepts_vs_distance.rst",
            category="Figures",
            subcategory="{tree}, layer {layer}",
        ),
        differences=report(
            "{tree}/figures/{layer}/differences.%s" % FIG_EXT,
            caption="../report/differences.rst",
            category="Figures",
            subcategory="{tree}, layer {layer}",
        ),
    params:
        settings=config["report"],
        confidence=config["metrics"]["confidence"],
        grid=config["quantify"]["grid"],
        b=config["metrics"]["b"],
        data_root=lambda w: data_root(w.tree),
        seed=SEEDS[0],
        final_epoch=FINAL_EPOCH,
    log:
        "logs/{tree}/report/{layer}/figures.log",
    benchmark:
        "logs/benchmarks/{tree}/report/{layer}/figures.tsv"
    script:
        "../scripts/figures.py"


# The LaTeX table and the summary of a tree in one job (one start-up).
rule summary:
    input:
        hypotheses="{tree}/tables/hypotheses.csv",
        premise="{tree}/tables/premise.csv",
        selection="{tree}/tables/selection.csv",
        work="{tree}/tables/work.csv",
        teacher="{tree}/tables/teacher.csv",
        metrics="{tree}/tables/metrics.csv",
        differences="{tree}/tables/differences.csv",
        host=f"{RESULTS}/host.json",
    output:
        table="{tree}/tables/table.tex",
        summary="{tree}/summary.md",
    params:
        dataset=config["dataset"]["name"],
        architecture=lambda w: TREES[w.tree]["arch"],
        confidence=config["metrics"]["confidence"],
        zero_concept_images=config["metrics"]["zero_concept_images"],
        benchmarks=lambda w: f"logs/benchmarks/{w.tree}",
        data_benchmarks="logs/benchmarks/data",
        config_files=[os.path.relpath(f, workflow.basedir) for f in workflow.configfiles],
    log:
        "logs/{tree}/report/summary.log",
    benchmark:
        "logs/benchmarks/{tree}/report/summary.tsv"
    script:
        "../scripts/summary.py"


rule report_front:
    input:
        hypotheses="{tree}/tables/hypotheses.csv",
        premise="{tree}/tables/premise.csv",
        host=f"{RESULTS}/host.json",
        figures=lambda w: expand("{tree}/figures/{layer}/differences.%s" % FIG_EXT, tree=w.tree,
                                 layer=LAYERS),
    output:
        "{tree}/report_front.rst",
    params:
        confidence=config["metrics"]["confidence"],
    log:
        "logs/{tree}/report/front.log",
    benchmark:
        "logs/benchmarks/{tree}/report/front.tsv"
    script:
        "../scripts/report_front.py"


# The front page of `snakemake --report`: the answer of a plain config's tree (premise, verdicts,
# forest plot; rule report_front), or of every architecture of an axis (rule
# architectures), once it exists, else, and for a sweep's several trees, the fixed
# description. (Snakemake renders the page from this reStructuredText file at report
# time, so it can be a result; a report item could not be shown before the workflow graph.)
REPORT_FRONTS = [f"{tree}/report_front.rst" for tree in TREES]
_FRONT_FILE = f"{RESULTS}/report_front.rst" if ARCHITECTURE_AXIS else REPORT_FRONTS[0]
_FRONT = os.path.abspath(_FRONT_FILE) if not config["sweep"] and os.path.exists(_FRONT_FILE) else None
# After `make verify` (kdconcepts verify), the report shows its answer on the front page too: the
# page and results/<run>/verify.md, put together when the report is made (nothing else reads it).
_VERIFIED = f"{RESULTS}/verify.md"
if _FRONT and os.path.exists(_VERIFIED) and "--report" in sys.argv:
    from kdconcepts.summary import with_verification

    _FRONT = os.path.abspath(with_verification(_FRONT_FILE, _VERIFIED, f"{RESULTS}/report_front_verified.rst"))
report: _FRONT or "../report/workflow.rst"


if config["sweep"]:

    rule figure_sweep:
        input:
            hypotheses=expand("{tree}/tables/hypotheses.csv", tree=TREES),
        output:
            figure=report(
                SWEEP_OUTPUTS[0],
                caption="../report/sweep.rst",
                category="Figures",
                subcategory="sweep",
            ),
            table=SWEEP_OUTPUTS[1],
        params:
            parameter=config["sweep"]["parameter"],
            values=[TREES[t]["value"] for t in TREES],
            settings=config["report"],
            confidence=config["metrics"]["confidence"],
        log:
            f"logs/{RESULTS}/report/sweep.log",
        benchmark:
            f"logs/benchmarks/{RESULTS}/report/sweep.tsv"
        script:
            "../scripts/figure_sweep.py"


if ARCHITECTURE_AXIS:

    def _of_trees(name):
        return {TREES[tree]["arch"]: f"{tree}/tables/{name}.csv" for tree in TREES}

    # One job (one start-up) for what stacks the trees: the tables, the LaTeX table, the forest
    # plot of each layer, the summary and the report's front page.
    rule architectures:
        input:
            **{name: list(_of_trees(name).values()) for name in STACKED_TABLES},
            summaries=[f"{tree}/summary.md" for tree in TREES],
            host=f"{RESULTS}/host.json",
        output:
            **{name: f"{RESULTS}/tables/{name}.csv" for name in STACKED_TABLES},
            table=f"{RESULTS}/tables/table.tex",
            summary=f"{RESULTS}/summary.md",
            front=f"{RESULTS}/report_front.rst",
            figures=[report(
                f"{RESULTS}/figures/%s/differences.%s" % (layer, FIG_EXT),
                caption="../report/architectures.rst",
                category="Figures",
                subcategory=f"all architectures, layer {layer}",
            ) for layer in LAYERS],
        params:
            tables={name: _of_trees(name) for name in STACKED_TABLES},
            trees={TREES[tree]["arch"]: tree for tree in TREES},
            dataset=config["dataset"]["name"],
            confidence=config["metrics"]["confidence"],
            settings=config["report"],
            layers=LAYERS,
            config_files=[os.path.relpath(f, workflow.basedir) for f in workflow.configfiles],
        log:
            f"logs/{RESULTS}/report/architectures.log",
        benchmark:
            f"logs/benchmarks/{RESULTS}/report/architectures.tsv"
        script:
            "../scripts/architectures.py"
