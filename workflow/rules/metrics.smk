# Concepts, effective images and the six metrics (SPEC sections 3 to 5).


def _metric_inputs():
    """Paths the metrics need, keyed the way kdconcepts.pipeline.evaluate_metrics takes them."""
    tables = [[layer, net, epoch, path] for layer in LAYERS
              for (net, epoch), path in quantify_tables(layer).items()]
    weight_distance = [[layer, net, f"{train_dir(net, layer)}/weight_distance.csv"]
                       for layer in LAYERS for net in ANALYSED_NETWORKS]
    accuracy = [[layer, net, f"{train_dir(net, layer)}/metrics.json"]
                for layer in LAYERS for net in ["teacher"] + ANALYSED_NETWORKS]
    return {"tables": tables, "weight_distance": weight_distance, "accuracy": accuracy}


METRIC_INPUTS = _metric_inputs()


rule metrics:
    input:
        tables=[row[-1] for row in METRIC_INPUTS["tables"]],
        weight_distance=sorted({row[-1] for row in METRIC_INPUTS["weight_distance"]}),
        accuracy=sorted({row[-1] for row in METRIC_INPUTS["accuracy"]}),
        data=data_ready(DATA_ROOT),
    output:
        metrics="results/tables/metrics.csv",
        per_image="results/tables/per_image.csv",
        hypotheses="results/tables/hypotheses.csv",
    params:
        paths=METRIC_INPUTS,
        settings={"metrics": config["metrics"], "grid": config["quantify"]["grid"],
                  "dataset": config["dataset"]["name"], "architecture": config["architecture"]},
        data_root=DATA_ROOT,
    log:
        "logs/metrics/metrics.log",
    benchmark:
        "logs/benchmarks/metrics.tsv"
    script:
        "../scripts/metrics.py"
