# Concepts, effective images and the six metrics (SPEC sections 3 to 6): per seed, then pooled
# over the seeds with confidence intervals.

from types import SimpleNamespace


def _seed_tables(w):
    """[layer, network, epoch, path] of every quantify table of one seed (all layers)."""
    rows = []
    for layer in LAYERS:
        at = SimpleNamespace(tree=w.tree, seed=w.seed, layer=layer)
        rows += [[layer, network, epoch, path] for network, epoch, path in quantify_tables(at)]
    return rows


def _seed_verdicts(w):
    """[layer, verdict path] of every round of one seed (effective_first only)."""
    if SCHEDULE != "effective_first":
        return []
    return [[layer, path] for layer in LAYERS
            for path in round_verdicts(SimpleNamespace(tree=w.tree, seed=w.seed, layer=layer))]


def _metrics_inputs(w):
    nets = ["teacher"] + NETWORKS
    inputs = {
        "tables": [row[-1] for row in _seed_tables(w)],
        "verdicts": [row[-1] for row in _seed_verdicts(w)],
        "weight_distance": sorted({f"{train_dir(w.tree, w.seed, n, l)}/weight_distance.csv"
                                   for l in LAYERS for n in NETWORKS}),
        "accuracy": sorted({f"{train_dir(w.tree, w.seed, n, l)}/metrics.json" for l in LAYERS for n in nets}),
        "data": data_ready(data_root(w.tree)),
    }
    if SCHEDULE == "effective_first":
        inputs["chosen"] = [f"{quantify_dir(w.tree, w.seed, l)}/chosen.csv" for l in LAYERS]
    return inputs


def _metrics_paths(w):
    nets = ["teacher"] + NETWORKS
    return {
        "tables": _seed_tables(w),
        "verdicts": _seed_verdicts(w),
        "weight_distance": [[l, n, f"{train_dir(w.tree, w.seed, n, l)}/weight_distance.csv"]
                            for l in LAYERS for n in NETWORKS],
        "accuracy": [[l, n, f"{train_dir(w.tree, w.seed, n, l)}/metrics.json"] for l in LAYERS for n in nets],
        "chosen": ({l: f"{quantify_dir(w.tree, w.seed, l)}/chosen.csv" for l in LAYERS}
                   if SCHEDULE == "effective_first" else None),
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
                            "networks": NETWORKS, "checkpoints": EPOCHS},
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
        # (checked, not compared: a pooled table is never made from a seed whose rounds are unfinished)
        schedule=lambda w: {"seed_dirs": [seed_dir(w.tree, s) for s in SEEDS], "layers": LAYERS,
                            "effective": EFFECTIVE, "round_size": ROUND_SIZE,
                            "candidates": CANDIDATES} if SCHEDULE == "effective_first" else None,
    log:
        "logs/{tree}/pool.log",
    benchmark:
        "logs/benchmarks/{tree}/pool.tsv"
    script:
        "../scripts/pool.py"
