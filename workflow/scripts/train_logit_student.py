"""Snakemake script (rule ``logit_student``): Hinton distillation of the teacher's logits."""

from kdconcepts.checkpoints import load_checkpoint
from kdconcepts.data import load_split
from kdconcepts.runtime import job_logging, resolve_device
from kdconcepts.training import Augment, Phase, RunOptions, dataset_hash, train_logit_student

smk = snakemake  # noqa: F821 (injected by Snakemake)
settings = {**smk.params.settings, "seed": int(smk.wildcards.seed)}
with job_logging(smk.log[0], threads=smk.threads):
    section = settings["logit_student"]
    teacher, _ = load_checkpoint(smk.input.teacher, map_location=resolve_device(settings["device"]))
    train_logit_student(
        smk.output.final.rsplit("/", 1)[0],
        arch=settings["architecture"],
        train=load_split(smk.params.data_root, "train", normalize=settings["dataset"]["normalize"]),
        test=load_split(smk.params.data_root, "test", normalize=settings["dataset"]["normalize"]),
        schedule=Phase.from_mapping(section),
        layers=settings["layers"],
        checkpoint_epochs=settings["checkpoints"],
        teacher=teacher,
        temperature=section["temperature"],
        alpha=section["alpha"],
        momentum=settings["optimizer"]["momentum"],
        weight_decay=settings["optimizer"]["weight_decay"],
        augment=Augment.from_mapping(settings["augment"]),
        options=RunOptions.from_settings(settings, data_hash=dataset_hash(smk.params.data_root)),
    )
