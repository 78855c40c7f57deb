"""Config validation, the output trees, and the names every rule file shares.

Paths: every output lives in an output tree, ``results/`` for a plain config,
``results/<architecture>/`` per architecture of an architecture axis (config ``architectures``;
the stacked tables, table, forest plot and summary of all of them at ``results/``), or
``results/<parameter>_<value>/`` per value of a sweep (config ``sweep``); inside a tree, each seed
has ``seed_<seed>/`` (train/, quantify/, tables/), and the pooled tables, figures and
summary sit at the tree's top. Logs and benchmarks mirror that under ``logs/``.
"""

import os
import re
from pathlib import Path

import pandas as pd
from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

from kdconcepts.config import architecture_configs, config_file_problems, config_problems, load_schema
from kdconcepts.schedule import choose, early_epochs, late_epochs, needs_another_round

min_version("9.0")

_SCHEMA = Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml"
# Each config file as YAML, before any value is read: Snakemake's loader lets a repeated key
# (two `quantify:` blocks) silently replace the first. (A syntax error in a --configfile stops
# Snakemake itself before this file runs, without a line number; config/config.yaml is read
# by the `configfile:` below, after this check, which names its line and column.)
DEFAULT_CONFIG = "config/config.yaml"  # the embedded default; --configfile files extend it
_file_problems = [problem for path in [*workflow.overwrite_configfiles, DEFAULT_CONFIG]
                  for problem in config_file_problems(path)]
if _file_problems:
    raise WorkflowError("Invalid configuration file:\n  - " + "\n  - ".join(_file_problems))

configfile: DEFAULT_CONFIG

try:
    validate(config, schema="../schemas/config.schema.yaml")
except WorkflowError:
    pass  # described below, key by key
# Cluster jobs re-read this file: the submitting run made the checks that build networks.
_problems = config_problems(config, load_schema(_SCHEMA), workdir=workflow.basedir,
                           deep=workflow.is_main_process)
if _problems:
    raise WorkflowError("Invalid configuration:\n  - " + "\n  - ".join(_problems))


onstart:
    # The device, checked where the jobs will run, before any job starts (and so before Snakemake
    # deletes the old outputs of a job it reruns: a `device: cuda` on a machine without CUDA used
    # to fail the first training job after its trained networks were gone). Only here does
    # Snakemake know the executor: jobs of a local run use this machine's devices, while a
    # remote executor (the SLURM profile) sends them to the cluster's nodes, which this machine
    # cannot see; a CUDA config submitted from a CPU-only login node is checked by its jobs.
    if workflow.local_exec:
        from kdconcepts.runtime import device_problem

        _device = device_problem(config["device"])
        if _device:
            raise WorkflowError(
                f"Invalid configuration:\n  - device: {_device}; use 'auto' or 'cpu', or run the "
                "jobs where the device is (e.g. --workflow-profile workflow/profiles/slurm)")


def _key_sorted(node):
    return {k: _key_sorted(node[k]) for k in sorted(node)} if isinstance(node, dict) else node


# Rules hand config sections to `params:`, which Snakemake compares as text: sorting the keys
# keeps a reordered (but equal) config file from rerunning jobs. (The architectures keep the
# order they are written in, for the tables and the summary.)
ARCHITECTURE_ORDER = list(config.get("architectures") or [])
_canonical = _key_sorted(config)
config.clear()
config.update(_canonical)

SEEDS = [int(s) for s in config["seeds"]]
EPOCHS = [int(e) for e in config["checkpoints"]]
FINAL_EPOCH = EPOCHS[-1]
LATE = late_epochs(EPOCHS, config["metrics"]["late_fraction"])
EARLY = early_epochs(EPOCHS, config["metrics"]["late_fraction"])
LAYERS = list(config["layers"])
NETWORKS = list(config["networks"])  # the analysed ones; the teacher is quantified too
STUDENTS = [n for n in NETWORKS if n != "baseline"]
SCHEDULE = config["quantify"]["schedule"]
EFFECTIVE = int(config["metrics"]["effective"])
ROUND_SIZE = int(config["quantify"]["round_size"])
CANDIDATES = int(config["quantify"]["candidates"])


def _trees():
    """Output tree -> its prepared target data, the DVC stage that makes it, the sweep value
    and the architecture."""
    dataset, sweep, axis = config["dataset"], config["sweep"], config["architectures"]
    if axis:
        return {f"results/{arch}": {"root": dataset["root"], "stage": dataset["dvc_stage"], "value": None,
                                    "arch": arch} for arch in ARCHITECTURE_ORDER}
    if not sweep:
        return {"results": {"root": dataset["root"], "stage": dataset["dvc_stage"], "value": None,
                            "arch": config["architecture"]}}
    return {f"results/{sweep['parameter']}_{value}": {
                "root": sweep["root"].format(value=value),
                "stage": f"{sweep['dvc_stage']}@{value}", "value": value, "arch": config["architecture"]}
            for value in sweep["values"]}


TREES = _trees()
ARCHITECTURE_AXIS = bool(config["architectures"])
_ARCH_CONFIGS = architecture_configs(config)
PRETRAIN_ROOT = config["dataset"]["pretrain_root"]
# One pre-training per tree, fine-tuned by every seed (teacher.shared_pretrain), made with the
# first seed: that seed's teacher is the same network as with its own pre-training.
SHARED_PRETRAIN = config["teacher"]["init"] == "pretrain" and config["teacher"]["shared_pretrain"]


