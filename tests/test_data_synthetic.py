"""The synthetic generator: determinism, exact masks, balance, class design, background bias."""

from __future__ import annotations

import csv
import itertools
from pathlib import Path

import numpy as np
import pytest
import yaml

from kdconcepts.data import load_split, read_index, read_meta
from kdconcepts.data.synthetic import (
    COLOUR_PATTERNS,
    COLOURS,
    DEFAULT_PARAMS,
    class_combinations,
    generate,
    main,
    resolve_params,
)

SMALL = {
    "pretrain": {"num_classes": 4, "train_per_class": 6, "test_per_class": 2},
    "target": {"num_classes": 8, "train_per_class": 4, "test_per_class": 2},
}


def _small(**changes) -> dict:
    params = resolve_params(SMALL)
    for dotted, value in changes.items():
        *path, key = dotted.split("__")
        section = params
        for part in path:
            section = section[part]
        section[key] = value
    return params


def _file_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_same_params_give_identical_bytes_and_another_seed_differs(tmp_path):
    generate(tmp_path / "a", _small())
    generate(tmp_path / "b", _small())
    generate(tmp_path / "c", _small(seed=1))
    first, second, other = (_file_bytes(tmp_path / name) for name in "abc")
    # Per set: an image and a mask per image, plus index.csv, meta.json, habitats.csv.
    assert len(first) == (2 * 4 * 8 + 3) + (2 * 8 * 6 + 3)
    assert first == second
    assert first.keys() == other.keys()
    changed = [name for name in first if name.endswith(".png") and first[name] != other[name]]
    assert len(changed) > 0.9 * sum(name.endswith(".png") for name in first)


def test_adding_images_keeps_existing_ones(tmp_path):
    generate(tmp_path / "few", _small())
    generate(tmp_path / "more", _small(target__train_per_class=5))
    few, more = _file_bytes(tmp_path / "few/target"), _file_bytes(tmp_path / "more/target")
    assert few["images/train_00031.png"] == more["images/train_00031.png"]
    assert "images/train_00039.png" in more and "images/train_00039.png" not in few


def test_classes_are_balanced_and_follow_the_latin_square(tmp_path):
    written = generate(tmp_path, _small())
    for set_name, section in SMALL.items():
        rows = read_index(written[set_name])
        for split in ("train", "test"):
            labels = [row.label for row in rows if row.split == split]
            counts = np.bincount(labels, minlength=section["num_classes"])
            assert counts.tolist() == [section[f"{split}_per_class"]] * section["num_classes"]
    pretrain = set(class_combinations(16, residue=0))
    target = class_combinations(8, residue=2)
    assert len(pretrain) == 16 and not pretrain & set(target)  # new combinations
    for attribute in range(3):  # every primitive used by exactly two target classes
        assert np.bincount([combo[attribute] for combo in target]).tolist() == [2] * 4
    for one, two in itertools.combinations(list(pretrain) + target, 2):
        same_set = (one in pretrain) == (two in pretrain)
        if same_set:  # classes of one set differ in at least two attributes
            assert sum(a != b for a, b in zip(one, two)) >= 2
    meta = read_meta(written["target"])
    assert meta["classes"][0] == "disk-stripes-green_magenta"
    assert [a["colours"] for a in meta["class_attributes"]] == \
        [COLOURS[c] for _, _, c in target]


def test_masks_cover_exactly_the_object(tmp_path):
    # Without jitter and noise, object pixels take exactly the class's two colours.
    params = _small(colour_jitter=0.0, noise_std=0.0, clutter=0)
    root = generate(tmp_path, params)["target"]
    data = load_split(root, "train", normalize=False)
    images = np.round(data.images.numpy().transpose(0, 2, 3, 1) * 255).astype(int)
    masks = data.masks.numpy()
    low, high = params["object_scale"]
    fractions = masks.mean(axis=(1, 2))
    # Shapes fill 41% (triangle) to 72% (disk) of their bounding disc of diameter in
    # [low, high] * S; margins for pixelation.
    assert fractions.min() >= 0.3 * np.pi * (low / 2) ** 2
    assert fractions.max() <= 0.85 * np.pi * (high / 2) ** 2
    for image, mask, label in zip(images, masks, data.labels.tolist()):
        colour_name = data.meta["class_attributes"][label]["colours"]
        palette = np.round(np.array(COLOUR_PATTERNS[colour_name]) * 255).astype(int)
        is_object_colour = (image[:, :, None, :] == palette[None, None]).all(-1).any(-1)
        assert is_object_colour[mask].all()
        assert not is_object_colour[~mask].any()
        # Both colours of the texture appear on the object.
        for colour in palette:
            assert (image[mask] == colour).all(-1).any()


