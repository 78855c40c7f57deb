# Information discarding (SPEC section 2): one sigma map per (network, checkpoint, image).


def _quantify_settings():
    return {"quantify": config["quantify"], "seed": config["seed"],
            "device": config["device"], "threads": config["threads"]}


rule quantify_checkpoint:
    input:
        checkpoint=lambda w: checkpoint_path(w.network, w.layer, w.epoch),
        data=data_ready(DATA_ROOT),
    output:
        "results/quantify/{layer}/{network}/epoch_{epoch}.parquet",
    wildcard_constraints:
        network="distilled_student|baseline",
        epoch=r"\d{3}",
    params:
        settings=_quantify_settings(),
        data_root=DATA_ROOT,
    threads: config["threads"]
    resources:
        **compute_resources(),
    log:
        "logs/quantify/{layer}/{network}/epoch_{epoch}.log",
    benchmark:
        "logs/benchmarks/quantify/{layer}/{network}/epoch_{epoch}.tsv"
    script:
        "../scripts/quantify.py"


rule quantify_teacher:
    input:
        checkpoint="results/train/teacher/final.pt",
        data=data_ready(DATA_ROOT),
    output:
        "results/quantify/{layer}/teacher/final.parquet",
    params:
        settings=_quantify_settings(),
        data_root=DATA_ROOT,
    threads: config["threads"]
    resources:
        **compute_resources(),
    log:
        "logs/quantify/{layer}/teacher/final.log",
    benchmark:
        "logs/benchmarks/quantify/{layer}/teacher/final.tsv"
    script:
        "../scripts/quantify.py"


def quantify_tables(layer):
    """Every quantify table a layer's metrics need, keyed by (network, epoch or 'final')."""
    tables = {("teacher", "final"): f"results/quantify/{layer}/teacher/final.parquet"}
    for network in ANALYSED_NETWORKS:
        for epoch in EPOCHS:
            tables[(network, int(epoch))] = (
                f"results/quantify/{layer}/{network}/epoch_{int(epoch):03d}.parquet")
    return tables
