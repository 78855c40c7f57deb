"""Snakemake script (rule ``baseline``): train the baseline of one seed with cross-entropy."""

from kdconcepts.data import load_split
from kdconcepts.runtime import job_logging
from kdconcepts.training import Augment, Phase, RunOptions, dataset_hash, train_baseline

smk = snakemake  # noqa: F821 (injected by Snakemake)
settings = {**smk.params.settings, "seed": int(smk.wildcards.seed)}
with job_logging(smk.log[0], threads=smk.threads):
    train_baseline(
        smk.output.final.rsplit("/", 1)[0],
        arch=settings["architecture"],
        train=load_split(smk.params.data_root, "train", normalize=settings["dataset"]["normalize"]),
        test=load_split(smk.params.data_root, "test", normalize=settings["dataset"]["normalize"]),
        schedule=Phase.from_mapping(settings["baseline"]),
        layers=settings["layers"],
        checkpoint_epochs=settings["checkpoints"],
        momentum=settings["optimizer"]["momentum"],
        weight_decay=settings["optimizer"]["weight_decay"],
        augment=Augment.from_mapping(settings["augment"]),
        options=RunOptions.from_settings(settings, data_hash=dataset_hash(smk.params.data_root)),
    )
