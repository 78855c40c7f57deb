# Information discarding (SPEC section 2): sigma maps of candidate images at checkpoints, on the
# schedule of config quantify.schedule (kdconcepts.schedule explains both).
#
# effective_first: per (tree, seed, layer) the candidates come in rounds; in round r,
#   quantify_late        each network's late checkpoints, newest first, survivors only;
#   round_verdict        (a checkpoint rule) sigma_f at the early checkpoints of the survivors,
#                        and which candidates are effective for every network;
#   ... another round while fewer than metrics.effective are effective ...;
#   choose_images        the first E effective images (chosen.csv);
#   quantify_early       the chosen images of round r at the early checkpoints;
#   quantify_teacher     the chosen images of round r at the teacher's final checkpoint.
# exhaustive: quantify_all / quantify_all_teacher: every candidate at every checkpoint.


# Keys that decide which candidates a job sees, or only how fast it runs, stay out of the
# jobs' params: a round's jobs get their own span of candidate ranks instead, so that wanting
# more candidates or images reruns only the rounds it changes.
_NOT_IN_PARAMS = ("candidates", "schedule", "round_size", "threads")


def _quantify_settings():
    # metrics.selection: the late steps drop the candidates that fail the image rule the
    # metrics apply, so both schedules evaluate the same images
    return {"quantify": {k: v for k, v in config["quantify"].items() if k not in _NOT_IN_PARAMS},
            "device": config["device"], "normalize": config["dataset"]["normalize"],
            "selection": config["metrics"]["selection"]}


def _exhaustive_settings():
    return {"quantify": config["quantify"] | {"threads": None, "round_size": None, "schedule": None},
            "device": config["device"], "normalize": config["dataset"]["normalize"]}


def _round_span(w):
    """[first, end) candidate ranks of round ``w.round``."""
    ranks = range(min(int(w.round) * ROUND_SIZE, CANDIDATES), min((int(w.round) + 1) * ROUND_SIZE, CANDIDATES))
    return [ranks.start, ranks.stop]


def _epoch_pattern(epochs):
    return "|".join("%03d" % e for e in epochs)


def _round_table(w, network, epoch):
    return f"{quantify_dir(w.tree, w.seed, w.layer)}/round_{w.round}/{network}/epoch_{int(epoch):03d}.parquet"


def _late_inputs(w):
    """This step's checkpoint of every network (``checkpoint_<network>``) and, but at the newest
    late checkpoint, the previous (newer) step's tables (``newer_<network>``): their survivors
    go on."""
    inputs = {f"checkpoint_{n}": checkpoint_path(w.tree, w.seed, n, w.layer, w.epoch) for n in NETWORKS}
    newer = [e for e in LATE if e > int(w.epoch)]
    if newer:
        inputs.update({f"newer_{n}": _round_table(w, n, min(newer)) for n in NETWORKS})
    return inputs


# One job per late step for all networks: they quantify the same survivors, and one job saves
# the start-up (imports, data) of the others.
rule quantify_late:
    input:
        unpack(_late_inputs),
        data=lambda w: data_ready(data_root(w.tree)),
    output:
        expand("{{tree}}/seed_{{seed}}/quantify/{{layer}}/round_{{round}}/{network}/epoch_{{epoch}}.parquet",
               network=NETWORKS),
    wildcard_constraints:
        epoch=_epoch_pattern(LATE),
    params:
        settings=_quantify_settings(),
        data_root=lambda w: data_root(w.tree),
        span=_round_span,
        networks=NETWORKS,
    threads: config["quantify"]["threads"]
    resources:
        **compute_resources(),
    log:
        "logs/{tree}/seed_{seed}/quantify/{layer}/round_{round}/late_epoch_{epoch}.log",
    benchmark:
        "logs/benchmarks/{tree}/seed_{seed}/quantify/{layer}/round_{round}/late_epoch_{epoch}.tsv"
    script:
        "../scripts/quantify_late.py"


def _oldest_late(w):
    """Each network's table at the round's oldest late checkpoint (input names oldest_<network>)."""
    return {f"oldest_{network}": _round_table(w, network, min(LATE)) for network in NETWORKS}


checkpoint round_verdict:
    input:
        unpack(_oldest_late),
        early=lambda w: [checkpoint_path(w.tree, w.seed, n, w.layer, e) for n in NETWORKS for e in EARLY],
        data=lambda w: data_ready(data_root(w.tree)),
    output:
        "{tree}/seed_{seed}/quantify/{layer}/round_{round}/verdict.csv",
    params:
        settings=_quantify_settings(),
        data_root=lambda w: data_root(w.tree),
        span=_round_span,
        early=lambda w: {n: {e: checkpoint_path(w.tree, w.seed, n, w.layer, e) for e in EARLY}
                         for n in NETWORKS},
    threads: config["quantify"]["threads"]
    resources:
        **compute_resources(),
    log:
        "logs/{tree}/seed_{seed}/quantify/{layer}/round_{round}/verdict.log",
    benchmark:
        "logs/benchmarks/{tree}/seed_{seed}/quantify/{layer}/round_{round}/verdict.tsv"
    script:
        "../scripts/round_verdict.py"


rule choose_images:
    input:
        round_verdicts,
    output:
        "{tree}/seed_{seed}/quantify/{layer}/chosen.csv",
    params:
        effective=EFFECTIVE,
    log:
        "logs/{tree}/seed_{seed}/quantify/{layer}/chosen.log",
    benchmark:
        "logs/benchmarks/{tree}/seed_{seed}/quantify/{layer}/chosen.tsv"
    script:
        "../scripts/choose_images.py"


def _round_verdict(w):
    return f"{quantify_dir(w.tree, w.seed, w.layer)}/round_{w.round}/verdict.csv"