def _background_features(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    data = load_split(root, split, normalize=False)
    images = data.images.numpy()
    background = ~data.masks.numpy()[:, None]
    mean = (images * background).sum((2, 3)) / background.sum((2, 3))
    return mean, data.labels.numpy()


def _nearest_mean_accuracy(root: Path) -> float:
    train_x, train_y = _background_features(root, "train")
    test_x, test_y = _background_features(root, "test")
    centres = np.stack([train_x[train_y == c].mean(0) for c in np.unique(train_y)])
    predicted = np.argmin(((test_x[:, None] - centres[None]) ** 2).sum(-1), axis=1)
    return float((predicted == test_y).mean())


def test_background_bias_controls_how_well_the_background_predicts_the_class(tmp_path):
    sizes = {"train_per_class": 20, "test_per_class": 15}
    accuracy, habitat_match = {}, {}
    for bias in (0.0, 1.0):
        params = _small(target__background_bias=bias, **{f"target__{k}": v
                                                         for k, v in sizes.items()})
        root = generate(tmp_path / str(bias), params)["target"]
        accuracy[bias] = _nearest_mean_accuracy(root)
        with (root / "habitats.csv").open() as handle:
            habitats = {row["id"]: int(row["habitat"]) for row in csv.DictReader(handle)}
        rows = read_index(root)
        habitat_match[bias] = np.mean([habitats[r.id] == r.label % 8 for r in rows])
    # 8 classes: chance is 1/8. Background colour alone names the class only with bias.
    assert accuracy[1.0] >= 0.8
    assert accuracy[0.0] <= 0.35
    assert habitat_match[1.0] == 1.0
    assert habitat_match[0.0] < 0.3


def test_pretrain_background_is_unrelated_to_class_by_default(tmp_path):
    params = _small(pretrain__train_per_class=40, pretrain__test_per_class=20)
    root = generate(tmp_path, params)["pretrain"]
    assert read_meta(root)["background_bias"] == 0.0
    assert _nearest_mean_accuracy(root) <= 0.5  # 4 classes: chance 0.25


def test_params_are_validated():
    assert resolve_params({}) == DEFAULT_PARAMS
    with pytest.raises(ValueError, match="unknown parameter synthetic.target.bias"):
        resolve_params({"target": {"bias": 0.5}})
    with pytest.raises(ValueError, match="background_bias"):
        resolve_params({"target": {"background_bias": 1.5}})
    with pytest.raises(ValueError, match="num_classes"):
        resolve_params({"pretrain": {"num_classes": 17}})
    with pytest.raises(ValueError, match="object_scale"):
        resolve_params({"object_scale": [0.7, 0.5]})


def test_command_line_reads_the_synthetic_section(tmp_path):
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump({"synthetic": {**SMALL, "image_size": 48},
                                           "other_stage": {"x": 1}}))
    assert main(["--params", str(params_file), "--out", str(tmp_path / "out")]) == 0
    meta = read_meta(tmp_path / "out" / "target")
    assert meta["image_size"] == 48 and meta["num_classes"] == 8
    assert load_split(tmp_path / "out" / "pretrain", "test").images.shape == (8, 3, 48, 48)
    params_file.write_text(yaml.safe_dump({"other_stage": {}}))
    with pytest.raises(SystemExit):
        main(["--params", str(params_file), "--out", str(tmp_path / "out2")])
