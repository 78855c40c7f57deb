# Training of the three networks (SPEC sections 1 and 4): teacher, its features at each
# analysed layer, the distilled student per layer, and the baseline.

import re


def _train_settings(*sections):
    """The config subsets a training job depends on (changing one reruns the job)."""
    settings = {key: config[key] for key in ("seed", "device", "threads", "dataset", "architecture",
                                             "layers", "optimizer", "augment", "checkpoints")}
    settings.update({key: config[key] for key in sections})
    # Run-time options (precision, channels_last, deterministic); optional, defaults fp32.
    settings["training"] = config.get("training", {})
    return settings


def _teacher_epochs():
    """Checkpoint epochs that exist in the teacher's fine-tuning (epoch 0 = pre-trained net)."""
    return [e for e in EPOCHS if int(e) <= int(config["teacher"]["finetune"]["epochs"])]


def _train_outputs(folder, epochs):
    return {
        "checkpoints": [f"{folder}/{ckpt_name(e)}" for e in epochs],
        "final": f"{folder}/final.pt",
        "weight_distance": f"{folder}/weight_distance.csv",
        "train_log": f"{folder}/train_log.jsonl",
        "metrics": f"{folder}/metrics.json",
    }


def _teacher_inputs(wildcards):
    inputs = {"data": data_ready(DATA_ROOT)}
    if config["teacher"]["init"] == "pretrain":
        inputs["pretrain"] = data_ready(PRETRAIN_ROOT)
    if config["teacher"]["init"] == "imagenet" and config["teacher"]["weights"]:
        inputs["weights"] = config["teacher"]["weights"]
    return inputs


def _student_inputs(wildcards):
    inputs = {"data": data_ready(DATA_ROOT), "teacher": "results/train/teacher/final.pt"}
    if not config["augment"]["hflip"]:
        # Without augmentation the teacher's targets are computed once (rule teacher_features).
        inputs["features"] = f"results/features/{wildcards.layer}/teacher_train.pt"
    return inputs


rule teacher:
    input:
        unpack(_teacher_inputs),
    output:
        **_train_outputs("results/train/teacher", _teacher_epochs()),
    params:
        settings=_train_settings("teacher"),
        data_root=DATA_ROOT,
        pretrain_root=PRETRAIN_ROOT,
    threads: config["threads"]
    resources:
        **compute_resources(),
    log:
        "logs/train/teacher.log",
    benchmark:
        "logs/benchmarks/train/teacher.tsv"
    script:
        "../scripts/train_teacher.py"


rule teacher_features:
    input:
        teacher="results/train/teacher/final.pt",
        data=data_ready(DATA_ROOT),
    output:
        "results/features/{layer}/teacher_train.pt",
    wildcard_constraints:
        layer="|".join(re.escape(layer) for layer in LAYERS),
    params:
        settings=_train_settings("distilled_student"),
        data_root=DATA_ROOT,
    threads: config["threads"]
    resources:
        **compute_resources(),
    log:
        "logs/train/teacher_features/{layer}.log",
    benchmark:
        "logs/benchmarks/train/teacher_features/{layer}.tsv"
    script:
        "../scripts/extract_features.py"


rule distilled_student:
    input:
        unpack(_student_inputs),
    output:
        **_train_outputs("results/train/distilled_student/{layer}", EPOCHS),
    wildcard_constraints:
        layer="|".join(re.escape(layer) for layer in LAYERS),
    params:
        settings=_train_settings("distilled_student", "teacher"),
        data_root=DATA_ROOT,
    threads: config["threads"]
    resources:
        **compute_resources(),
    log:
        "logs/train/distilled_student/{layer}.log",
    benchmark:
        "logs/benchmarks/train/distilled_student/{layer}.tsv"
    script:
        "../scripts/train_distilled_student.py"


rule baseline:
    input:
        data=data_ready(DATA_ROOT),
    output:
        **_train_outputs("results/train/baseline", EPOCHS),
    params:
        settings=_train_settings("baseline"),
        data_root=DATA_ROOT,
    threads: config["threads"]
    resources:
        **compute_resources(),
    log:
        "logs/train/baseline.log",
    benchmark:
        "logs/benchmarks/train/baseline.tsv"
    script:
        "../scripts/train_baseline.py"
