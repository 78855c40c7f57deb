"""Snakemake script (rule ``teacher_features``): the teacher's layer-L output on every training image."""

from kdconcepts.data import load_split
from kdconcepts.features import extract_features, save_features
from kdconcepts.models import resolve_layer
from kdconcepts.runtime import job_logging, resolve_device
from kdconcepts.checkpoints import load_checkpoint

smk = snakemake  # noqa: F821 (injected by Snakemake)
settings = smk.params.settings
with job_logging(smk.log[0], threads=smk.threads):
    device = resolve_device(settings["device"])
    teacher, info = load_checkpoint(smk.input.teacher, map_location=device)
    node = resolve_layer(info["arch"], smk.wildcards.layer)
    train = load_split(smk.params.data_root, "train", normalize=settings["dataset"]["normalize"])
    features = extract_features(teacher, node, train.images, batch_size=256, device=device, progress=True)
    save_features(smk.output[0], features, layer=smk.wildcards.layer, node=node, ids=list(train.ids),
                  config_hash=info["config_hash"], data_hash=info["data_hash"])
