"""Shared machinery of the real-dataset stages: checksums, extraction, crops, stage CLI."""

from __future__ import annotations

import hashlib
import io
import logging
import tarfile

import numpy as np
import pytest
import yaml
from PIL import Image

from kdconcepts.data._official import (ChecksumError, RawDataError, crop_and_resize,
                                       extract_tar, file_md5, open_official_source, run_stage,
                                       scale_box, verify_archive)
from kdconcepts.data.checksums import OFFICIAL_ARCHIVES, OfficialArchive, archives_for


def _archive(tmp_path, content=b"hello world"):
    path = tmp_path / "thing.tar"
    with tarfile.open(path, "w") as tar:
        for name in ("top/a.txt", "top/sub/b.txt", "other/c.txt"):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return path


def test_official_table_is_complete_or_explicitly_unknown():
    for dataset, table in OFFICIAL_ARCHIVES.items():
        assert archives_for(dataset) is table
        for record in table.values():
            assert record.url and record.folder and record.filename
            assert record.md5 is None or (len(record.md5) == 32
                                          and int(record.md5, 16) >= 0)
            assert record.size is None or record.size > 1_000_000
    # The values confirmed from public sources are recorded, not left empty.
    assert archives_for("cub")["images"].md5 == "97eceeb196236b17998738112f37df78"
    assert archives_for("voc")["trainval"].size == 1999639040
    with pytest.raises(KeyError, match="known"):
        archives_for("coco")


def test_file_md5_matches_hashlib(tmp_path):
    path = tmp_path / "blob"
    path.write_bytes(bytes(range(256)) * 1000)
    assert file_md5(path, chunk_bytes=1000) == hashlib.md5(path.read_bytes()).hexdigest()


def test_verify_archive_accepts_right_and_names_everything_when_wrong(tmp_path):
    path = _archive(tmp_path)
    md5, size = file_md5(path), path.stat().st_size
    good = OfficialArchive("thing.tar", size, md5, "https://example.org/thing", "top")
    assert verify_archive(path, good) == {"file": "thing.tar", "size": size, "md5": md5,
                                          "verified": True}
    wrong = OfficialArchive("thing.tar", size, "0" * 32, "https://example.org/thing", "top")
    with pytest.raises(ChecksumError) as info:
        verify_archive(path, wrong)
    message = str(info.value)
    for part in (str(path), "0" * 32, md5, "https://example.org/thing", str(size)):
        assert part in message
    # Size alone wrong is caught too.
    with pytest.raises(ChecksumError, match=f"found size {size}"):
        verify_archive(path, OfficialArchive("thing.tar", size + 1, md5, "u", "top"))


def test_verify_off_or_unknown_warns_loudly(tmp_path, caplog):
    path = _archive(tmp_path)
    wrong = OfficialArchive("thing.tar", 1, "0" * 32, "u", "top")
    with caplog.at_level(logging.WARNING):
        record = verify_archive(path, wrong, verify=False)
    assert record["verified"] is False and "VERIFICATION IS OFF" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        record = verify_archive(path, OfficialArchive("thing.tar", None, None, "u", "top"))
    assert record["verified"] is False and "NO OFFICIAL CHECKSUM" in caplog.text


def test_extract_tar_takes_only_wanted_members_and_reports_corruption(tmp_path):
    path = _archive(tmp_path)
    dest = tmp_path / "out"
    assert extract_tar(path, dest, lambda n: n.startswith("top/")) == 2
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*.txt")) == [
        "top/a.txt", "top/sub/b.txt"]
    broken = tmp_path / "broken.tgz"
    broken.write_bytes(b"\x1f\x8b\x08" + b"garbage" * 50)
    with pytest.raises(RawDataError, match="broken.tgz"):
        extract_tar(broken, tmp_path / "out2", lambda n: True)


def test_open_official_source_prefers_archive_then_folder_else_says_where(tmp_path, caplog):
    record = OfficialArchive("thing.tar", None, None, "https://example.org/get", "top")
    raw = tmp_path / "raw"
    raw.mkdir()
    with pytest.raises(RawDataError) as info:
        open_official_source(raw, record, tmp_path / "stage", lambda n: True)
    assert "thing.tar" in str(info.value) and "https://example.org/get" in str(info.value)
    (raw / "top").mkdir()
    with caplog.at_level(logging.WARNING):
        root, prov = open_official_source(raw, record, tmp_path / "stage", lambda n: True)
    assert root == raw and prov["verified"] is False and "not verified" in caplog.text
    _archive(raw)
    root, prov = open_official_source(raw, record, tmp_path / "stage", lambda n: True)
    assert root == tmp_path / "stage" and (root / "top" / "a.txt").is_file()


def test_scale_box_keeps_centre():
    assert scale_box((10, 20, 30, 60), 1.2) == pytest.approx((8, 16, 32, 64))


def test_crop_and_resize_clip_and_pad():
    pixels = np.zeros((10, 20, 3), np.uint8)
    pixels[:, 10:] = 200  # right half bright
    image = Image.fromarray(pixels, "RGB")
    right = np.asarray(crop_and_resize(image, (10, 0, 20, 10), 8))
    assert right.shape == (8, 8, 3) and (right == 200).all()
    # A box reaching past the left edge: clip keeps only image pixels, pad fills.
    clipped = np.asarray(crop_and_resize(image, (-10, 0, 10, 10), 8, outside="clip"))
    assert (clipped == 0).all()
    padded = np.asarray(crop_and_resize(image, (-10, 0, 10, 10), 8, outside="pad",
                                        fill=(7, 7, 7), resample=Image.NEAREST))
    assert (padded[:, :4] == 7).all() and (padded[:, 4:] == 0).all()
    with pytest.raises(ValueError, match="outside"):
        crop_and_resize(image, (0, 0, 5, 5), 8, outside="wrap")


def test_run_stage_reads_params_and_rejects_unknown_keys(tmp_path, capsys):
    seen = {}

    def prepare(raw_dir, out_dir, *, image_size=224, checksums=None):
        seen.update(raw=raw_dir, out=out_dir, image_size=image_size)
        if image_size == 13:
            raise RawDataError("missing official input: thing.tar")
        return out_dir

    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"prepare_x": {"image_size": 32}}))
    argv = ["--raw", "r", "--out", "o", "--params", str(params)]
    assert run_stage(argv, key="prepare_x", prepare=prepare, description="x") == 0
    assert seen["image_size"] == 32 and str(seen["raw"]) == "r"
    params.write_text(yaml.safe_dump({"prepare_x": {"image_size": 13}}))
    assert run_stage(argv, key="prepare_x", prepare=prepare, description="x") == 1
    assert "ERROR: missing official input: thing.tar" in capsys.readouterr().err
    params.write_text(yaml.safe_dump({"prepare_x": {"imagesize": 32}}))
    with pytest.raises(SystemExit):
        run_stage(argv, key="prepare_x", prepare=prepare, description="x")
    assert "imagesize" in capsys.readouterr().err
