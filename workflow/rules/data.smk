# The data stages belong to DVC (dvc.yaml, dvc.lock); these rules only ask DVC for them, so a
# prepared dataset comes from the DVC cache, a `dvc pull`, or a fresh run of the stage. One rule
# per DVC stage (item), chained so that two `dvc repro` never run at once (DVC locks the repo).


def _data_stages():
    """DVC stage -> the prepared folders it makes that this config reads, in run order."""
    stages = {config["dataset"]["dvc_stage"]: [PRETRAIN_ROOT] if PRETRAIN_ROOT else []}
    for tree in TREES.values():  # (the trees of an architecture axis share one root)
        roots = stages.setdefault(tree["stage"], [])
        if tree["root"] not in roots:
            roots.insert(0, tree["root"])
    return {stage: roots for stage, roots in stages.items() if roots}


DATA_STAGES = _data_stages()


def _rule_name(stage):
    return "data_" + re.sub(r"\W", "_", stage)


_previous = []
for _stage, _roots in DATA_STAGES.items():

    rule:
        name:
            _rule_name(_stage)
        input:
            _previous,
        output:
            [data_ready(root) for root in _roots],
        params:
            stage=_stage,
        log:
            f"logs/data/{_rule_name(_stage)}.log",
        benchmark:
            f"logs/benchmarks/data/{_rule_name(_stage)}.tsv"
        shell:
            "DVC_NO_ANALYTICS=1 dvc repro --single-item {params.stage:q} > {log:q} 2>&1"

    _previous = [data_ready(root) for root in _roots]
