"""CUB-200-2011 stage on fixtures in the official layout (tests/fixtures_real.py)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import yaml
from PIL import Image

from fixtures_real import make_cub_raw
from kdconcepts.data import load_split, read_index, read_meta
from kdconcepts.data._official import ChecksumError, RawDataError
from kdconcepts.data.cub import main, prepare_cub

SIZE = 32


def _siblings(path):
    """Everything next to the output folder (temp/staging folders must not survive)."""
    return sorted(p.name for p in path.parent.iterdir()) if path.parent.exists() else []


def test_archives_end_to_end(tmp_path):
    fixture = make_cub_raw(tmp_path / "raw")
    out = prepare_cub(fixture.raw_dir, tmp_path / "prep" / "cub", image_size=SIZE,
                      checksums=fixture.checksums)
    assert _siblings(out) == ["cub"]
    meta = read_meta(out)
    assert meta["classes"] == ["Black_footed_Albatross", "Laysan_Albatross"]
    assert meta["image_size"] == SIZE and meta["foreground"] == "mask"
    rows = read_index(out)
    assert {r.id: (r.class_name, r.split) for r in rows} == fixture.samples
    train = load_split(out, "train", normalize=False)
    test = load_split(out, "test", normalize=False)
    assert len(train) + len(test) == len(fixture.samples) == 6
    for data in (train, test):
        for i, image_id in enumerate(data.ids):
            colour = np.array(fixture.extra[image_id]["colour"]) / 255
            image, mask = data.images[i].numpy(), data.masks[i].numpy()
            # The crop is the bounding box: the object's colour fills it.
            assert np.abs(image.mean(axis=(1, 2)) - colour).max() < 0.05
            # Foreground = the ellipse inscribed in the box (pi/4 of it), not the 102 ring.
            assert 0.65 < mask.mean() < 0.9
            assert not mask[0, 0] and not mask[-1, -1] and mask[SIZE // 2, SIZE // 2]
    provenance = json.loads((out / "provenance.json").read_text())
    assert [a["verified"] for a in provenance["archives"]] == [True, True]
    assert provenance["archives"][0]["md5"] == fixture.checksums["images"].md5


def test_extracted_folders_give_the_same_dataset(tmp_path):
    packed = make_cub_raw(tmp_path / "raw_a")
    unpacked = make_cub_raw(tmp_path / "raw_b", archived=False)
    a = prepare_cub(packed.raw_dir, tmp_path / "a" / "cub", image_size=SIZE,
                    checksums=packed.checksums)
    b = prepare_cub(unpacked.raw_dir, tmp_path / "b" / "cub", image_size=SIZE)
    assert (a / "index.csv").read_bytes() == (b / "index.csv").read_bytes()
    assert (a / "meta.json").read_bytes() == (b / "meta.json").read_bytes()
    for sub in ("images", "masks"):
        names = sorted(p.name for p in (a / sub).iterdir())
        assert names == sorted(p.name for p in (b / sub).iterdir())
        assert all((a / sub / n).read_bytes() == (b / sub / n).read_bytes() for n in names)
    assert json.loads((b / "provenance.json").read_text())["archives"][0]["verified"] is False


def test_class_subset_and_box_scale(tmp_path):
    fixture = make_cub_raw(tmp_path / "raw", n_classes=3, per_class=2)
    out = prepare_cub(fixture.raw_dir, tmp_path / "p" / "cub", image_size=SIZE,
                      checksums=fixture.checksums, classes=["Sooty_Albatross"])
    assert read_meta(out)["classes"] == ["Sooty_Albatross"]
    out = prepare_cub(fixture.raw_dir, tmp_path / "p" / "cub", image_size=SIZE,
                      checksums=fixture.checksums, classes=2, box_scale=2.0)
    assert read_meta(out)["classes"] == ["Black_footed_Albatross", "Laysan_Albatross"]
    # A larger crop shows background around the bird: a smaller foreground share.
    assert load_split(out, "train").masks.float().mean() < 0.6


def test_corrupt_archive_stops_with_both_checksums_and_no_output(tmp_path):
    fixture = make_cub_raw(tmp_path / "raw")
    good = fixture.checksums["images"]
    wrong = dict(fixture.checksums, images=dataclasses.replace(good, md5="f" * 32))
    out = tmp_path / "prep" / "cub"
    with pytest.raises(ChecksumError) as info:
        prepare_cub(fixture.raw_dir, out, image_size=SIZE, checksums=wrong)
    message = str(info.value)
    assert "CUB_200_2011.tgz" in message and "f" * 32 in message and good.md5 in message
    assert good.url in message
    assert not out.exists() and _siblings(out) == []
    # A truncated archive: wrong size and md5 against the right table.
    archive = fixture.raw_dir / "CUB_200_2011.tgz"
    archive.write_bytes(archive.read_bytes()[:1000])
    with pytest.raises(ChecksumError, match="found size 1000 bytes"):
        prepare_cub(fixture.raw_dir, out, image_size=SIZE, checksums=fixture.checksums)
    # With verification off, the damage is still reported, by the reader.
    with pytest.raises(RawDataError, match="CUB_200_2011.tgz"):
        prepare_cub(fixture.raw_dir, out, image_size=SIZE, verify=False)
    assert _siblings(out) == []


def test_official_table_rejects_fixture_archives(tmp_path):
    fixture = make_cub_raw(tmp_path / "raw")
    with pytest.raises(ChecksumError, match="97eceeb196236b17998738112f37df78"):
        prepare_cub(fixture.raw_dir, tmp_path / "p" / "cub", image_size=SIZE)


def test_missing_file_is_named_and_previous_output_survives(tmp_path):
    fixture = make_cub_raw(tmp_path / "raw", archived=False)
    out = prepare_cub(fixture.raw_dir, tmp_path / "p" / "cub", image_size=SIZE)
    before = (out / "index.csv").read_bytes()
    victim = next((fixture.raw_dir / "CUB_200_2011" / "images").rglob("*_0002_*.jpg"))
    victim.unlink()
    with pytest.raises(RawDataError, match=victim.name):
        prepare_cub(fixture.raw_dir, out, image_size=SIZE)
    assert (out / "index.csv").read_bytes() == before and _siblings(out) == ["cub"]
    (fixture.raw_dir / "CUB_200_2011" / "bounding_boxes.txt").unlink()
    with pytest.raises(RawDataError, match="bounding_boxes.txt"):
        prepare_cub(fixture.raw_dir, out, image_size=SIZE)
    (fixture.raw_dir / "segmentations").rename(fixture.raw_dir / "segs")
    with pytest.raises(RawDataError, match="segmentations.tgz"):
        prepare_cub(fixture.raw_dir, out, image_size=SIZE)


def test_mask_of_wrong_size_is_refused(tmp_path):
    stem = "Laysan_Albatross_0001_7904"
    fixture = make_cub_raw(tmp_path / "raw", bad_mask_for=stem)
    out = tmp_path / "p" / "cub"
    with pytest.raises(RawDataError, match=f"{stem}.png has size 43x30 but its image is 40x30"):
        prepare_cub(fixture.raw_dir, out, image_size=SIZE, checksums=fixture.checksums)
    assert _siblings(out) == []


def test_stage_command_line(tmp_path, capsys):
    fixture = make_cub_raw(tmp_path / "raw", archived=False)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"prepare_cub": {"image_size": SIZE, "classes": 1}}))
    out = tmp_path / "p" / "cub"
    assert main(["--raw", str(fixture.raw_dir), "--out", str(out),
                 "--params", str(params)]) == 0
    assert read_meta(out)["classes"] == ["Black_footed_Albatross"]
    with Image.open(next((out / "masks").iterdir())) as mask:
        assert mask.mode == "L" and mask.size == (SIZE, SIZE)
    assert main(["--raw", str(tmp_path / "nowhere"), "--out", str(out),
                 "--params", str(params)]) == 1
    assert "CUB_200_2011.tgz" in capsys.readouterr().err
