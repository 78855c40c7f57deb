"""Snakemake script of every training rule (``teacher_pretrain``, ``teacher``, ``distilled_student``,
``logit_student``, ``baseline``): the rule's recipe from kdconcepts.training, run once per
fingerprint (kdconcepts.store.train_once: an identical job's outputs come from the store)."""

from kdconcepts.checkpoints import load_checkpoint
from kdconcepts.data import load_split
from kdconcepts.features import extract_features
from kdconcepts.models import resolve_layer
from kdconcepts.runtime import resolve_device, snakemake_job
from kdconcepts.store import train_once
from kdconcepts.training import (Augment, Phase, RunOptions, dataset_hash, pretrain_teacher, train_baseline,
                                 train_distilled_student, train_logit_student, train_teacher)

smk = snakemake  # noqa: F821 (injected by Snakemake)
settings = dict(smk.params.settings)
if "seed" in smk.wildcards.keys():
    settings["seed"] = int(smk.wildcards.seed)
folder = smk.output.final.rsplit("/", 1)[0]


def _split(root, split):
    normalize = settings["normalize"] if smk.rule == "teacher_pretrain" else settings["dataset"]["normalize"]
    return load_split(root, split, normalize=normalize)


def _common(train, *roots):
    """The arguments every recipe takes: optimiser, augmentation, run options (with the data's hash
    and the inputs' normalisation, stored in every checkpoint)."""
    normalization = {"mean": list(train.meta["mean"]), "std": list(train.meta["std"])}
    return {"momentum": settings["optimizer"]["momentum"], "weight_decay": settings["optimizer"]["weight_decay"],
            "augment": Augment.from_mapping(settings["augment"]),
            "options": RunOptions.from_settings(settings, data_hash=dataset_hash(*roots), normalization=normalization)}


def pretrain():
    root = settings["pretrain_root"]
    train = _split(root, "train")
    pretrain_teacher(folder, arch=settings["architecture"], train=train, test=_split(root, "test"),
                     schedule=Phase.from_mapping(settings["pretrain"]), **_common(train, root))


def teacher():
    section, root = settings["teacher"], smk.params.data_root
    pretrain_root = smk.params.pretrain_root if section["init"] == "pretrain" else None
    pretrained = smk.input.get("pretrained")  # teacher.shared_pretrain: fine-tune it
    train = _split(root, "train")
    train_teacher(
        folder, arch=settings["architecture"], train=train, test=_split(root, "test"),
        init=section["init"],
        pretrain_data=_split(pretrain_root, "train") if pretrain_root and not pretrained else None,
        pretrained=pretrained, pretrain=Phase.from_mapping(section["pretrain"]) if pretrain_root else None,
        weights=section["weights"], finetune=Phase.from_mapping(section["finetune"]), layers=settings["layers"],
        checkpoint_epochs=[e for e in settings["checkpoints"] if e <= section["finetune"]["epochs"]],
        **_common(train, root, pretrain_root))


def distilled_student():
    section, layer, root = settings["distilled_student"], smk.wildcards.layer, smk.params.data_root
    train = _split(root, "train")
    common = _common(train, root)
    teacher_net, info = load_checkpoint(smk.input.teacher)
    features = None
    if not common["augment"].active:
        # Every epoch sees the same inputs: the teacher's targets once, here (a job of their own
        # cost a Python and torch start-up per student for a forward pass of seconds).
        node = resolve_layer(info["arch"], layer)
        features = extract_features(teacher_net, node, train.images, batch_size=256,
                                    device=resolve_device(settings["device"]), progress=True)
        log.info("teacher features at %s: %s, for the %d training images", node, tuple(features.shape[1:]),
                 len(features))
        teacher_net = None
    head = section["head"]
    train_distilled_student(
        folder, arch=settings["architecture"], layer=layer, train=train, test=_split(root, "test"),
        schedule=Phase.from_mapping(section, layer=layer), checkpoint_epochs=settings["checkpoints"],
        head_epochs=head["epochs"], head_batch_size=head["batch_size"], head_lr=head["lr"],
        plateau_factor=head["plateau_factor"], plateau_patience=head["plateau_patience"],
        teacher=teacher_net, teacher_features=features, **common)


def logit_student():
    section, root = settings["logit_student"], smk.params.data_root
    teacher_net, _ = load_checkpoint(smk.input.teacher, map_location=resolve_device(settings["device"]))
    train = _split(root, "train")
    train_logit_student(
        folder, arch=settings["architecture"], train=train, test=_split(root, "test"),
        schedule=Phase.from_mapping(section), layers=settings["layers"], checkpoint_epochs=settings["checkpoints"],
        teacher=teacher_net, temperature=section["temperature"], alpha=section["alpha"], **_common(train, root))


def baseline():
    root = smk.params.data_root
    train = _split(root, "train")
    train_baseline(folder, arch=settings["architecture"], train=train, test=_split(root, "test"),
                   schedule=Phase.from_mapping(settings["baseline"]), layers=settings["layers"],
                   checkpoint_epochs=settings["checkpoints"], **_common(train, root))


RECIPES = {"teacher_pretrain": pretrain, "teacher": teacher, "distilled_student": distilled_student,
           "logit_student": logit_student, "baseline": baseline}

with snakemake_job(smk, threads=smk.threads) as log:
    roots = ([settings["pretrain_root"]] if smk.rule == "teacher_pretrain"
             else [smk.params.data_root, smk.params.get("pretrain_root")])
    train_once(smk, roots, RECIPES[smk.rule])
