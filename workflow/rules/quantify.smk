# Information discarding (SPEC section 2): sigma maps of candidate images at checkpoints, on the
# schedule of config quantify.schedule (kdconcepts.schedule explains both).
#
# effective_first: per (tree, seed, layer) the candidates come in rounds; in round r,
#   quantify_round       (a checkpoint rule) each network's late checkpoints, newest first,
#                        survivors only; then sigma_f at the early checkpoints of the
#                        survivors, and which candidates are effective for every network;
#   ... another round while fewer than metrics.effective are effective ...;
#   choose_images        the first E effective images (chosen.csv);
#   quantify_chosen      the chosen images of round r at every early checkpoint and at the
#                        teacher's final checkpoint.
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


_LATE_TABLE = "{tree}/seed_{seed}/quantify/{layer}/round_{round}/%s/epoch_%03d.parquet"
_CHOSEN_TABLE = "{tree}/seed_{seed}/quantify/{layer}/round_{round}/%s/chosen_{n_chosen}/%s.parquet"


def _late_table(at, network, epoch):
    """The late table of ``network`` at ``epoch`` in round ``at["round"]`` (an output of
    quantify_round); ``at`` holds the wildcards tree, seed, layer and round."""
    return (_LATE_TABLE % (network, int(epoch))).format(**at)


def _round_table(w, network, epoch):
    return _late_table({"tree": w.tree, "seed": w.seed, "layer": w.layer, "round": w.round}, network, epoch)


def _checkpoint(w, network, epoch):
    return checkpoint_path(w.tree, w.seed, network, w.layer, epoch)


def _by_network(w, epochs, path):
    """network -> epoch -> path(w, network, epoch)."""
    return {n: {e: path(w, n, e) for e in epochs} for n in NETWORKS}


# One job per round (kdconcepts.pipeline.quantify_round): every network's late checkpoints,
# newest first, survivors only, then the verdict. One job, not one per late step and one for
# the verdict: a job's start-up (imports, data) costs seconds, and a round's steps are a chain
# anyway. A checkpoint: whether another round is needed depends on its verdict.
checkpoint quantify_round:
    input:
        late=lambda w: [_checkpoint(w, n, e) for n in NETWORKS for e in LATE],
        early=lambda w: [_checkpoint(w, n, e) for n in NETWORKS for e in EARLY],
        data=lambda w: data_ready(data_root(w.tree)),
    output:
        verdict="{tree}/seed_{seed}/quantify/{layer}/round_{round}/verdict.csv",
        late=[_LATE_TABLE % (n, e) for n in NETWORKS for e in LATE],
    params:
        settings=_quantify_settings(),
        data_root=lambda w: data_root(w.tree),
        span=_round_span,
        late=lambda w: _by_network(w, LATE, _checkpoint),
        early=lambda w: _by_network(w, EARLY, _checkpoint),
        tables=lambda w: _by_network(w, LATE, _round_table),
    threads: config["quantify"]["threads"]
    resources:
        **compute_resources(),
    log:
        "logs/{tree}/seed_{seed}/quantify/{layer}/round_{round}/round.log",
    benchmark:
        "logs/benchmarks/{tree}/seed_{seed}/quantify/{layer}/round_{round}/round.tsv"
    script:
        "../scripts/quantify_round.py"


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


# One job per round for its chosen images at every early checkpoint of every network and at the
# teacher's final checkpoint (fewer job start-ups). How many of the round's images are chosen is
# in the path (chosen_<n>/), so that wanting more images makes new jobs for the rounds whose
# choice changed and leaves the others alone.
rule quantify_chosen:
    input:
        verdict=_round_verdict,
        checkpoints=lambda w: [_checkpoint(w, n, e) for n in NETWORKS for e in EARLY]
        + [f"{seed_dir(w.tree, w.seed)}/train/teacher/final.pt"],
        data=lambda w: data_ready(data_root(w.tree)),
    output:
        [_CHOSEN_TABLE % (n, "epoch_%03d" % e) for n in NETWORKS for e in EARLY]
        + [_CHOSEN_TABLE % ("teacher", "final")],
    wildcard_constraints:
        n_chosen=r"\d+",
    params:
        settings=_quantify_settings(),
        data_root=lambda w: data_root(w.tree),
        images=_first_effective,
        span=_round_span,
    priority: PRIORITY["quantify_chosen"]
    threads: config["quantify"]["threads"]
    resources:
        **compute_resources(),
    log:
        "logs/{tree}/seed_{seed}/quantify/{layer}/round_{round}/chosen_{n_chosen}.log",
    benchmark:
        "logs/benchmarks/{tree}/seed_{seed}/quantify/{layer}/round_{round}/chosen_{n_chosen}.tsv"
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
        # (the paths the rules write: their output patterns, filled in)
        at = {"tree": w.tree, "seed": w.seed, "layer": w.layer, "round": r, "n_chosen": chosen.get(r, 0)}
        rows += [[n, e, _late_table(at, n, e)] for n in NETWORKS for e in LATE]
        if at["n_chosen"]:
            rows.append(["teacher", "final", (_CHOSEN_TABLE % ("teacher", "final")).format(**at)])
            rows += [[n, e, (_CHOSEN_TABLE % (n, "epoch_%03d" % e)).format(**at)] for n in NETWORKS for e in EARLY]
    return rows
