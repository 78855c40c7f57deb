# Training (SPEC sections 1 and 4), per output tree and seed: the teacher, the distilled student
# per analysed layer, the logit student (when listed) and the baseline. The seed comes from the path; each seed is a replicate. With teacher.shared_pretrain,
# the teacher's pre-training is one job per tree (rule teacher_pretrain, with the first seed),
# which every seed's teacher fine-tunes, as the paper fine-tunes one ImageNet model.


def _train_settings(tree, *sections):
    """The config subsets a training job of an output tree depends on (changing one reruns the
    job); the architecture and rates are the tree's."""
    of_tree = tree_config(tree)
    settings = {key: of_tree[key] for key in ("device", "threads", "dataset", "architecture", "layers",
                                              "optimizer", "augment", "checkpoints", "training")}
    settings.update({key: of_tree[key] for key in sections})
    return settings


def _pretrain_settings(tree):
    """What the shared pre-training depends on: not the layers, checkpoints or target schedules."""
    of_tree = tree_config(tree)
    settings = {key: of_tree[key] for key in ("device", "threads", "architecture", "optimizer", "augment",
                                              "training")}
    settings.update(pretrain=of_tree["teacher"]["pretrain"], normalize=of_tree["dataset"]["normalize"],
                    pretrain_root=PRETRAIN_ROOT, seed=SEEDS[0])
    return settings


def _teacher_epochs():
    """Checkpoint epochs that exist in the teacher's fine-tuning (epoch 0 = pre-trained net)."""
    return [e for e in EPOCHS if e <= int(config["teacher"]["finetune"]["epochs"])]


def _train_outputs(folder, epochs):
    return {
        "checkpoints": [f"{folder}/{ckpt_name(e)}" for e in epochs],
        "final": f"{folder}/final.pt",
        "weight_distance": f"{folder}/weight_distance.csv",
        "train_log": f"{folder}/train_log.jsonl",
        "metrics": f"{folder}/metrics.json",
    }


def _teacher_inputs(w):
    inputs = {"data": data_ready(data_root(w.tree))}
    if SHARED_PRETRAIN:
        inputs["pretrained"] = f"{w.tree}/pretrain/final.pt"
    elif config["teacher"]["init"] == "pretrain":
        inputs["pretrain"] = data_ready(PRETRAIN_ROOT)
    if config["teacher"]["init"] == "imagenet" and config["teacher"]["weights"]:
        inputs["weights"] = config["teacher"]["weights"]
    return inputs


def _student_inputs(w):
    # (Without augmentation the job computes the teacher's targets once, before training.)
    return {"data": data_ready(data_root(w.tree)),
            "teacher": f"{train_dir(w.tree, w.seed, 'teacher', None)}/final.pt"}


rule teacher_pretrain:
    input:
        pretrain=data_ready(PRETRAIN_ROOT) if PRETRAIN_ROOT else [],
    output:
        final="{tree}/pretrain/final.pt",
        train_log="{tree}/pretrain/train_log.jsonl",
        metrics="{tree}/pretrain/metrics.json",
    params:
        settings=lambda w: _pretrain_settings(w.tree),
    priority: PRIORITY["teacher_pretrain"]
    threads: config["threads"]
    resources:
        **compute_resources(),
    log:
        "logs/{tree}/pretrain.log",
    benchmark:
        "logs/benchmarks/{tree}/train/pretrain.tsv"
    script:
        "../scripts/train.py"


rule teacher:
    input:
        unpack(_teacher_inputs),
    output:
        **_train_outputs("{tree}/seed_{seed}/train/teacher", _teacher_epochs()),
    params:
        settings=lambda w: _train_settings(w.tree, "teacher"),
        data_root=lambda w: data_root(w.tree),
        pretrain_root=PRETRAIN_ROOT,
    priority: PRIORITY["teacher"]
    threads: config["threads"]
    resources:
        **compute_resources(),
    log:
        "logs/{tree}/seed_{seed}/train/teacher.log",
    benchmark:
        "logs/benchmarks/{tree}/seed_{seed}/train/teacher.tsv"
    script:
        "../scripts/train.py"


rule distilled_student:
    input:
        unpack(_student_inputs),
    output:
        **_train_outputs("{tree}/seed_{seed}/train/distilled_student/{layer}", EPOCHS),
    params:
        settings=lambda w: _train_settings(w.tree, "distilled_student", "teacher"),
        data_root=lambda w: data_root(w.tree),
    priority: PRIORITY["distilled_student"]
    threads: config["threads"]
    resources:
        **compute_resources(),
    log:
        "logs/{tree}/seed_{seed}/train/distilled_student/{layer}.log",
    benchmark:
        "logs/benchmarks/{tree}/seed_{seed}/train/distilled_student/{layer}.tsv"
    script:
        "../scripts/train.py"


rule logit_student:
    input:
        data=lambda w: data_ready(data_root(w.tree)),
        teacher="{tree}/seed_{seed}/train/teacher/final.pt",
    output:
        **_train_outputs("{tree}/seed_{seed}/train/logit_student", EPOCHS),
    params:
        settings=lambda w: _train_settings(w.tree, "logit_student", "teacher"),
        data_root=lambda w: data_root(w.tree),
    priority: PRIORITY["logit_student"]
    threads: config["threads"]
    resources:
        **compute_resources(),
    log:
        "logs/{tree}/seed_{seed}/train/logit_student.log",
    benchmark:
        "logs/benchmarks/{tree}/seed_{seed}/train/logit_student.tsv"
    script:
        "../scripts/train.py"


rule baseline:
    input:
        data=lambda w: data_ready(data_root(w.tree)),
    output:
        **_train_outputs("{tree}/seed_{seed}/train/baseline", EPOCHS),
    params:
        settings=lambda w: _train_settings(w.tree, "baseline"),
        data_root=lambda w: data_root(w.tree),
    priority: PRIORITY["baseline"]
    threads: config["threads"]
    resources:
        **compute_resources(),
    log:
        "logs/{tree}/seed_{seed}/train/baseline.log",
    benchmark:
        "logs/benchmarks/{tree}/seed_{seed}/train/baseline.tsv"
    script:
        "../scripts/train.py"
