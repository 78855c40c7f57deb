"""ILSVRC-2013 DET (mammals) stage on fixtures in the official layout (tests/fixtures_real.py)."""

from __future__ import annotations

import dataclasses
import json
import logging

import numpy as np
import pytest

from fixtures_real import ILSVRC_BREED, ILSVRC_OTHER, ILSVRC_SYNSETS, make_ilsvrc_raw
from kdconcepts.data import load_split, read_index, read_meta
from kdconcepts.data._official import ChecksumError, RawDataError
from kdconcepts.data.ilsvrc import MAMMAL_SYNSETS, central_mask, prepare_ilsvrc

SIZE = 32


def _siblings(path):
    return sorted(p.name for p in path.parent.iterdir()) if path.parent.exists() else []


def _cells(mask: np.ndarray, grid: int = 16) -> np.ndarray:
    """Nearest-neighbour downsampling to the G x G grid (cell centres), as the method does."""
    step = mask.shape[0] / grid
    centres = (np.arange(grid) * step + step / 2).astype(int)
    return mask[np.ix_(centres, centres)]


def test_mammal_list():
    assert len(MAMMAL_SYNSETS) == 24
    assert all(w.startswith("n0") and len(w) == 9 for w in MAMMAL_SYNSETS)
    assert set(ILSVRC_SYNSETS) <= set(MAMMAL_SYNSETS) and ILSVRC_OTHER not in MAMMAL_SYNSETS


@pytest.mark.parametrize("size", [32, 224])
def test_central_mask_is_central_12_of_16(size):
    cells = _cells(central_mask(size, 12 / 16))
    expected = np.zeros((16, 16), bool)
    expected[2:14, 2:14] = True
    assert (cells == expected).all()


def test_archives_end_to_end(tmp_path):
    fixture = make_ilsvrc_raw(tmp_path / "raw")
    out = prepare_ilsvrc(fixture.raw_dir, tmp_path / "prep" / "ilsvrc", image_size=SIZE,
                         checksums=fixture.checksums, synsets=ILSVRC_SYNSETS,
                         test_fraction=0.25, seed=3)
    assert _siblings(out) == ["ilsvrc"]
    meta = read_meta(out)
    assert meta["classes"] == ["dog", "domestic_cat"] and meta["foreground"] == "central"
    assert meta["synsets"] == ILSVRC_SYNSETS
    rows = read_index(out)
    # The devkit's positives: every object named with a class's synset, in whichever folder its
    # image is filed (the dog's own, a dog breed's, the cat's, the bird's), none of the bird,
    # and not the one-pixel box.
    expected = {k for k, (wnid, _) in fixture.samples.items() if wnid in ILSVRC_SYNSETS}
    assert {r.id for r in rows} == expected
    label = {r.id: r.class_name for r in rows}
    for folder in (ILSVRC_BREED, ILSVRC_SYNSETS[1], ILSVRC_OTHER):  # dogs filed elsewhere
        assert any(fixture.extra[k]["folder"] == folder and label[k] == "dog" for k in label), folder
    # Both boxes of a two-box photo share a split; per class, test_fraction of its photos not
    # split by an earlier class (the dog in the cat's photo split the cat's photo too).
    by_image, classes = {}, {}
    for r in rows:
        by_image.setdefault(r.id.rsplit("_", 1)[0], set()).add(r.split)
        classes.setdefault(r.id.rsplit("_", 1)[0], set()).add(r.class_name)
    assert all(len(splits) == 1 for splits in by_image.values())
    for name, images in (("dog", [i for i, c in classes.items() if "dog" in c]),
                         ("cat", [i for i, c in classes.items() if c == {"domestic_cat"}])):
        assert sum("test" in by_image[i] for i in images) == round(len(images) * 0.25), name
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["skipped"] == {"one_pixel_box": 1}
    data = load_split(out, "train", normalize=False)
    for i, image_id in enumerate(data.ids):
        assert (_cells(data.masks[i].numpy()) == _cells(central_mask(SIZE, 0.75))).all()
        colour = np.array(fixture.extra[image_id]["colour"]) / 255
        inner = data.images[i].numpy()[:, 10:22, 10:22]  # inside the box
        assert np.abs(inner.mean(axis=(1, 2)) - colour).max() < 0.05
    # The box at the photo's corner is padded (ImageNet mean) on its outer side, so the
    # object stays centred.
    k = data.ids.index(f"{ILSVRC_SYNSETS[0]}_101_1")
    corner = (data.images[k].numpy()[:, -1, 0] * 255).round()
    assert np.abs(corner - np.array([124, 116, 104])).max() <= 2
    provenance = json.loads((out / "provenance.json").read_text())
    assert all(a["verified"] for a in provenance["archives"])


def test_split_is_reproducible_and_seeded(tmp_path):
    fixture = make_ilsvrc_raw(tmp_path / "raw", archived=False, per_class=6)
    splits = []
    for seed in (0, 0, 1):
        out = prepare_ilsvrc(fixture.raw_dir, tmp_path / f"p{seed}{len(splits)}" / "x",
                             image_size=SIZE, synsets=ILSVRC_SYNSETS, test_fraction=0.5,
                             seed=seed)
        splits.append({r.id: r.split for r in read_index(out)})
    assert splits[0] == splits[1]
    assert splits[0] != splits[2]


