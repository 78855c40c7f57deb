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


def _restore_from_dvc_cache(roots):
    """Restore missing prepared data from DVC's cache before Snakemake plans (``dvc checkout``),
    checked against dvc.lock. Why before: a missing data folder makes Snakemake plan its stage,
    and with it every training job downstream, although the data come back byte for byte."""
    import subprocess

    from kdconcepts.data.integrity import integrity_problems

    missing = [root for root in roots if not os.path.exists(data_ready(root))]
    if not missing:
        return
    if _only_looking(sys.argv):
        print(f"kdconcepts: {', '.join(missing)} missing; a run restores them from the DVC cache first "
              "(if it holds them), so that nothing downstream is remade", file=sys.stderr)
        return
    restored = subprocess.run([sys.executable, "-m", "dvc", "checkout", "--quiet", *missing], capture_output=True, text=True,
                              env={**os.environ, "DVC_NO_ANALYTICS": "1"})
    back = [root for root in missing if os.path.exists(data_ready(root))]
    if not back:
        return  # not in the cache: the data rule makes them
    problems = [p for root in back for p in integrity_problems(root)]
    if problems:
        raise WorkflowError("the DVC cache gave back prepared data that is not what dvc.lock records, so no "
                            "job runs on it:\n  - " + "\n  - ".join(problems[:10]) + "\nDelete the folder(s) "
                            "and `dvc cache` entries at fault (or run `dvc gc`), then run again: the data stage "
                            "remakes them.")
    print(f"kdconcepts: restored {', '.join(back)} from the DVC cache (as dvc.lock records them)", file=sys.stderr)


if workflow.is_main_process:
    _restore_from_dvc_cache([root for roots in DATA_STAGES.values() for root in roots])


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
