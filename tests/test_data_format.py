"""The prepared-dataset format: round trip, atomic writing, and clear errors on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from kdconcepts.data import (
    DatasetFormatError,
    PreparedRecord,
    data_hash,
    denormalize,
    load_split,
    read_index,
    read_meta,
    write_prepared,
)

SIZE = 8
CLASSES = ["cat", "dog", "emu"]


def _records(seed: int = 0, n_train: int = 6, n_test: int = 3) -> list[PreparedRecord]:
    rng = np.random.default_rng(seed)
    records = []
    for split, count in (("train", n_train), ("test", n_test)):
        for i in range(count):
            label = int(rng.integers(len(CLASSES)))
            image = rng.integers(0, 256, size=(SIZE, SIZE, 3), dtype=np.uint8)
            mask = rng.uniform(size=(SIZE, SIZE)) < 0.4
            records.append(PreparedRecord(f"{split}-{i:03d}", image, mask, label,
                                          CLASSES[label], split))
    return records


def _write(root: Path, records=None, **meta) -> Path:
    return write_prepared(root, _records() if records is None else records,
                          {"name": "toy", "classes": CLASSES, **meta})


def test_round_trip_preserves_pixels_masks_labels_and_order(tmp_path):
    records = _records()
    root = _write(tmp_path / "toy", records)

    for split in ("train", "test"):
        expected = [r for r in records if r.split == split]
        raw = load_split(root, split, normalize=False)
        assert raw.ids == [r.id for r in expected]
        assert raw.images.dtype == torch.float32 and raw.images.shape == (len(expected), 3,
                                                                          SIZE, SIZE)
        want = np.stack([r.image for r in expected]).transpose(0, 3, 1, 2) / 255.0
        np.testing.assert_allclose(raw.images.numpy(), want, atol=1e-7)
        assert raw.masks.dtype == torch.bool
        assert torch.equal(raw.masks, torch.from_numpy(np.stack([r.mask for r in expected])))
        assert raw.labels.dtype == torch.int64
        assert raw.labels.tolist() == [r.label for r in expected]
        assert raw.class_names == CLASSES


def test_meta_holds_train_statistics_and_normalisation_uses_them(tmp_path):
    records = _records()
    root = _write(tmp_path / "toy", records, extra_key={"kept": True})
    meta = read_meta(root)
    assert meta["image_size"] == SIZE and meta["num_classes"] == 3
    assert meta["foreground"] == "mask" and meta["extra_key"] == {"kept": True}
    train = np.stack([r.image for r in records if r.split == "train"]) / 255.0
    np.testing.assert_allclose(meta["mean"], train.reshape(-1, 3).mean(0), atol=1e-6)
    np.testing.assert_allclose(meta["std"], train.reshape(-1, 3).std(0), atol=1e-6)

    raw = load_split(root, "train", normalize=False)
    normed = load_split(root, "train")
    mean = torch.tensor(meta["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(meta["std"]).view(1, 3, 1, 1)
    torch.testing.assert_close(normed.images, (raw.images - mean) / std)
    torch.testing.assert_close(denormalize(normed.images, meta), raw.images,
                               atol=1e-6, rtol=0)
    torch.testing.assert_close(denormalize(normed.images[0], meta), raw.images[0],
                               atol=1e-6, rtol=0)


def test_masks_are_stored_as_0_255_greyscale_png(tmp_path):
    records = _records()
    root = _write(tmp_path / "toy", records)
    with Image.open(root / "masks" / f"{records[0].id}.png") as mask:
        assert mask.mode == "L" and mask.size == (SIZE, SIZE)
        values = np.asarray(mask)
    assert set(np.unique(values)) <= {0, 255}
    np.testing.assert_array_equal(values == 255, records[0].mask)


def test_rewrite_replaces_folder_and_interrupted_write_leaves_nothing(tmp_path):
    root = _write(tmp_path / "toy")
    _write(root, _records(seed=1))  # replaces the existing folder
    assert read_index(root)[0].id == "train-000"
    assert len(load_split(root, "train")) == 6

    def broken():
        yield from _records()[:3]
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        _write(tmp_path / "other", broken())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy"]


@pytest.mark.parametrize("change, message", [
    (dict(label=7), "label 7 outside"),
    (dict(class_name="dog"), "does not match"),
    (dict(split="val"), "split 'val'"),
    (dict(id="a/b"), "id must match"),
    (dict(image=np.zeros((SIZE + 1, SIZE + 1, 3), np.uint8)), "expected 8x8"),
    (dict(image=np.zeros((SIZE, SIZE, 3), np.float32)), "uint8"),
    (dict(mask=np.zeros((SIZE, SIZE - 1), bool)), "mask shape"),
    (dict(mask=np.full((SIZE, SIZE), 7, np.uint8)), "mask must be"),
])
def test_writer_rejects_bad_records(tmp_path, change, message):
    records = _records()
    good = records[1]
    fields = dict(id=good.id, image=good.image, mask=good.mask, label=0,
                  class_name=CLASSES[0], split=good.split)
    records[1] = PreparedRecord(**{**fields, **change})
    with pytest.raises(DatasetFormatError, match=message):
        _write(tmp_path / "toy", records)
    assert list(tmp_path.iterdir()) == []


def test_writer_rejects_duplicate_ids_and_missing_train(tmp_path):
    records = _records()
    with pytest.raises(DatasetFormatError, match="duplicate"):
        _write(tmp_path / "dup", records + [records[0]])
    with pytest.raises(DatasetFormatError, match="no record with split 'train'"):
        _write(tmp_path / "test-only", [r for r in records if r.split == "test"])


def test_reader_names_missing_mask_file(tmp_path):
    records = _records()
    root = _write(tmp_path / "toy", records)
    (root / "masks" / f"{records[2].id}.png").unlink()
    with pytest.raises(FileNotFoundError, match=f"masks/{records[2].id}.png"):
        load_split(root, "train")
    with pytest.raises(FileNotFoundError, match="masks"):
        data_hash(root)


def test_reader_names_image_of_wrong_size(tmp_path):
    records = _records()
    root = _write(tmp_path / "toy", records)
    Image.new("RGB", (SIZE, SIZE + 2)).save(root / "images" / f"{records[1].id}.png")
    with pytest.raises(DatasetFormatError, match=rf"{records[1].id}.png: size 8x10"):
        load_split(root, "train")
    Image.new("RGB", (SIZE, SIZE)).save(root / "masks" / f"{records[1].id}.png")
    Image.new("RGB", (SIZE, SIZE)).save(root / "images" / f"{records[1].id}.png")
    with pytest.raises(DatasetFormatError, match="mode RGB, expected L"):
        load_split(root, "train")


@pytest.mark.parametrize("row, message", [
    ("x1,9,cat,train", "line 3 .*label 9 outside 0..2"),
    ("x1,one,cat,train", "line 3 .*not an integer"),
    ("x1,0,dog,train", "line 3 .*does not match"),
    ("x1,0,cat,valid", "line 3 .*split 'valid'"),
    ("x1,0,cat", "line 3: expected 4 fields"),
])
def test_reader_names_bad_index_row(tmp_path, row, message):
    root = _write(tmp_path / "toy")
    lines = (root / "index.csv").read_text().splitlines()
    lines.insert(2, row)
    (root / "index.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetFormatError, match=message):
        load_split(root, "train")


def test_reader_errors_on_missing_files_and_bad_meta(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_split(tmp_path / "nowhere", "train")
    root = _write(tmp_path / "toy")
    with pytest.raises(ValueError, match="split must be one of"):
        load_split(root, "validation")
    meta = json.loads((root / "meta.json").read_text())
    del meta["std"]
    (root / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetFormatError, match=r"missing key\(s\) \['std'\]"):
        read_meta(root)
    (root / "meta.json").unlink()
    with pytest.raises(FileNotFoundError, match="meta.json"):
        load_split(root, "train")


def test_data_hash_is_content_based(tmp_path):
    first = _write(tmp_path / "a")
    second = _write(tmp_path / "b")
    assert data_hash(first) == data_hash(second)
    assert len(data_hash(first)) == 64
    records = _records()
    mask = records[4].mask.copy()
    mask[0, 0] = not mask[0, 0]
    records[4] = PreparedRecord(records[4].id, records[4].image, mask, records[4].label,
                                records[4].class_name, records[4].split)
    third = _write(tmp_path / "c", records)
    assert data_hash(third) != data_hash(first)


def test_denormalize_rejects_wrong_shape(tmp_path):
    meta = read_meta(_write(tmp_path / "toy"))
    with pytest.raises(ValueError, match="expected"):
        denormalize(torch.zeros(2, 1, SIZE, SIZE), meta)


def test_the_configured_normalisation_reaches_the_tensors(tmp_path):
    """dataset.normalize (issue 20): a paper config's jobs load ImageNet-normalised tensors, as
    an ImageNet-initialised teacher expects (SPEC section 7), and the default's are unchanged."""
    import yaml

    from kdconcepts.data import IMAGENET_MEAN, IMAGENET_STD, normalization

    repo = Path(__file__).resolve().parents[1]
    paper = yaml.safe_load((repo / "config/paper/cub_vgg16.yaml").read_text())["dataset"]["normalize"]
    default = yaml.safe_load((repo / "config/config.yaml").read_text())["dataset"]["normalize"]
    assert (paper, default) == ("imagenet", "dataset")
    root = _write(tmp_path / "toy")
    raw = load_split(root, "train", normalize="none")
    torch.testing.assert_close(raw.images, load_split(root, "train", normalize=False).images)

    imagenet = load_split(root, "train", normalize=paper)
    want = (raw.images - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(imagenet.images, want)
    assert (imagenet.meta["mean"], imagenet.meta["std"]) == (list(IMAGENET_MEAN), list(IMAGENET_STD))
    torch.testing.assert_close(denormalize(imagenet.images, imagenet.meta), raw.images, atol=1e-6, rtol=0)

    # The default's loader: bit-identical to the dataset-statistics path it always took.
    ours = load_split(root, "train", normalize=default)
    assert torch.equal(ours.images, load_split(root, "train", normalize=True).images)
    assert ours.meta == read_meta(root)
    assert normalization("dataset", ours.meta) == (ours.meta["mean"], ours.meta["std"])
    with pytest.raises(ValueError, match=r"normalize must be one of \('dataset', 'imagenet', 'none'\)"):
        load_split(root, "train", normalize="ImageNet")
