"""Snakemake script (rule ``teacher``): pre-train (or take the tree's shared pre-training) and
fine-tune the teacher of one seed."""

from kdconcepts.data import load_split
from kdconcepts.runtime import job_logging
from kdconcepts.training import Augment, Phase, RunOptions, dataset_hash, train_teacher

smk = snakemake  # noqa: F821 (injected by Snakemake)
settings = {**smk.params.settings, "seed": int(smk.wildcards.seed)}
with job_logging(smk.log[0], threads=smk.threads):
    teacher = settings["teacher"]
    pretrain_root = smk.params.pretrain_root if teacher["init"] == "pretrain" else None
    pretrained = smk.input.get("pretrained")  # teacher.shared_pretrain: fine-tune it
    options = RunOptions.from_settings(settings, data_hash=dataset_hash(smk.params.data_root, pretrain_root))
    train_teacher(
        smk.output.final.rsplit("/", 1)[0],
        arch=settings["architecture"],
        train=load_split(smk.params.data_root, "train", normalize=settings["dataset"]["normalize"]),
        test=load_split(smk.params.data_root, "test", normalize=settings["dataset"]["normalize"]),
        init=teacher["init"],
        pretrain_data=(load_split(pretrain_root, "train", normalize=settings["dataset"]["normalize"])
                       if pretrain_root and not pretrained else None),
        pretrained=pretrained,
        pretrain=Phase.from_mapping(teacher["pretrain"]) if pretrain_root else None,
        weights=teacher["weights"],
        finetune=Phase.from_mapping(teacher["finetune"]),
        layers=settings["layers"],
        checkpoint_epochs=[e for e in settings["checkpoints"] if e <= teacher["finetune"]["epochs"]],
        momentum=settings["optimizer"]["momentum"],
        weight_decay=settings["optimizer"]["weight_decay"],
        augment=Augment.from_mapping(settings["augment"]),
        options=options,
    )
