"""CUB-200-2011 from the official archives: bird crops and segmentation foreground masks.

Recipe (paper, section 4: "object images cropped by the bounding box"):

- images and labels from ``CUB_200_2011.tgz`` (``images.txt``, ``image_class_labels.txt``,
  ``classes.txt``, ``bounding_boxes.txt``); the train/test split from ``train_test_split.txt``
  (1 = train, 0 = test);
- each image is cropped to its bounding box (``x y width height``, pixels, 0-based), optionally
  scaled by ``box_scale`` about its centre and clipped to the image, then resized to
  ``image_size`` x ``image_size`` (bilinear; the aspect ratio is not kept, as the authors'
  ``Resize((224, 224))``);
- foreground = the bird's segmentation from the separate ``segmentations.tgz``
  (``segmentations/<class folder>/<image stem>.png``, grey values = fraction of annotators):
  pixel >= ``mask_threshold`` (default 128, a majority), cropped with the same box and resized
  with nearest neighbour.

Run as the DVC stage ``prepare_cub``::

    python -m kdconcepts.data.cub --raw data/raw/cub --out data/prepared/cub --params params.yaml
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from kdconcepts.data._official import (RawDataError, crop_and_resize, open_mask,
                                       open_official_source, open_rgb, provenance_text,
                                       run_stage, scale_box, staged)
from kdconcepts.data.checksums import OfficialArchive, archives_for
from kdconcepts.data import PreparedRecord, write_prepared

__all__ = ["prepare_cub", "main"]

log = logging.getLogger("kdconcepts.data.cub")

_LISTS = ("images.txt", "image_class_labels.txt", "train_test_split.txt", "classes.txt",
          "bounding_boxes.txt")


def _read_list(path: Path, columns: int) -> dict[int, list[str]]:
    """Read an official ``<id> <value...>`` list into ``{id: [values]}``."""
    if not path.is_file():
        raise RawDataError(f"missing official list file {path}")
    table: dict[int, list[str]] = {}
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != columns:
            raise RawDataError(f"{path} line {line_no}: expected {columns} fields, got "
                               f"{len(fields)}: {line!r}")
        try:
            table[int(fields[0])] = fields[1:]
        except ValueError:
            raise RawDataError(f"{path} line {line_no}: id {fields[0]!r} is not an integer"
                               ) from None
    return table


def _class_selected(folder: str, classes: int | Sequence[str] | None) -> bool:
    """Whether a class folder (``NNN.Name``) is selected: all, the first N, or by name."""
    if classes is None:
        return True
    if isinstance(classes, int):
        number = folder.split(".", 1)[0]
        return number.isdigit() and int(number) <= classes
    return folder in classes or folder.split(".", 1)[-1] in classes


def _member_wanted(name: str, classes: int | Sequence[str] | None) -> bool:
    parts = name.split("/")
    if len(parts) == 2 and parts[0] == "CUB_200_2011":
        return parts[1] in _LISTS
    if len(parts) == 4 and parts[:2] == ["CUB_200_2011", "images"]:
        return _class_selected(parts[2], classes)
    if len(parts) == 3 and parts[0] == "segmentations":
        return _class_selected(parts[1], classes)
    return False


def _records(cub_root: Path, seg_root: Path, *, image_size: int, box_scale: float,
             mask_threshold: int, class_folders: list[str]) -> Iterator[PreparedRecord]:
    images = _read_list(cub_root / "images.txt", 2)
    labels = _read_list(cub_root / "image_class_labels.txt", 2)
    is_train = _read_list(cub_root / "train_test_split.txt", 2)
    boxes = _read_list(cub_root / "bounding_boxes.txt", 5)
    label_of_folder = {folder: i for i, folder in enumerate(class_folders)}
    names = [folder.split(".", 1)[-1] for folder in class_folders]
    selected = [(image_id, rel[0]) for image_id, rel in sorted(images.items())
                if rel[0].split("/", 1)[0] in label_of_folder]
    for image_id, relative in tqdm(selected, desc="cub", unit="img", mininterval=2.0):
        folder = relative.split("/", 1)[0]
        for table, what in ((labels, "image_class_labels.txt"),
                            (is_train, "train_test_split.txt"), (boxes, "bounding_boxes.txt")):
            if image_id not in table:
                raise RawDataError(f"image id {image_id} ({relative}) is missing from {what}")
        image = open_rgb(cub_root / "images" / relative)
        stem = Path(relative).stem
        mask = open_mask(seg_root / folder / f"{stem}.png", image.size, mode="L")
        x, y, w, h = (float(v) for v in boxes[image_id])
        box = scale_box((x, y, x + w, y + h), box_scale)
        crop = crop_and_resize(image, box, image_size, outside="clip")
        mask_crop = crop_and_resize(mask, box, image_size, outside="clip",
                                    resample=Image.NEAREST)
        split = {"1": "train", "0": "test"}.get(is_train[image_id][0])
        if split is None:
            raise RawDataError(f"train_test_split.txt: image id {image_id} has flag "
                               f"{is_train[image_id][0]!r}, expected 1 or 0")
        label = label_of_folder[folder]
        yield PreparedRecord(stem, np.asarray(crop), np.asarray(mask_crop) >= mask_threshold,
                             label, names[label], split)


def prepare_cub(raw_dir: str | Path, out_dir: str | Path, *, image_size: int = 224,
                verify: bool = True, classes: int | Sequence[str] | None = None,
                box_scale: float = 1.0, mask_threshold: int = 128,
                checksums: Mapping[str, OfficialArchive] | None = None) -> Path:
    """Prepare CUB-200-2011 crops and foreground masks in the prepared format.

    Args:
        raw_dir: folder with ``CUB_200_2011.tgz`` and ``segmentations.tgz`` (or their
            extracted folders ``CUB_200_2011/`` and ``segmentations/``).
        out_dir: output folder (replaced atomically).
        image_size: side S of the square crops (224; 227 for AlexNet).
        verify: check the archives' size and md5 (``False``: loud warning).
        classes: ``None`` = all 200; an int N = classes 1..N; or class folder names
            (``"001.Black_footed_Albatross"`` or ``"Black_footed_Albatross"``).
        box_scale: crop = bounding box scaled by this factor about its centre (paper: 1.0).
        mask_threshold: foreground = segmentation value >= this (0..255).
        checksums: archive table (default: the official one); tests pass their own.

    Returns:
        ``out_dir``.

    Raises:
        RawDataError: missing or malformed input (the file is named); ChecksumError for a
            wrong archive.
    """
    if not 0 < mask_threshold <= 255:
        raise ValueError(f"mask_threshold must be in 1..255, got {mask_threshold}")
    if box_scale <= 0:
        raise ValueError(f"box_scale must be positive, got {box_scale}")
    table = dict(checksums or archives_for("cub"))
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with staged(out_dir, raw_dir) as staging:
        def wanted(name: str) -> bool:
            return _member_wanted(name, classes)

        images_root, images_record = open_official_source(
            raw_dir, table["images"], staging, wanted, verify=verify)
        seg_root, seg_record = open_official_source(
            raw_dir, table["segmentations"], staging, wanted, verify=verify)
        cub_root = images_root / table["images"].folder
        class_table = _read_list(cub_root / "classes.txt", 2)
        class_folders = [class_table[k][0] for k in sorted(class_table)
                         if _class_selected(class_table[k][0], classes)]
        if not class_folders:
            raise RawDataError(f"no class of {cub_root / 'classes.txt'} matches classes="
                               f"{classes!r}")
        records = _records(cub_root, seg_root / table["segmentations"].folder,
                           image_size=image_size, box_scale=box_scale,
                           mask_threshold=mask_threshold, class_folders=class_folders)
        provenance = {
            "dataset": "CUB-200-2011",
            "archives": [images_record, seg_record],
            "params": {"image_size": image_size, "verify": verify, "classes": classes,
                       "box_scale": box_scale, "mask_threshold": mask_threshold},
            "recipe": "bounding-box crop (x box_scale, clipped), bilinear resize to S x S; "
                      "foreground = segmentation >= mask_threshold, nearest resize; "
                      "official train_test_split.txt",
        }
        meta = {"name": "cub", "classes": [f.split(".", 1)[-1] for f in class_folders],
                "foreground": "mask"}
        return write_prepared(out_dir, records, meta,
                              extra_files={"provenance.json": provenance_text(provenance)})


def main(argv: Sequence[str] | None = None) -> int:
    """DVC stage entry point (``python -m kdconcepts.data.cub``)."""
    return run_stage(argv, key="prepare_cub", prepare=prepare_cub,
                     description="Prepare CUB-200-2011 crops and masks from the official "
                                 "archives.")


if __name__ == "__main__":
    raise SystemExit(main())