def test_unknown_official_checksum_warns_and_continues(tmp_path, caplog):
    fixture = make_ilsvrc_raw(tmp_path / "raw")
    with caplog.at_level(logging.WARNING):
        out = prepare_ilsvrc(fixture.raw_dir, tmp_path / "p" / "ilsvrc", image_size=SIZE,
                             synsets=ILSVRC_SYNSETS[:1])  # the official table: md5 unknown
    assert "NO OFFICIAL CHECKSUM KNOWN" in caplog.text
    assert len(read_index(out)) == sum(w == ILSVRC_SYNSETS[0] for w, _ in fixture.samples.values())


def test_corrupt_archive_and_missing_synset(tmp_path):
    fixture = make_ilsvrc_raw(tmp_path / "raw")
    out = tmp_path / "p" / "ilsvrc"
    good = fixture.checksums["boxes"]
    wrong = dict(fixture.checksums, boxes=dataclasses.replace(good, md5="e" * 32))
    with pytest.raises(ChecksumError) as info:
        prepare_ilsvrc(fixture.raw_dir, out, image_size=SIZE, checksums=wrong,
                       synsets=ILSVRC_SYNSETS)
    assert "ILSVRC2013_DET_bbox_train.tgz" in str(info.value) and good.md5 in str(info.value)
    with pytest.raises(RawDataError) as info:  # the fixture has 2 of the 24 mammals
        prepare_ilsvrc(fixture.raw_dir, out, image_size=SIZE, checksums=fixture.checksums)
    message = str(info.value)
    assert "n01882714" in message and "n02510455" in message and "n02084071" not in message
    assert "ILSVRC2013_DET_bbox_train.tgz" in message and ".raw-" not in message
    assert _siblings(out) == []


def test_annotation_without_image_is_named(tmp_path):
    fixture = make_ilsvrc_raw(tmp_path / "raw", archived=False)
    xml = fixture.raw_dir / "ILSVRC2013_DET_bbox_train" / ILSVRC_SYNSETS[1] / "extra_1.xml"
    xml.write_text(f"<annotation><object><name>{ILSVRC_SYNSETS[1]}</name><bndbox><xmin>1"
                   "</xmin><xmax>9</xmax><ymin>1</ymin><ymax>9</ymax></bndbox></object>"
                   "</annotation>")
    out = tmp_path / "p" / "ilsvrc"
    with pytest.raises(RawDataError, match="extra_1.xml has no image extra_1.JPEG"):
        prepare_ilsvrc(fixture.raw_dir, out, image_size=SIZE, synsets=ILSVRC_SYNSETS)
    assert _siblings(out) == []


def test_the_ilsvrc2017_layout_gives_the_same_samples(tmp_path, caplog):
    """DET train as mostly distributed now: ILSVRC/{Data,Annotations}/DET/train/ILSVRC2013_train/."""
    old = make_ilsvrc_raw(tmp_path / "raw2013", archived=False)
    new = make_ilsvrc_raw(tmp_path / "raw2017", layout="2017")
    outs = []
    for fixture in (old, new):
        with caplog.at_level(logging.WARNING):
            outs.append(prepare_ilsvrc(fixture.raw_dir, tmp_path / fixture.raw_dir.name / "ilsvrc",
                                       image_size=SIZE, synsets=ILSVRC_SYNSETS, seed=1))
    assert "ILSVRC2015/2017 DET tree" in caplog.text
    rows = [[(r.id, r.label, r.split) for r in read_index(out)] for out in outs]
    assert rows[0] == rows[1] and len(rows[0]) == len(new.samples)
    a, b = (load_split(out, "train", normalize=False) for out in outs)
    assert a.ids == b.ids and (a.images == b.images).all()
    provenance = json.loads((outs[1] / "provenance.json").read_text())
    assert provenance["archives"][0]["verified"] is False


def test_inverted_boxes_are_skipped_and_a_missing_tree_names_both_layouts(tmp_path):
    fixture = make_ilsvrc_raw(tmp_path / "raw", archived=False)
    xml = fixture.raw_dir / "ILSVRC2013_DET_bbox_train" / ILSVRC_SYNSETS[1] / f"{ILSVRC_SYNSETS[1]}_102.xml"
    xml.write_text(xml.read_text().replace("<xmax>49</xmax>", "<xmax>3</xmax>"))  # max before min
    out = prepare_ilsvrc(fixture.raw_dir, tmp_path / "p" / "ilsvrc", image_size=SIZE,
                         synsets=ILSVRC_SYNSETS)
    assert json.loads((out / "provenance.json").read_text())["skipped"] == {
        "inverted_box": 1, "one_pixel_box": 1}
    assert f"{ILSVRC_SYNSETS[1]}_102_0" not in {r.id for r in read_index(out)}
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RawDataError, match=r"neither ILSVRC2013_DET_bbox_train.tgz .* nor an "
                                           r"extracted ILSVRC2015/2017 DET tree"):
        prepare_ilsvrc(empty, tmp_path / "q" / "ilsvrc", image_size=SIZE, synsets=ILSVRC_SYNSETS)
