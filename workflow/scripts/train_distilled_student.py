"""Snakemake script (rule ``distilled_student``): distil the teacher's layer-L feature, then the head."""

from kdconcepts.checkpoints import load_checkpoint
from kdconcepts.data import load_split
from kdconcepts.features import load_features
from kdconcepts.runtime import job_logging
from kdconcepts.training import Augment, Phase, RunOptions, dataset_hash, train_distilled_student

smk = snakemake  # noqa: F821 (injected by Snakemake)
settings = {**smk.params.settings, "seed": int(smk.wildcards.seed)}
with job_logging(smk.log[0], threads=smk.threads):
    student = settings["distilled_student"]
    head = student["head"]
    layer = smk.wildcards.layer
    train = load_split(smk.params.data_root, "train", normalize=settings["dataset"]["normalize"])
    teacher, teacher_features = None, None
    if "features" in smk.input.keys():
        teacher_features, info = load_features(smk.input.features)
        if list(info.get("ids", train.ids)) != list(train.ids):
            raise ValueError(f"{smk.input.features} was made for other training images: rerun teacher_features")
    else:
        teacher, _ = load_checkpoint(smk.input.teacher)
    train_distilled_student(
        smk.output.final.rsplit("/", 1)[0],
        arch=settings["architecture"],
        layer=layer,
        train=train,
        test=load_split(smk.params.data_root, "test", normalize=settings["dataset"]["normalize"]),
        schedule=Phase.from_mapping(student, layer=layer),
        checkpoint_epochs=settings["checkpoints"],
        head_epochs=head["epochs"],
        head_batch_size=head["batch_size"],
        head_lr=head["lr"],
        plateau_factor=head["plateau_factor"],
        plateau_patience=head["plateau_patience"],
        teacher=teacher,
        teacher_features=teacher_features,
        momentum=settings["optimizer"]["momentum"],
        weight_decay=settings["optimizer"]["weight_decay"],
        augment=Augment.from_mapping(settings["augment"]),
        options=RunOptions.from_settings(settings, data_hash=dataset_hash(smk.params.data_root)),
    )