def _first_effective(w, input):
    """The round's first ``w.n_chosen`` effective images: the images of this round among the first E
    (a round's chosen images are always such a prefix, since choosing goes in candidate order)."""
    verdict = read_verdict(input.verdict)
    return verdict.loc[verdict["effective"], "image_id"].head(int(w.n_chosen)).tolist()


if EARLY:  # (with every checkpoint late there is nothing to do here)

    # One job per network and round for all its early checkpoints: fewer, longer jobs (a job's
    # start-up, imports and data loading cost seconds each). The number of the round's images
    # that are chosen is in the path (chosen_<n>/), so that wanting more images makes new
    # jobs for the rounds whose choice changed and leaves the others alone.
    rule quantify_early:
        input:
            verdict=_round_verdict,
            checkpoints=lambda w: [checkpoint_path(w.tree, w.seed, w.network, w.layer, e) for e in EARLY],
            data=lambda w: data_ready(data_root(w.tree)),
        output:
            ["{tree}/seed_{seed}/quantify/{layer}/round_{round}/{network}/chosen_{n_chosen}/epoch_%03d.parquet" % e
             for e in EARLY],
        wildcard_constraints:
            n_chosen=r"\d+",
        params:
            settings=_quantify_settings(),
            data_root=lambda w: data_root(w.tree),
            images=_first_effective,
            span=_round_span,
        threads: config["quantify"]["threads"]
        resources:
            **compute_resources(),
        log:
            "logs/{tree}/seed_{seed}/quantify/{layer}/round_{round}/{network}/chosen_{n_chosen}/early.log",
        benchmark:
            "logs/benchmarks/{tree}/seed_{seed}/quantify/{layer}/round_{round}/{network}/chosen_{n_chosen}/early.tsv"
        script:
            "../scripts/quantify_chosen.py"


rule quantify_teacher:
    input:
        verdict=_round_verdict,
        checkpoints=["{tree}/seed_{seed}/train/teacher/final.pt"],
        data=lambda w: data_ready(data_root(w.tree)),
    output:
        "{tree}/seed_{seed}/quantify/{layer}/round_{round}/teacher/chosen_{n_chosen}/final.parquet",
    wildcard_constraints:
        n_chosen=r"\d+",
    params:
        settings=_quantify_settings(),
        data_root=lambda w: data_root(w.tree),
        images=_first_effective,
        span=_round_span,
    threads: config["quantify"]["threads"]
    resources:
        **compute_resources(),
    log:
        "logs/{tree}/seed_{seed}/quantify/{layer}/round_{round}/teacher/chosen_{n_chosen}/final.log",
    benchmark:
        "logs/benchmarks/{tree}/seed_{seed}/quantify/{layer}/round_{round}/teacher/chosen_{n_chosen}/final.tsv"
    script:
        "../scripts/quantify_chosen.py"


rule quantify_all:
    input:
        checkpoint=lambda w: checkpoint_path(w.tree, w.seed, w.network, w.layer, w.epoch),
        data=lambda w: data_ready(data_root(w.tree)),
    output:
        "{tree}/seed_{seed}/quantify/{layer}/all/{network}/epoch_{epoch}.parquet",
    wildcard_constraints:
        epoch=r"\d{3}",
    params:
        settings=_exhaustive_settings(),
        data_root=lambda w: data_root(w.tree),
    threads: config["quantify"]["threads"]
    resources:
        **compute_resources(),
    log:
        "logs/{tree}/seed_{seed}/quantify/{layer}/all/{network}/epoch_{epoch}.log",
    benchmark:
        "logs/benchmarks/{tree}/seed_{seed}/quantify/{layer}/all/{network}/epoch_{epoch}.tsv"
    script:
        "../scripts/quantify_all.py"


rule quantify_all_teacher:
    input:
        checkpoint="{tree}/seed_{seed}/train/teacher/final.pt",
        data=lambda w: data_ready(data_root(w.tree)),
    output:
        "{tree}/seed_{seed}/quantify/{layer}/all/teacher/final.parquet",
    params:
        settings=_exhaustive_settings(),
        data_root=lambda w: data_root(w.tree),
    threads: config["quantify"]["threads"]
    resources:
        **compute_resources(),
    log:
        "logs/{tree}/seed_{seed}/quantify/{layer}/all/teacher/final.log",
    benchmark:
        "logs/benchmarks/{tree}/seed_{seed}/quantify/{layer}/all/teacher/final.tsv"
    script:
        "../scripts/quantify_all.py"


def quantify_tables(w):
    """Every quantify table the metrics of (tree, seed, layer) read, as [network, epoch, path]
    rows (epoch "final" for the teacher). For effective_first this walks the rounds (running
    them if needed) and lists the early tables of the rounds that have chosen images."""
    base = quantify_dir(w.tree, w.seed, w.layer)
    if SCHEDULE == "exhaustive":
        rows = [["teacher", "final", f"{base}/all/teacher/final.parquet"]]
        rows += [[n, e, f"{base}/all/{n}/epoch_{e:03d}.parquet"] for n in NETWORKS for e in EPOCHS]
        return rows
    verdicts = round_verdicts(w)
    chosen = chosen_per_round(verdicts)
    rows = []
    for r in range(len(verdicts)):
        rows += [[n, e, f"{base}/round_{r}/{n}/epoch_{e:03d}.parquet"] for n in NETWORKS for e in LATE]
        n_chosen = chosen.get(r, 0)
        if n_chosen:
            rows.append(["teacher", "final", f"{base}/round_{r}/teacher/chosen_{n_chosen}/final.parquet"])
            rows += [[n, e, f"{base}/round_{r}/{n}/chosen_{n_chosen}/epoch_{e:03d}.parquet"]
                     for n in NETWORKS for e in EARLY]
    return rows
