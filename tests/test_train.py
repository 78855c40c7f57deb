"""Training regimes, checkpoints, weight distance, determinism and resume (issue 4), on tiny data."""

import json
import math
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from kdconcepts.features import extract_features
from kdconcepts.models import resolve_layer, trunk_parameters
from kdconcepts.training import (
    Augment,
    RESUME_CHECKPOINTS,
    RESUME_FILE,
    PROGRESS_LOG,
    Phase,
    RunOptions,
    WeightDistance,
    checkpoint_name,
    load_checkpoint,
    log_linear_lr,
    settings_hash,
    train_baseline,
    train_distilled_student,
    train_logit_student,
    train_teacher,
)
from kdconcepts.training.regimes import LogitDistillation

torch.set_num_threads(1)

SIZE = 16
OPTIONS = RunOptions(seed=3, device="cpu", progress=False, config_hash="cfg", data_hash="data")


def tiny_split(n, num_classes=4, seed=0):
    """Class-dependent colour blobs: learnable in a few epochs."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % num_classes
    images = torch.randn(n, 3, SIZE, SIZE, generator=g) * 0.3
    images[torch.arange(n), labels % 3, 4:12, 4:12] += 1.5 * (labels[:, None, None] // 3 + 1).float()
    return SimpleNamespace(images=images, labels=labels, meta={"num_classes": num_classes, "image_size": SIZE})


TRAIN, TEST = tiny_split(48), tiny_split(24, seed=1)


def states_equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def load_state(path):
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def delete_declared_outputs(folder):
    for path in folder.iterdir():
        if not path.name.startswith("."):
            path.unlink()


class Crash(RuntimeError):
    pass


def crash_at(phase, epoch):
    def hook(p, e):
        if (p, e) == (phase, epoch):
            raise Crash(f"simulated kill after {p} epoch {e}")

    return hook


def run_baseline(out_dir, **kwargs):
    args = dict(arch="small_vgg", train=TRAIN, test=TEST, schedule=Phase(3, 16, 0.02, 0.002),
                layers=["conv", "fc1"], checkpoint_epochs=[0, 1, 3], options=OPTIONS)
    args.update(kwargs)
    return train_baseline(out_dir, **args)


def run_student(out_dir, teacher=None, **kwargs):
    args = dict(arch="small_vgg", layer="fc1", train=TRAIN, test=TEST, schedule=Phase(3, 16, 0.02, 0.002),
                checkpoint_epochs=[0, 2, 3], head_epochs=2, head_batch_size=16, head_lr=0.02, teacher=teacher,
                options=OPTIONS)
    args.update(kwargs)
    return train_distilled_student(out_dir, **args)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher")
    metrics = train_teacher(out, arch="small_vgg", train=TRAIN, test=TEST, init="pretrain",
                            pretrain_data=tiny_split(64, num_classes=6, seed=5), pretrain=Phase(2, 16, 0.02, 0.01),
                            finetune=Phase(2, 16, 0.01, 0.005), layers=["conv"], checkpoint_epochs=[0, 2],
                            options=OPTIONS)
    model, info = load_checkpoint(out / "final.pt")
    return SimpleNamespace(dir=out, metrics=metrics, model=model, info=info)


def test_log_linear_learning_rate():
    rates = [log_linear_lr(e, 5, 0.1, 0.001) for e in range(5)]
    assert rates[0] == pytest.approx(0.1) and rates[-1] == pytest.approx(0.001)
    ratios = [b / a for a, b in zip(rates, rates[1:])]
    assert all(r == pytest.approx(10 ** -0.5) for r in ratios)
    assert log_linear_lr(0, 1, 0.1, 0.001) == 0.1


def test_weight_distance_sums_step_norms_over_initial_norm():
    w = torch.nn.Parameter(torch.tensor([3.0, 4.0]))  # ||w0|| = 5
    tracker = WeightDistance({"fc1": w})
    for delta in ([1.0, 0.0], [0.0, -2.0], [-1.0, 2.0]):  # step norms 1, 2, sqrt(5)
        tracker.before_step()
        with torch.no_grad():
            w += torch.tensor(delta)
        tracker.after_step()
    assert tracker.steps == 3
    # Summed per step, not the net displacement (which is 0 here).
    assert tracker.distance()["fc1"] == pytest.approx((1 + 2 + math.sqrt(5)) / 5)
    restored = WeightDistance({"fc1": w})
    restored.load_state_dict(tracker.state_dict())
    assert restored.distance() == tracker.distance()
    with pytest.raises(ValueError, match="all zeros"):
        WeightDistance({"x": torch.zeros(3)})


def test_phase_and_options_validate_their_input():
    with pytest.raises(ValueError, match="batch_size"):
        Phase(1, 0, 0.1, 0.01)
    with pytest.raises(ValueError, match="learning rates"):
        Phase(1, 4, 0.0, 0.01)
    with pytest.raises(ValueError, match="lacks"):
        Phase.from_mapping({"epochs": 1})
    with pytest.raises(ValueError, match="precision"):
        RunOptions(precision="fp8")
    settings = {"seed": 1, "device": "cpu", "training": {"precision": "bf16", "channels_last": True,
                                                         "deterministic": False}}
    options = RunOptions.from_settings(settings, data_hash="d")
    assert (options.seed, options.precision, options.channels_last, options.deterministic) == (1, "bf16", True, False)
    assert options.config_hash == settings_hash(dict(reversed(list(settings.items()))))
    with pytest.raises(ValueError, match="unknown training option"):
        RunOptions.from_settings({"seed": 0, "device": "cpu", "training": {"amp": True}}, data_hash="d")


def test_baseline_writes_the_contracted_outputs(tmp_path):
    metrics = run_baseline(tmp_path)
    names = {p.name for p in tmp_path.iterdir()}
    assert names == {checkpoint_name(e) for e in (0, 1, 3)} | {"final.pt", "weight_distance.csv",
                                                                "train_log.jsonl", "metrics.json"}
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    model, info = load_checkpoint(tmp_path / checkpoint_name(3))
    assert (info["arch"], info["role"], info["epoch"], info["num_classes"], info["image_size"]) == \
        ("small_vgg", "baseline", 3, 4, SIZE)
    assert (info["config_hash"], info["data_hash"]) == ("cfg", "data")
    assert not model.training
    # Weight distance: 0 at epoch 0, non-decreasing, one row per layer and epoch, same as checkpoints.
    table = pd.read_csv(tmp_path / "weight_distance.csv")
    assert list(table.columns) == ["layer", "epoch", "step", "weight_distance"]
    for layer, rows in table.groupby("layer"):
        assert list(rows["epoch"]) == [0, 1, 2, 3]
        assert list(rows["step"]) == [0, 3, 6, 9]  # 48 images / batch 16
        assert rows["weight_distance"].iloc[0] == 0 and rows["weight_distance"].is_monotonic_increasing
        assert info["weight_distance"][layer] == pytest.approx(float(rows["weight_distance"].iloc[-1]))
    log = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2, 3]
    assert [r["lr"] for r in log] == pytest.approx([0.02, 0.02 * 0.1 ** 0.5, 0.002])
    assert all({"ce", "train_accuracy", "images_per_s", "seconds"} <= r.keys() for r in log)
    assert log[-1]["ce"] < log[0]["ce"]
    assert not (tmp_path / RESUME_FILE).exists()


def test_cpu_training_is_bitwise_deterministic(tmp_path):
    run_baseline(tmp_path / "a", checkpoint_epochs=[3])
    run_baseline(tmp_path / "b", checkpoint_epochs=[3])
    assert states_equal(load_state(tmp_path / "a" / "final.pt"), load_state(tmp_path / "b" / "final.pt"))
    other_seed = RunOptions(seed=4, device="cpu", progress=False)
    run_baseline(tmp_path / "c", checkpoint_epochs=[3], options=other_seed)
    assert not states_equal(load_state(tmp_path / "a" / "final.pt"), load_state(tmp_path / "c" / "final.pt"))


def test_a_killed_baseline_resumes_to_the_same_result(tmp_path):
    run_baseline(tmp_path / "full")
    with pytest.raises(Crash):
        run_baseline(tmp_path / "killed", on_epoch_end=crash_at("train", 2))
    assert (tmp_path / "killed" / RESUME_FILE).exists() and not (tmp_path / "killed" / "final.pt").exists()
    assert (tmp_path / "killed" / checkpoint_name(1)).exists()
    delete_declared_outputs(tmp_path / "killed")  # as Snakemake does with a failed job's outputs
    run_baseline(tmp_path / "killed")
    assert (tmp_path / "killed" / checkpoint_name(1)).exists() and (tmp_path / "killed" / checkpoint_name(0)).exists()
    for name in ("final.pt", checkpoint_name(3)):
        assert states_equal(load_state(tmp_path / "full" / name), load_state(tmp_path / "killed" / name))
    full = pd.read_csv(tmp_path / "full" / "weight_distance.csv")
    resumed = pd.read_csv(tmp_path / "killed" / "weight_distance.csv")
    pd.testing.assert_frame_equal(full, resumed)
    epochs = [json.loads(line)["epoch"] for line in (tmp_path / "killed" / "train_log.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3]
    assert not (tmp_path / "killed" / RESUME_FILE).exists()
    assert not (tmp_path / "killed" / RESUME_CHECKPOINTS).exists()


def test_resume_state_from_other_settings_is_ignored(tmp_path):
    with pytest.raises(Crash):
        run_baseline(tmp_path / "x", on_epoch_end=crash_at("train", 1))
    changed = RunOptions(seed=3, device="cpu", progress=False, config_hash="other", data_hash="data")
    run_baseline(tmp_path / "x", options=changed)
    run_baseline(tmp_path / "ref", options=changed)
    assert states_equal(load_state(tmp_path / "x" / "final.pt"), load_state(tmp_path / "ref" / "final.pt"))


def test_resume_state_of_an_older_version_is_ignored(tmp_path, caplog):
    with pytest.raises(Crash):
        run_baseline(tmp_path / "x", on_epoch_end=crash_at("train", 2))
    # The layout before the logs were stored as JSON text: lists of dicts.
    state = torch.load(tmp_path / "x" / RESUME_FILE, weights_only=True)
    state["records"] = json.loads(state.pop("records_json"))
    state["distance_rows"] = json.loads(state.pop("distance_rows_json"))
    torch.save(state, tmp_path / "x" / RESUME_FILE)
    with caplog.at_level("WARNING", logger="kdconcepts.training"):
        run_baseline(tmp_path / "x")
    assert "older version" in caplog.text
    run_baseline(tmp_path / "ref")
    assert states_equal(load_state(tmp_path / "x" / "final.pt"), load_state(tmp_path / "ref" / "final.pt"))
    epochs = [json.loads(line)["epoch"] for line in (tmp_path / "x" / "train_log.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3]


def test_teacher_pretrains_then_finetunes(teacher):
    assert teacher.info["role"] == "teacher" and teacher.info["num_classes"] == 4
    assert teacher.metrics["pretrain_classes"] == 6
    names = {p.name for p in teacher.dir.iterdir()}
    assert {checkpoint_name(0), checkpoint_name(2), "final.pt"} <= names
    phases = [json.loads(line)["phase"] for line in (teacher.dir / "train_log.jsonl").read_text().splitlines()]
    assert phases == ["pretrain", "pretrain", "finetune", "finetune"]
    # Epoch 0 of fine-tuning is the pre-trained net: its conv weights are not the random init.
    pretrained = load_state(teacher.dir / checkpoint_name(0))
    assert pretrained["features.0.weight"].shape == (32, 3, 3, 3)
    assert pretrained["classifier.6.weight"].shape == (4, 256)


def test_teacher_errors(tmp_path):
    common = dict(arch="small_vgg", train=TRAIN, test=TEST, finetune=Phase(1, 16, 0.01, 0.01), layers=["conv"],
                  checkpoint_epochs=[0], options=OPTIONS)
    with pytest.raises(ValueError, match="pretrain_data"):
        train_teacher(tmp_path / "a", init="pretrain", **common)
    with pytest.raises(ValueError, match="no ImageNet weights"):
        train_teacher(tmp_path / "b", init="imagenet", **common)
    with pytest.raises(ValueError, match="init must be"):
        train_teacher(tmp_path / "c", init="scratch", **common)
    with pytest.raises(ValueError, match="outside 0..1"):
        train_teacher(tmp_path / "d", init="none", **{**common, "checkpoint_epochs": [0, 2]})


def test_student_distils_only_up_to_the_layer_then_trains_the_head(tmp_path, teacher):
    metrics = run_student(tmp_path, teacher=teacher.model)
    init = load_state(tmp_path / checkpoint_name(0))
    distilled = load_state(tmp_path / checkpoint_name(3))
    final = load_state(tmp_path / "final.pt")
    model, _ = load_checkpoint(tmp_path / "final.pt")
    trunk, head = trunk_parameters(model, "small_vgg", "fc1")
    # Distillation changes only the layers up to L (the MSE does not reach the head) ...
    assert all(not torch.equal(init[n], distilled[n]) for n in trunk)
    assert all(torch.equal(init[n], distilled[n]) for n in head)
    # ... and the head phase only the layers above L, BatchNorm statistics of the trunk included.
    assert all(torch.equal(distilled[n], final[n]) for n in trunk)
    assert all(not torch.equal(distilled[n], final[n]) for n in head)
    stats = [k for k in final if "running_mean" in k or "running_var" in k]
    assert stats and all(torch.equal(distilled[k], final[k]) for k in stats)
    log = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert [r["phase"] for r in log] == ["distill"] * 3 + ["head"] * 2
    assert log[2]["mse"] < log[0]["mse"] and "ce" not in log[0] and "ce" in log[-1]
    assert metrics["distill_mse"] == log[2]["mse"] and metrics["node"] == "classifier.0"
    table = pd.read_csv(tmp_path / "weight_distance.csv")
    assert set(table["layer"]) == {"fc1"} and list(table["epoch"]) == [0, 1, 2, 3]


def test_student_and_baseline_share_their_initial_weights(tmp_path, teacher):
    run_student(tmp_path / "s", teacher=teacher.model)
    run_baseline(tmp_path / "b")
    assert states_equal(load_state(tmp_path / "s" / checkpoint_name(0)), load_state(tmp_path / "b" / checkpoint_name(0)))


def test_teacher_stays_frozen_in_eval_mode(tmp_path, teacher):
    before = {k: v.clone() for k, v in teacher.model.state_dict().items()}
    run_student(tmp_path, teacher=teacher.model, head_epochs=0)
    assert states_equal(before, teacher.model.state_dict())  # BatchNorm running stats untouched too


def test_precomputed_teacher_features_give_the_same_student(tmp_path, teacher):
    features = extract_features(teacher.model, resolve_layer("small_vgg", "fc1"), TRAIN.images, batch_size=16)
    run_student(tmp_path / "online", teacher=teacher.model)
    run_student(tmp_path / "cached", teacher_features=features)
    online, cached = load_state(tmp_path / "online" / "final.pt"), load_state(tmp_path / "cached" / "final.pt")
    assert all(torch.allclose(online[k].float(), cached[k].float(), atol=1e-5) for k in online)


def test_student_with_flips_computes_targets_online(tmp_path, teacher):
    features = torch.zeros(len(TRAIN.images), 256)
    with pytest.raises(ValueError, match="flips"):
        run_student(tmp_path / "a", teacher_features=features, augment=Augment(hflip=True))
    with pytest.raises(ValueError, match="needs the teacher"):
        run_student(tmp_path / "b")
    with pytest.raises(ValueError, match="teacher features for"):
        run_student(tmp_path / "c", teacher_features=features[:5])
    run_student(tmp_path / "d", teacher=teacher.model, augment=Augment(hflip=True), head_epochs=0)
    run_student(tmp_path / "e", teacher=teacher.model, augment=Augment(), head_epochs=0)
    assert not states_equal(load_state(tmp_path / "d" / "final.pt"), load_state(tmp_path / "e" / "final.pt"))


@pytest.mark.parametrize("phase,epoch", [("distill", 2), ("head", 1)])
def test_a_killed_student_resumes_to_the_same_result(tmp_path, teacher, phase, epoch):
    run_student(tmp_path / "full", teacher=teacher.model)
    with pytest.raises(Crash):
        run_student(tmp_path / "killed", teacher=teacher.model, on_epoch_end=crash_at(phase, epoch))
    delete_declared_outputs(tmp_path / "killed")
    run_student(tmp_path / "killed", teacher=teacher.model)
    for name in ("final.pt", checkpoint_name(0), checkpoint_name(2), checkpoint_name(3)):
        assert states_equal(load_state(tmp_path / "full" / name), load_state(tmp_path / "killed" / name))
    full, resumed = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("full", "killed"))
    assert full["test_accuracy"] == resumed["test_accuracy"] and full["distill_mse"] == resumed["distill_mse"]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "full" / "weight_distance.csv"),
                                  pd.read_csv(tmp_path / "killed" / "weight_distance.csv"))


def test_checkpoint_epochs_beyond_the_run_are_refused(tmp_path):
    with pytest.raises(ValueError, match="outside 0..3"):
        run_baseline(tmp_path, checkpoint_epochs=[0, 5])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_and_channels_last_on_cuda(tmp_path, precision):
    options = RunOptions(seed=3, device="cuda", precision=precision, channels_last=True, progress=False)
    metrics = run_baseline(tmp_path, options=options)
    assert metrics["device"].startswith("cuda") and math.isfinite(metrics["test_accuracy"])
    model, _ = load_checkpoint(tmp_path / "final.pt")  # saved on the CPU, loadable anywhere
    assert next(model.parameters()).device.type == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_deterministic_cuda_training_repeats(tmp_path):
    options = RunOptions(seed=3, device="cuda", deterministic=True, progress=False)
    run_baseline(tmp_path / "a", options=options, checkpoint_epochs=[3])
    run_baseline(tmp_path / "b", options=options, checkpoint_epochs=[3])
    assert states_equal(load_state(tmp_path / "a" / "final.pt"), load_state(tmp_path / "b" / "final.pt"))


# --- the logit student (Hinton et al. 2015) and the regime registry --------------------------


def run_logit(out_dir, teacher, **kwargs):
    args = dict(arch="small_vgg", train=TRAIN, test=TEST, schedule=Phase(3, 16, 0.02, 0.002),
                layers=["conv", "fc1"], checkpoint_epochs=[0, 2, 3], teacher=teacher, options=OPTIONS)
    args.update(kwargs)
    return train_logit_student(out_dir, **args)


def test_logit_distillation_loss_is_hintons_formula():
    g = torch.Generator().manual_seed(0)
    student, teacher = torch.nn.Linear(5, 4), torch.nn.Linear(5, 4)
    x, y = torch.randn(6, 5, generator=g), torch.tensor([0, 1, 2, 3, 0, 1])
    job = SimpleNamespace(device=torch.device("cpu"), prepare=lambda m: m)
    with torch.no_grad():
        named, logits = LogitDistillation(student, job, teacher=teacher, temperature=3.0, alpha=0.7).losses(x, y, None)
    student.requires_grad_(False)
    t = 3.0
    p_teacher = torch.softmax(teacher(x) / t, dim=1)
    log_p_student = torch.log_softmax(student(x) / t, dim=1)
    kl = (p_teacher * (p_teacher.log() - log_p_student)).sum(1).mean()
    assert set(named) == {"kd", "ce"}
    assert float(named["kd"]) == pytest.approx(float(0.7 * t * t * kl), rel=1e-5)
    assert float(named["ce"]) == pytest.approx(float(0.3 * torch.nn.functional.cross_entropy(student(x), y)), rel=1e-6)
    assert torch.equal(logits, student(x))
    with pytest.raises(ValueError, match="alpha"):
        LogitDistillation(student, job, teacher=teacher, temperature=3.0, alpha=1.5)


def test_logit_student_shares_the_init_and_is_analysed_like_the_others(tmp_path, teacher):
    run_baseline(tmp_path / "baseline")
    metrics = run_logit(tmp_path / "logit", teacher.model)
    assert states_equal(load_state(tmp_path / "baseline" / checkpoint_name(0)),
                        load_state(tmp_path / "logit" / checkpoint_name(0)))
    assert not states_equal(load_state(tmp_path / "baseline" / "final.pt"),
                            load_state(tmp_path / "logit" / "final.pt"))
    log = [json.loads(line) for line in (tmp_path / "logit" / "train_log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2, 3] and all({"kd", "ce", "train_accuracy"} <= set(r) for r in log)
    table = pd.read_csv(tmp_path / "logit" / "weight_distance.csv")
    assert set(table["layer"]) == {"conv", "fc1"} and (table.groupby("layer")["weight_distance"].diff().dropna() >= 0).all()
    _, info = load_checkpoint(tmp_path / "logit" / checkpoint_name(2))
    assert info["role"] == "logit_student" and info["epoch"] == 2
    assert metrics["temperature"] == 4.0 and metrics["alpha"] == 0.9 and 0 <= metrics["test_accuracy"] <= 1


def test_a_killed_logit_student_resumes_to_the_same_result(tmp_path, teacher):
    run_logit(tmp_path / "full", teacher.model)
    with pytest.raises(Crash):
        run_logit(tmp_path / "killed", teacher.model, on_epoch_end=crash_at("train", 2))
    delete_declared_outputs(tmp_path / "killed")
    run_logit(tmp_path / "killed", teacher.model)
    for name in ("final.pt", checkpoint_name(0), checkpoint_name(2), checkpoint_name(3)):
        assert states_equal(load_state(tmp_path / "full" / name), load_state(tmp_path / "killed" / name))


def test_a_killed_job_leaves_no_declared_log_with_some_epochs_only(tmp_path):
    with pytest.raises(Crash):
        run_baseline(tmp_path, on_epoch_end=crash_at("train", 2))
    names = {p.name for p in tmp_path.iterdir()}
    assert not {"train_log.jsonl", "weight_distance.csv", "metrics.json", "final.pt"} & names
    progress = [json.loads(line) for line in (tmp_path / PROGRESS_LOG).read_text().splitlines()]
    assert [r["epoch"] for r in progress] == [1, 2]
    run_baseline(tmp_path)
    assert not (tmp_path / PROGRESS_LOG).exists() and (tmp_path / "train_log.jsonl").exists()


# --- augmentation -------------------------------------------------------------------------------


def test_random_crop_is_a_window_of_the_enlarged_image():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    same = Augment(crop_resize=8)  # nothing to crop: the image itself
    draws = same.draw(2, torch.Generator().manual_seed(0))
    assert torch.equal(same.apply(x, draws, torch.tensor([0, 1])), x)
    crop = Augment(crop_resize=12)
    draws = crop.draw(2, torch.Generator().manual_seed(1))
    out = crop.apply(x, draws, torch.tensor([0, 1]))
    big = torch.nn.functional.interpolate(x, size=(12, 12), mode="bilinear", align_corners=False)
    for i in range(2):
        matches = [(t, l) for t in range(5) for l in range(5) if torch.equal(big[i, :, t:t + 8, l:l + 8], out[i])]
        assert matches, "the crop is not an 8 x 8 window of the enlarged image"
    # The same epoch generator makes the same choices (a resumed run crops alike); flips come
    # first, so adding the crop does not change the flips of a seed.
    again = crop.draw(2, torch.Generator().manual_seed(1))
    assert torch.equal(again["crop"], draws["crop"]) and torch.equal(
        Augment(hflip=True).draw(2, torch.Generator().manual_seed(1))["flip"], draws["flip"])
    with pytest.raises(ValueError, match="smaller than the images"):
        Augment(crop_resize=6).apply(x, Augment(crop_resize=6).draw(2, torch.Generator()), torch.tensor([0, 1]))


def test_with_crops_the_student_target_is_the_teachers_feature_of_the_same_crop(tmp_path, teacher):
    features = torch.zeros(len(TRAIN.images), 256)
    with pytest.raises(ValueError, match="crops"):
        run_student(tmp_path / "a", teacher_features=features, augment=Augment(crop_resize=20))
    seen = []
    from kdconcepts.training.regimes import feature_distillation as fd
    original = fd.FeatureDistillation.losses

    def spy(self, x, y, index):
        seen.append((x.clone(), self.target(x, index).clone()))
        return original(self, x, y, index)

    fd.FeatureDistillation.losses = spy
    try:
        run_student(tmp_path / "b", teacher=teacher.model, augment=Augment(crop_resize=20), head_epochs=0,
                    schedule=Phase(1, 16, 0.02, 0.02), checkpoint_epochs=[1])
    finally:
        fd.FeatureDistillation.losses = original
    from kdconcepts.features import extract_features
    node = resolve_layer("small_vgg", "fc1")
    x, target = seen[0]
    assert not any(torch.equal(x[0], img) for img in TRAIN.images)  # the batch was cropped
    torch.testing.assert_close(target, extract_features(teacher.model, node, x), rtol=1e-5, atol=1e-6)


def test_the_method_does_not_import_training():
    """Quantification loads checkpoints without depending on how a network was trained."""
    import subprocess
    import sys
    code = ("import sys, kdconcepts.quantify, kdconcepts.quantify.cli, kdconcepts.pipeline, kdconcepts.metrics; "
            "print(sorted(m for m in sys.modules if m.startswith('kdconcepts.train')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_shared_pretraining_gives_each_seed_the_teacher_of_its_own_pretraining(teacher, tmp_path):
    """teacher.shared_pretrain: one pre-training (seed 3, as the ``teacher`` fixture's), which a
    teacher then fine-tunes. For the seed that pre-trained it, the teacher is the same network
    as with its own pre-training; another seed fine-tunes the same pre-trained trunk."""
    from kdconcepts.training import pretrain_teacher

    extra = tiny_split(64, num_classes=6, seed=5)
    metrics = pretrain_teacher(tmp_path / "pre", arch="small_vgg", train=extra, test=tiny_split(24, num_classes=6, seed=6),
                               schedule=Phase(2, 16, 0.02, 0.01), options=OPTIONS)
    model, info = load_checkpoint(tmp_path / "pre/final.pt")
    assert (info["role"], info["num_classes"]) == ("pretrain", 6) and 0.0 <= metrics["test_accuracy"] <= 1.0
    common = dict(arch="small_vgg", train=TRAIN, test=TEST, init="pretrain", finetune=Phase(2, 16, 0.01, 0.005),
                  layers=["conv"], checkpoint_epochs=[0, 2])
    shared = train_teacher(tmp_path / "t3", pretrained=tmp_path / "pre/final.pt", options=OPTIONS, **common)
    assert shared["pretrained"] == str(tmp_path / "pre/final.pt")
    assert states_equal(load_state(tmp_path / "t3/final.pt"), load_state(teacher.dir / "final.pt"))
    assert states_equal(load_state(tmp_path / "t3/epoch_000.pt"), load_state(teacher.dir / "epoch_000.pt"))
    # Seed 4 starts from the same trunk (its epoch 0 differs only in the new output layer).
    train_teacher(tmp_path / "t4", pretrained=tmp_path / "pre/final.pt",
                  options=RunOptions(seed=4, device="cpu", progress=False), **common)
    seed3, seed4 = load_state(tmp_path / "t3/epoch_000.pt"), load_state(tmp_path / "t4/epoch_000.pt")
    last = [k for k in seed3 if k.startswith("classifier.6")]
    assert all(torch.equal(seed3[k], seed4[k]) for k in seed3 if k not in last)
    assert not torch.equal(seed3["classifier.6.weight"], seed4["classifier.6.weight"])
    # A checkpoint that is not a pre-training of this architecture is refused, by name.
    train_baseline(tmp_path / "b", arch="small_vgg", train=TRAIN, test=TEST, schedule=Phase(1, 16, 0.01, 0.005),
                   layers=["conv"], checkpoint_epochs=[], options=OPTIONS)
    with pytest.raises(ValueError, match="is a small_vgg baseline checkpoint, not the pre-trained small_vgg"):
        train_teacher(tmp_path / "bad", pretrained=tmp_path / "b/final.pt", options=OPTIONS, **common)
