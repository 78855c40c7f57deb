"""Pascal VOC 2012 stage on fixtures in the official layout (tests/fixtures_real.py)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from PIL import Image

from fixtures_real import VOC_NAMES, make_voc_raw
from kdconcepts.data import load_split, read_index, read_meta
from kdconcepts.data._official import ChecksumError, RawDataError
from kdconcepts.data.voc import VOC_CLASSES, parse_voc_objects, prepare_voc

SIZE = 32


def _siblings(path):
    return sorted(p.name for p in path.parent.iterdir()) if path.parent.exists() else []


def test_classes_are_the_official_twenty():
    assert list(VOC_CLASSES) == VOC_NAMES and len(set(VOC_CLASSES)) == 20


def test_fixture_pngs_are_official_palette_images(tmp_path):
    fixture = make_voc_raw(tmp_path / "raw", archived=False)
    voc = fixture.raw_dir / "VOCdevkit" / "VOC2012"
    with Image.open(voc / "SegmentationClass" / "2007_000032.png") as cls:
        assert cls.mode == "P"
        values = set(np.unique(np.asarray(cls)))
        # background, aeroplane (1), person (15), boundary/void 255; colour of 1 = (128,0,0)
        assert values == {0, 1, 15, 255} and cls.getpalette()[3:6] == [128, 0, 0]


def test_parse_voc_objects_converts_to_zero_based_half_open(tmp_path):
    fixture = make_voc_raw(tmp_path / "raw", archived=False)
    objects = parse_voc_objects(fixture.raw_dir / "VOCdevkit/VOC2012/Annotations/2007_000032.xml")
    assert [o["name"] for o in objects] == ["aeroplane", "person"]
    assert objects[0]["box"] == (3, 4, 22, 20) and objects[0]["difficult"] is False
    bad = tmp_path / "bad.xml"
    bad.write_text("<annotation><object><name>cat</name></object></annotation>")
    with pytest.raises(RawDataError, match="bad.xml: object 1"):
        parse_voc_objects(bad)


def test_archive_end_to_end_one_sample_per_object(tmp_path):
    fixture = make_voc_raw(tmp_path / "raw")
    out = prepare_voc(fixture.raw_dir, tmp_path / "prep" / "voc", image_size=SIZE,
                      checksums=fixture.checksums)
    assert _siblings(out) == ["voc"]
    meta = read_meta(out)
    assert meta["classes"] == VOC_NAMES and meta["foreground"] == "mask"
    rows = read_index(out)
    # One sample per segmented object; the detection-only image is not used.
    assert {r.id: (r.class_name, r.split) for r in rows} == fixture.samples
    assert all(r.label == VOC_NAMES.index(r.class_name) for r in rows)
    for split in ("train", "test"):
        data = load_split(out, split, normalize=False)
        for i, image_id in enumerate(data.ids):
            mask = data.masks[i].numpy()
            image = data.images[i].numpy()
            colour = np.array(fixture.extra[image_id]["colour"]) / 255
            # 1.2x box: the object (its ellipse) is central, with a margin of background.
            assert mask[SIZE // 2, SIZE // 2] and not mask[0].any() and not mask[:, 0].any()
            assert 0.35 < mask.mean() < 0.65
            centre = image[:, SIZE // 2 - 2:SIZE // 2 + 2, SIZE // 2 - 2:SIZE // 2 + 2]
            assert np.abs(centre.mean(axis=(1, 2)) - colour).max() < 0.06
    # The person crop's mask holds the person only, not the aeroplane next to it.
    person = load_split(out, "train", normalize=False)
    k = person.ids.index("2007_000032_2")
    left_strip = person.masks[k].numpy()[:, :3]
    assert not left_strip.any()


def test_class_subset_and_mismatch_skipped(tmp_path):
    fixture = make_voc_raw(tmp_path / "raw", mislabel="2007_000063")
    out = prepare_voc(fixture.raw_dir, tmp_path / "p" / "voc", image_size=SIZE,
                      checksums=fixture.checksums, classes=["dog", "cat", "aeroplane"])
    rows = read_index(out)
    assert read_meta(out)["classes"] == ["aeroplane", "cat", "dog"]
    # the dog's SegmentationClass disagrees with its XML: skipped and counted
    assert [r.id for r in rows] == ["2007_000032_1", "2007_000063_2"]
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["skipped_objects"] == {"class_mismatch": 1}
    assert provenance["skipped_images"] == {}  # every image's instances match its objects


def test_an_image_whose_instances_do_not_match_its_objects_is_skipped_and_counted(tmp_path, caplog):
    """SegmentationObject index k is the k-th XML object only if the PNG holds exactly 1..n."""
    fixture = make_voc_raw(tmp_path / "raw", extra_instance_for="2007_000032")
    out = prepare_voc(fixture.raw_dir, tmp_path / "p" / "voc", image_size=SIZE,
                      checksums=fixture.checksums)
    ids = [r.id for r in read_index(out)]
    assert ids and not any(i.startswith("2007_000032_") for i in ids)
    assert sorted(ids) == sorted(k for k in fixture.samples if not k.startswith("2007_000032_"))
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["skipped_images"] == {"object_count_mismatch": 1}
    assert "2007_000032: SegmentationObject holds instance(s) [1, 2, 3] but the XML lists 2" in caplog.text


def test_corrupt_archive_and_missing_inputs(tmp_path):
    fixture = make_voc_raw(tmp_path / "raw")
    good = fixture.checksums["trainval"]
    out = tmp_path / "p" / "voc"
    wrong = {"trainval": dataclasses.replace(good, md5="0123456789abcdef" * 2)}
    with pytest.raises(ChecksumError) as info:
        prepare_voc(fixture.raw_dir, out, image_size=SIZE, checksums=wrong)
    assert "VOCtrainval_11-May-2012.tar" in str(info.value) and good.md5 in str(info.value)
    assert "0123456789abcdef" * 2 in str(info.value)
    with pytest.raises(ChecksumError, match="6cd6e144f989b92b3379bac3b3de84fd"):
        prepare_voc(fixture.raw_dir, out, image_size=SIZE)  # official table
    assert _siblings(out) == []
    unpacked = make_voc_raw(tmp_path / "raw2", archived=False)
    voc = unpacked.raw_dir / "VOCdevkit" / "VOC2012"
    (voc / "SegmentationObject" / "2007_000039.png").unlink()
    with pytest.raises(RawDataError, match="2007_000039.png"):
        prepare_voc(unpacked.raw_dir, out, image_size=SIZE)
    (voc / "ImageSets" / "Segmentation" / "val.txt").unlink()
    with pytest.raises(RawDataError, match="val.txt"):
        prepare_voc(unpacked.raw_dir, out, image_size=SIZE)
    assert _siblings(out) == []


def test_mask_of_wrong_size_is_refused(tmp_path):
    fixture = make_voc_raw(tmp_path / "raw", bad_mask_for="2007_000063")
    out = tmp_path / "p" / "voc"
    with pytest.raises(RawDataError, match="2007_000063.png has size 40x32"):
        prepare_voc(fixture.raw_dir, out, image_size=SIZE, checksums=fixture.checksums)
    assert _siblings(out) == []
