# Information discarding (SPEC section 2): every sigma map one (tree, seed, layer) needs, in one job
# (kdconcepts.walk.quantify_seed): the effective-first walk over the candidates in rounds (late
# checkpoints newest first, survivors only; sigma_f at the early checkpoints), until each
# comparison (a student and the baseline) has its first E effective images; then those images at
# the early checkpoints and the teacher's final one. quantify.schedule: exhaustive makes every
# candidate's map at every checkpoint first (a check: the same tables).
#
# The maps are kept between runs in results/.maps/, keyed by the checkpoint's content and the
# settings, so a rerun (after a crash, a deleted output, a retrained network or a changed setting),
# or another run with the same networks, makes only the maps that are missing.


def _quantify_settings():
    # metrics.selection: the walk drops the candidates that fail the image rule the metrics apply,
    # so the maps made are those the metrics read. quantify.threads only says how fast.
    return {"quantify": {k: v for k, v in config["quantify"].items() if k != "threads"},
            "device": config["device"], "normalize": config["dataset"]["normalize"],
            "selection": config["metrics"]["selection"], "effective": EFFECTIVE,
            "late_fraction": config["metrics"]["late_fraction"], "checkpoints": EPOCHS}


def _seed_checkpoints(w):
    """network -> epoch -> checkpoint of one seed; the teacher's final one as {"final": path}."""
    paths = {n: {e: checkpoint_path(w.tree, w.seed, n, w.layer, e) for e in EPOCHS} for n in NETWORKS}
    paths["teacher"] = {"final": f"{train_dir(w.tree, w.seed, 'teacher', w.layer)}/final.pt"}
    return paths


rule quantify:
    input:
        checkpoints=lambda w: [p for by_epoch in _seed_checkpoints(w).values() for p in by_epoch.values()],
        data=lambda w: data_ready(data_root(w.tree)),
    output:
        maps="{tree}/seed_{seed}/quantify/{layer}/maps.parquet",
        rounds="{tree}/seed_{seed}/quantify/{layer}/rounds.csv",
        chosen="{tree}/seed_{seed}/quantify/{layer}/chosen.csv",
    params:
        settings=_quantify_settings(),
        data_root=lambda w: data_root(w.tree),
        checkpoints=_seed_checkpoints,
        comparisons=COMPARISONS,
        cache="results/.maps",  # shared by the runs: keyed by checkpoint content and settings
    priority: PRIORITY["quantify"]
    threads: config["quantify"]["threads"]
    resources:
        **compute_resources(),
    log:
        "logs/{tree}/seed_{seed}/quantify/{layer}.log",
    benchmark:
        "logs/benchmarks/{tree}/seed_{seed}/quantify/{layer}.tsv"
    script:
        "../scripts/quantify.py"
