"""Snakemake script (rule ``teacher_pretrain``): the one pre-training of an output tree's
teachers (``teacher.shared_pretrain``), which every seed's teacher fine-tunes."""

from kdconcepts.data import load_split
from kdconcepts.runtime import job_logging
from kdconcepts.training import Augment, Phase, RunOptions, dataset_hash, pretrain_teacher

smk = snakemake  # noqa: F821 (injected by Snakemake)
settings = smk.params.settings
with job_logging(smk.log[0], threads=smk.threads):
    root, normalize = settings["pretrain_root"], settings["normalize"]
    pretrain_teacher(
        smk.output.final.rsplit("/", 1)[0],
        arch=settings["architecture"],
        train=load_split(root, "train", normalize=normalize),
        test=load_split(root, "test", normalize=normalize),
        schedule=Phase.from_mapping(settings["pretrain"]),
        momentum=settings["optimizer"]["momentum"],
        weight_decay=settings["optimizer"]["weight_decay"],
        augment=Augment.from_mapping(settings["augment"]),
        options=RunOptions.from_settings(settings, data_hash=dataset_hash(root)),
    )
