# The data stage belongs to DVC (dvc.yaml, dvc.lock); this rule asks DVC for it, so a
# prepared dataset comes from the DVC cache, a `dvc pull`, or a fresh run of the stage.


def _data_outputs():
    roots = [DATA_ROOT] + ([PRETRAIN_ROOT] if PRETRAIN_ROOT else [])
    return [data_ready(r) for r in roots]


rule data:
    output:
        _data_outputs(),
    params:
        stage=config["dataset"]["dvc_stage"],
    log:
        "logs/data/data.log",
    benchmark:
        "logs/benchmarks/data.tsv"
    shell:
        "DVC_NO_ANALYTICS=1 dvc repro --single-item {params.stage:q} > {log:q} 2>&1"
