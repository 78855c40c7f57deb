"""Config validation, the output trees, and the names every rule file shares.

Paths: every output of a run lives under ``results/<run>/`` (config ``run``), in an output tree:
``results/<run>/`` itself for a plain config, ``results/<run>/<architecture>/`` per architecture of
an architecture axis (config ``architectures``; the stacked tables, table, forest plot and summary
of all of them at ``results/<run>/``), or ``results/<run>/<parameter>_<value>/`` per value of a
sweep (config ``sweep``); inside a tree, each seed
has ``seed_<seed>/`` (train/, quantify/, tables/), and the pooled tables, figures and
summary sit at the tree's top. Logs and benchmarks mirror that under ``logs/``.
"""

import os
import re
import sys
from pathlib import Path

import pandas as pd
from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

from kdconcepts.config import (architecture_configs, config_file_problems, config_problems, load_schema,
                               overlay_problems, run_name)

min_version("9.0")

_SCHEMA = Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml"
# Each config file as YAML, before any value is read: Snakemake's loader lets a repeated key
# (two `quantify:` blocks) silently replace the first. (A syntax error in a --configfile stops
# Snakemake itself before this file runs, without a line number; config/config.yaml is read
# by the `configfile:` below, after this check, which names its line and column.)
DEFAULT_CONFIG = "config/config.yaml"  # the embedded default; --configfile files extend it
if not os.path.isfile(DEFAULT_CONFIG):
    raise WorkflowError(f"{DEFAULT_CONFIG} is not in {os.getcwd()}: run snakemake in the kdconcepts folder "
                        f"(cd {workflow.basedir}), or pass --directory {workflow.basedir}")
_file_problems = [problem for path in [*workflow.overwrite_configfiles, DEFAULT_CONFIG]
                  for problem in config_file_problems(path)]
_file_problems += [problem for path in workflow.overwrite_configfiles if not config_file_problems(path)
                   for problem in overlay_problems(path)]
if _file_problems:
    raise WorkflowError("Invalid configuration file:\n  - " + "\n  - ".join(_file_problems))

configfile: DEFAULT_CONFIG

# The run's name (its folder under results/): a --configfile names its run unless it sets run:.
config["run"] = run_name(list(workflow.overwrite_configfiles), config.get("run", "default"))

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


def _only_looking(argv):
    """Whether this is a Snakemake command line that changes no file (a dry run, a summary, the
    report, a graph, ...), or not Snakemake's command line at all (an in-process API call)."""
    program = Path(argv[0])
    if not (program.name == "snakemake" or program.parts[-2:] == ("snakemake", "__main__.py")):
        return True
    looking = {"--dry-run", "--dryrun", "--summary", "--detailed-summary", "--lint", "--report", "--dag",
               "--rulegraph", "--filegraph", "--d3dag", "--list-rules", "--list-target-rules",
               "--list-changes", "--list-code-changes", "--list-input-changes", "--list-params-changes",
               "--list-untracked", "--unlock", "--cleanup-metadata", "--touch", "--lint"}
    return any(arg in looking or re.fullmatch(r"-[a-zA-Z]*[nSDtl][a-zA-Z]*", arg) for arg in argv[1:])


# Portable numerics (kdconcepts.numerics): the pins go into the environment every job inherits,
# before any job imports torch; cluster jobs re-read this file and set them too.
from kdconcepts.numerics import apply as _apply_numerics

_apply_numerics(config["numerics"])


# Outputs this run made that can no longer be read (a torn checkpoint, an emptied table): set aside
# as <name>.corrupt before Snakemake plans, so that this one run remakes them and what depends on
# them (kdconcepts.manifest). A run that only looks (-n) names them instead.
if workflow.is_main_process:
    from kdconcepts.manifest import readable, records, set_aside_unreadable

    if _only_looking(sys.argv):
        _unreadable = [(p, why) for p in records(f"results/{config['run']}") if os.path.exists(p)
                       for why in [readable(p)] if why]
        for _path, _why in _unreadable:
            print(f"kdconcepts: {_path} cannot be read ({_why}); a run sets it aside and remakes it",
                  file=sys.stderr)
    else:
        for _path, _why in set_aside_unreadable(f"results/{config['run']}"):
            print(f"kdconcepts: {_path} cannot be read ({_why}): set aside as {_path}.corrupt, remade by "
                  "this run", file=sys.stderr)


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
LAYERS = list(config["layers"])
NETWORKS = list(config["networks"])  # the analysed ones; the teacher is quantified too
STUDENTS = [n for n in NETWORKS if n != "baseline"]
# Each student is compared with the baseline on its own images (the first E effective for both).
COMPARISONS = [[student, "baseline"] for student in STUDENTS]
EFFECTIVE = int(config["metrics"]["effective"])


RUN = config["run"]
RESULTS = f"results/{RUN}"  # everything this run makes (logs: logs/results/<run>/)


def _trees():
    """Output tree -> its prepared target data, the DVC stage that makes it, the sweep value
    and the architecture."""
    dataset, sweep, axis = config["dataset"], config["sweep"], config["architectures"]
    if axis:
        return {f"{RESULTS}/{arch}": {"root": dataset["root"], "stage": dataset["dvc_stage"], "value": None,
                                      "arch": arch} for arch in ARCHITECTURE_ORDER}
    if not sweep:
        return {RESULTS: {"root": dataset["root"], "stage": dataset["dvc_stage"], "value": None,
                          "arch": config["architecture"]}}
    return {f"{RESULTS}/{sweep['parameter']}_{value}": {
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
# quantification waits for); then each seed's `quantify`, the longest job and the end of its
# seed's chain, as soon as it is ready.
PRIORITY = {"teacher_pretrain": 5, "teacher": 4, "distilled_student": 3, "logit_student": 3, "baseline": 2,
            "quantify": 1}
