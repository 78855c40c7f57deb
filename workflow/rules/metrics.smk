# Concepts, effective images and the six metrics (SPEC sections 3 to 6): per seed, then pooled
# over the seeds (the seed is the unit of replication: kdconcepts.stats).


def _quantified(w):
    """layer -> the quantify job's outputs of one seed."""
    return {l: {name: f"{quantify_dir(w.tree, w.seed, l)}/{name}.{ext}"
                for name, ext in (("maps", "parquet"), ("rounds", "csv"), ("chosen", "csv"))} for l in LAYERS}


def _metrics_inputs(w):
    nets = ["teacher"] + NETWORKS
    return {
        "quantified": [p for paths in _quantified(w).values() for p in paths.values()],
        "weight_distance": sorted({f"{train_dir(w.tree, w.seed, n, l)}/weight_distance.csv"
                                   for l in LAYERS for n in NETWORKS}),
        "accuracy": sorted({f"{train_dir(w.tree, w.seed, n, l)}/metrics.json" for l in LAYERS for n in nets}),
        "data": data_ready(data_root(w.tree)),
    }


def _metrics_paths(w):
    nets = ["teacher"] + NETWORKS
    return {
        "quantified": _quantified(w),
        "weight_distance": [[l, n, f"{train_dir(w.tree, w.seed, n, l)}/weight_distance.csv"]
                            for l in LAYERS for n in NETWORKS],
        "accuracy": [[l, n, f"{train_dir(w.tree, w.seed, n, l)}/metrics.json"] for l in LAYERS for n in nets],
    }


SEED_TABLES = ("metrics", "per_image", "images", "hypotheses", "selection", "work")


rule metrics:
    input:
        unpack(_metrics_inputs),
    output:
        **{name: "{tree}/seed_{seed}/tables/%s.csv" % name for name in SEED_TABLES},
    params:
        paths=_metrics_paths,
        settings=lambda w: {"metrics": config["metrics"], "grid": config["quantify"]["grid"],
                            "dataset": config["dataset"]["name"], "architecture": TREES[w.tree]["arch"],
                            "comparisons": COMPARISONS, "checkpoints": EPOCHS},
        data_root=lambda w: data_root(w.tree),
    log:
        "logs/{tree}/seed_{seed}/metrics.log",
    benchmark:
        "logs/benchmarks/{tree}/seed_{seed}/metrics.tsv"
    script:
        "../scripts/metrics.py"


POOLED_TABLES = ("metrics", "hypotheses", "images", "per_image", "selection", "work", "differences",
                 "teacher", "premise")


rule pool:
    input:
        **{name: expand("{{tree}}/seed_{seed}/tables/%s.csv" % name, seed=SEEDS)
           for name in ("metrics", "images", "per_image", "selection", "work")},
    output:
        **{name: "{tree}/tables/%s.csv" % name for name in POOLED_TABLES},
    params:
        students=STUDENTS,
        resamples=config["metrics"]["resamples"],
        confidence=config["metrics"]["confidence"],
        premise_margin=config["metrics"]["premise_margin"],
    log:
        "logs/{tree}/pool.log",
    benchmark:
        "logs/benchmarks/{tree}/pool.tsv"
    script:
        "../scripts/pool.py"
