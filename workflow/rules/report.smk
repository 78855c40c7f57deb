# Table and figures. Only config["report"] reaches these rules' params, so a figure setting
# reruns them and nothing upstream.

FIG_EXT = config["report"]["figure_format"]
REPORT_FIGURES = expand(
    "results/figures/{layer}/{figure}.{ext}",
    layer=LAYERS, figure=["entropy_maps", "concepts_vs_distance"], ext=FIG_EXT)


rule table:
    input:
        metrics="results/tables/metrics.csv",
        hypotheses="results/tables/hypotheses.csv",
    output:
        "results/tables/table.tex",
    log:
        "logs/report/table.log",
    benchmark:
        "logs/benchmarks/report/table.tsv"
    script:
        "../scripts/table.py"


rule figure_entropy_maps:
    input:
        tables=lambda w: [
            f"results/quantify/{w.layer}/teacher/final.parquet",
            f"results/quantify/{w.layer}/distilled_student/epoch_{FINAL_EPOCH:03d}.parquet",
            f"results/quantify/{w.layer}/baseline/epoch_{FINAL_EPOCH:03d}.parquet"],
        per_image="results/tables/per_image.csv",
        data=data_ready(DATA_ROOT),
    output:
        report(
            "results/figures/{layer}/entropy_maps.%s" % FIG_EXT,
            caption="../report/entropy_maps.rst",
            category="Figures",
            subcategory="{layer}",
        ),
    params:
        settings=config["report"],
        grid=config["quantify"]["grid"],
        b=config["metrics"]["b"],
        data_root=DATA_ROOT,
    log:
        "logs/report/{layer}/entropy_maps.log",
    benchmark:
        "logs/benchmarks/report/{layer}/entropy_maps.tsv"
    script:
        "../scripts/figure_entropy_maps.py"


rule figure_concepts_vs_distance:
    input:
        per_image="results/tables/per_image.csv",
    output:
        report(
            "results/figures/{layer}/concepts_vs_distance.%s" % FIG_EXT,
            caption="../report/concepts_vs_distance.rst",
            category="Figures",
            subcategory="{layer}",
        ),
    params:
        settings=config["report"],
    log:
        "logs/report/{layer}/concepts_vs_distance.log",
    benchmark:
        "logs/benchmarks/report/{layer}/concepts_vs_distance.tsv"
    script:
        "../scripts/figure_concepts_vs_distance.py"