def tree_config(tree):
    """The config of an output tree: the run's, with its architecture's own rates (architecture
    axis) or as it is."""
    return _ARCH_CONFIGS[TREES[tree]["arch"]]


def _alternatives(values):
    return "|".join(re.escape(str(v)) for v in values)


wildcard_constraints:
    tree=_alternatives(TREES),
    seed=r"\d+",
    layer=_alternatives(LAYERS),
    network=_alternatives(NETWORKS),
    round=r"\d+",


def ckpt_name(epoch):
    return "epoch_%03d.pt" % int(epoch)


def data_ready(root):
    """The file the data rule promises for a prepared dataset folder."""
    return f"{root}/index.csv"


def data_root(tree):
    return TREES[tree]["root"]


def seed_dir(tree, seed):
    return f"{tree}/seed_{seed}"


def train_dir(tree, seed, network, layer):
    """Training folder of a network; the distilled student has one per analysed layer."""
    if network == "distilled_student":
        return f"{seed_dir(tree, seed)}/train/distilled_student/{layer}"
    return f"{seed_dir(tree, seed)}/train/{network}"


def checkpoint_path(tree, seed, network, layer, epoch):
    return f"{train_dir(tree, seed, network, layer)}/{ckpt_name(epoch)}"


def quantify_dir(tree, seed, layer):
    return f"{seed_dir(tree, seed)}/quantify/{layer}"


def compute_resources(threads=None):
    res = config["resources"]
    out = {"mem_mb": res["mem_mb"], "runtime": res["runtime_min"]}
    if res["gpus"]:
        out["gpu"] = res["gpus"]
    return out


# Job priorities (Snakemake starts the ready job with the highest first; the others stay at 0).
# Order only, never what a job computes. Why: left alone, Snakemake prefers the ready job with
# the most input bytes, a quantification job, so on 2 cores the last seeds' teachers started
# late and one core idled at the end while the last seed's quantification ran alone (the
# two-architecture default's timeline, docs/ARTIFACT_EVALUATION.md). So: the longest remaining
# chain first (pre-training, fine-tuning, distillation, then the baseline, which nothing but
# quantification waits for); and each round's `quantify_chosen`, the longest job and the end of
# its seed's chain, as soon as it is ready (longest first).
PRIORITY = {"teacher_pretrain": 5, "teacher": 4, "distilled_student": 3, "logit_student": 3, "baseline": 2,
            "quantify_chosen": 1}


# --- the effective-first schedule's data-dependent part (kdconcepts.schedule decides) ---------


def read_verdict(path):
    """A round's verdict table; a file that cannot be read is named, with what to do."""
    try:
        return pd.read_csv(path)
    except Exception as error:
        raise WorkflowError(f"cannot read the round verdict {path} ({error}); delete it and run "
                            "again: the round is recomputed") from error


def _walk_rounds(path_of_round):
    """Verdict paths of rounds 0, 1, ... until no other round is needed (kdconcepts.schedule), and
    the path of the first needed round that ``path_of_round`` says is not there yet (or None).

    ``path_of_round(r)`` gives round r's verdict path and whether it can be read now."""
    paths, tables = [], []
    while True:
        path, ready = path_of_round(len(paths))
        if not ready:
            return paths, path
        paths.append(path)
        tables.append(read_verdict(path))
        if not needs_another_round(tables, EFFECTIVE, ROUND_SIZE, CANDIDATES):
            return paths, None


def round_verdicts(w):
    """Verdict files of the rounds run so far for (tree, seed, layer), in round order.

    Each is an output of the checkpoint rule ``quantify_round``; asking for one that does not
    exist yet makes Snakemake run that round, then come back here (rounds are a chain of
    checkpoints). Stops at the first round after which no other round is needed.
    """
    def checkpointed(r):
        job = checkpoints.quantify_round.get(tree=w.tree, seed=w.seed, layer=w.layer, round=r)
        return str(job.output.verdict), True

    return _walk_rounds(checkpointed)[0]


def pending_rounds(_):
    """Per (tree, seed, layer), the verdict file of the first round that the verdicts already on
    disk say is needed but that is not there yet: an input of ``all``.

    Why: a job whose input is an unfinished checkpoint's output is not rerun by Snakemake
    (9.x) for a changed param or input; it waits for the checkpoint, but a missing checkpoint
    output is only made when a job that is rerun needs it. When a new round is wanted after
    earlier rounds were run (more images, more candidates), nothing would be rerun and the old
    tables would stay. Asking for that round from the target makes it run; the checkpoint
    mechanism then re-evaluates everything downstream, and more rounds follow if needed.
    """
    if SCHEDULE != "effective_first":
        return []
    pending = []
    for tree in TREES:
        for seed in SEEDS:
            for layer in LAYERS:
                def on_disk(r):
                    path = f"{quantify_dir(tree, seed, layer)}/round_{r}/verdict.csv"
                    return path, os.path.exists(path)

                done, missing = _walk_rounds(on_disk)
                if done and missing:  # (round 0 is asked for by every run anyway)
                    pending.append(missing)
    return pending


def chosen_per_round(verdict_paths):
    """How many of the first E effective images each round gives: {round: count}."""
    chosen = choose([read_verdict(p) for p in verdict_paths], EFFECTIVE)
    return chosen["round"].value_counts().to_dict()
