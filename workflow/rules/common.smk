"""Config validation and the names every rule file shares."""

import json
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

from kdconcepts.config import config_problems, load_schema

min_version("9.0")

_SCHEMA = Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml"
try:
    validate(config, schema="../schemas/config.schema.yaml")
except WorkflowError:
    pass  # described below, key by key
_problems = config_problems(config, load_schema(_SCHEMA))
if _problems:
    raise WorkflowError("Invalid configuration:\n  - " + "\n  - ".join(_problems))


def _key_sorted(node):
    return {k: _key_sorted(node[k]) for k in sorted(node)} if isinstance(node, dict) else node


# Rules hand config sections to `params:`, which Snakemake compares as text: sorting the keys
# keeps a reordered (but equal) config file from rerunning jobs.
_canonical = _key_sorted(config)
config.clear()
config.update(_canonical)

DATA_ROOT = config["dataset"]["root"]
PRETRAIN_ROOT = config["dataset"]["pretrain_root"]
EPOCHS = list(config["checkpoints"])
FINAL_EPOCH = EPOCHS[-1]
LAYERS = list(config["layers"])
ANALYSED_NETWORKS = ["distilled_student", "baseline"]


def ckpt_name(epoch):
    return "epoch_%03d.pt" % int(epoch)


def data_ready(root):
    """The file the data rule promises for a prepared dataset folder."""
    return f"{root}/index.csv"


def train_dir(network, layer):
    """Training folder of a network; the student has one per analysed layer."""
    if network == "distilled_student":
        return f"results/train/distilled_student/{layer}"
    return f"results/train/{network}"


def checkpoint_path(network, layer, epoch):
    return f"{train_dir(network, layer)}/{ckpt_name(epoch)}"


def compute_resources():
    res = config["resources"]
    out = {"mem_mb": res["mem_mb"], "runtime": res["runtime_min"]}
    if res["gpus"]:
        out["gpu"] = res["gpus"]
    return out
