"""Snakemake script (rule ``distilled_student``): distil the teacher's layer-L feature, then the head."""

from kdconcepts.checkpoints import load_checkpoint
from kdconcepts.data import load_split
from kdconcepts.features import extract_features
from kdconcepts.models import resolve_layer
from kdconcepts.runtime import job_logging, resolve_device
from kdconcepts.training import Augment, Phase, RunOptions, dataset_hash, train_distilled_student

smk = snakemake  # noqa: F821 (injected by Snakemake)
settings = {**smk.params.settings, "seed": int(smk.wildcards.seed)}
with job_logging(smk.log[0], threads=smk.threads) as log:
    student = settings["distilled_student"]
    head = student["head"]
    layer = smk.wildcards.layer
    train = load_split(smk.params.data_root, "train", normalize=settings["dataset"]["normalize"])
    augment = Augment.from_mapping(settings["augment"])
    teacher, info = load_checkpoint(smk.input.teacher)
    teacher_features = None
    if not augment.active:
        # Every epoch sees the same inputs: the teacher's targets once, here (a job of their own
        # cost a Python and torch start-up per student for a forward pass of seconds).
        node = resolve_layer(info["arch"], layer)
        teacher_features = extract_features(teacher, node, train.images, batch_size=256,
                                            device=resolve_device(settings["device"]), progress=True)
        log.info("teacher features at %s: %s, for the %d training images", node,
                 tuple(teacher_features.shape[1:]), len(teacher_features))
        teacher = None
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
        augment=augment,
        options=RunOptions.from_settings(settings, data_hash=dataset_hash(smk.params.data_root)),
    )
