# Every output a run expects, for the default target (Snakefile, rule all) and `kdconcepts check`.
# Why every one, not just the final tables: Snakemake only notices a missing output of a job
# when something asks for that file, so a deleted checkpoint or map table that nothing
# downstream reads (the baseline's final.pt, say) would otherwise never be remade.


def _training_outputs(tree, seed):
    folders = {"teacher": (train_dir(tree, seed, "teacher", None), _teacher_epochs())}
    for network in NETWORKS:
        for layer in (LAYERS if network == "distilled_student" else [None]):
            folders[f"{network}/{layer}"] = (train_dir(tree, seed, network, layer), EPOCHS)
    return [path for folder, epochs in folders.values() for outputs in [_train_outputs(folder, epochs)]
            for value in outputs.values() for path in ([value] if isinstance(value, str) else value)]


def expected_outputs():
    """Every declared output of the run's jobs, but the report's (listed by rule all itself)."""
    paths = []
    for tree in TREES:
        if SHARED_PRETRAIN:
            paths += [f"{tree}/pretrain/{name}" for name in ("final.pt", "train_log.jsonl", "metrics.json")]
        for seed in SEEDS:
            paths += _training_outputs(tree, seed)
            paths += [f"{quantify_dir(tree, seed, layer)}/{name}" for layer in LAYERS
                      for name in ("maps.parquet", "rounds.csv", "chosen.csv")]
            paths += [f"{seed_dir(tree, seed)}/tables/{name}.csv" for name in SEED_TABLES]
        paths += [f"{tree}/tables/{name}.csv" for name in POOLED_TABLES]
    return paths + [f"{RESULTS}/host.json", f"{RESULTS}/run.json"]


EXPECTED = expected_outputs()
