"""Pascal VOC 2012 from the official archive: object crops of the segmentation subset.

Recipe (paper, section 4; the crop of Zhang et al.'s interpretable-CNN experiments):

- images of the segmentation subset: ``ImageSets/Segmentation/train.txt`` (-> split ``train``)
  and ``val.txt`` (-> split ``test``; VOC's segmentation test labels are not public);
- every object ``k`` (1-based, in the order of ``Annotations/<id>.xml``) is one sample; its
  crop is the box (``xmin..xmax``, 1-based inclusive pixels) scaled by ``box_scale`` = 1.2 in
  width and height about its centre, clipped to the image, resized to S x S (bilinear);
- foreground = the object's pixels in ``SegmentationObject/<id>.png`` (palette index ``k``);
  255 (boundary/void) counts as background; resized with nearest neighbour;
- the object's class must agree with ``SegmentationClass/<id>.png`` on its pixels (majority);
  objects with no segmented pixel, with a disagreeing class, ``difficult`` ones (when
  ``skip_difficult``) or with a box side under ``min_box_size`` pixels are skipped, counted in
  ``provenance.json``;
- index k of ``SegmentationObject`` is the k-th ``<object>`` of the XML only when the PNG holds
  exactly the indices 1..n of the XML's n objects; an image where they differ is skipped whole,
  with a warning, and counted (``skipped_images``), as public VOC loaders do;
- the 20 classes in the official order, label = index.

Run as the DVC stage ``prepare_voc``::

    python -m kdconcepts.data.voc --raw data/raw/voc --out data/prepared/voc --params params.yaml
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from kdconcepts.data._official import (RawDataError, crop_and_resize, extract_tar, open_mask,
                                       open_official_source, open_rgb, provenance_text,
                                       run_stage, scale_box, staged)
from kdconcepts.data.checksums import OfficialArchive, archives_for
from kdconcepts.data import PreparedRecord, write_prepared

__all__ = ["VOC_CLASSES", "prepare_voc", "parse_voc_objects", "main"]

log = logging.getLogger("kdconcepts.data.voc")

#: The 20 VOC classes in the devkit's order (SegmentationClass index = position + 1).
VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
               "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
               "sheep", "sofa", "train", "tvmonitor")

_BASE = "VOCdevkit/VOC2012"
_SPLIT_FILES = {"train": "train.txt", "test": "val.txt"}


def parse_voc_objects(path: Path) -> list[dict]:
    """Objects of a VOC annotation XML, in file order.

    Returns:
        ``[{"name", "box": (x0, y0, x1, y1) 0-based with exclusive x1/y1, "difficult"}]``.

    Raises:
        RawDataError: missing file, bad XML or a malformed object (the file is named).
    """
    if not path.is_file():
        raise RawDataError(f"missing annotation file {path}")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise RawDataError(f"cannot parse annotation {path}: {exc}") from exc
    objects = []
    for number, obj in enumerate(root.findall("object"), start=1):
        try:
            name = obj.findtext("name").strip()
            bndbox = obj.find("bndbox")
            xmin, ymin, xmax, ymax = (float(bndbox.findtext(k)) for k in
                                      ("xmin", "ymin", "xmax", "ymax"))
        except (AttributeError, TypeError, ValueError):
            raise RawDataError(f"{path}: object {number} lacks a name or a numeric "
                               f"bndbox") from None
        if xmax < xmin or ymax < ymin:
            raise RawDataError(f"{path}: object {number} has an empty box "
                               f"({xmin}, {ymin}, {xmax}, {ymax})")
        difficult = (obj.findtext("difficult") or "0").strip() == "1"
        objects.append({"name": name, "box": (xmin - 1, ymin - 1, xmax, ymax),
                        "difficult": difficult})
    return objects


def _read_ids(path: Path) -> list[str]:
    if not path.is_file():
        raise RawDataError(f"missing official list file {path}")
    return [line.split()[0] for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()]


def _records(voc_root: Path, split_ids: dict[str, list[str]], class_names: list[str], *,
             image_size: int, box_scale: float, skip_difficult: bool, min_box_size: float,
             skipped: Counter, skipped_images: Counter) -> Iterator[PreparedRecord]:
    label_of = {name: i for i, name in enumerate(class_names)}
    jobs = [(split, image_id) for split in ("train", "test") for image_id in split_ids[split]]
    for split, image_id in tqdm(jobs, desc="voc", unit="img", mininterval=2.0):
        image = open_rgb(voc_root / "JPEGImages" / f"{image_id}.jpg")
        instances = np.asarray(open_mask(voc_root / "SegmentationObject" / f"{image_id}.png",
                                         image.size))
        semantic = np.asarray(open_mask(voc_root / "SegmentationClass" / f"{image_id}.png",
                                        image.size))
        objects = parse_voc_objects(voc_root / "Annotations" / f"{image_id}.xml")
        indices = set(np.unique(instances).tolist()) - {0, 255}
        if indices != set(range(1, len(objects) + 1)):
            skipped_images["object_count_mismatch"] += 1
            log.warning("%s: SegmentationObject holds instance(s) %s but the XML lists %d "
                        "object(s); index k cannot be matched to the k-th object, image skipped",
                        image_id, sorted(indices), len(objects))
            continue
        for k, obj in enumerate(objects, start=1):
            if obj["name"] not in VOC_CLASSES:
                raise RawDataError(f"{voc_root / 'Annotations' / image_id}.xml: unknown class "
                                   f"{obj['name']!r}")
            if obj["name"] not in label_of:
                continue  # class not selected
            x0, y0, x1, y1 = obj["box"]
            if skip_difficult and obj["difficult"]:
                skipped["difficult"] += 1
                continue
            if min(x1 - x0, y1 - y0) < min_box_size:
                skipped["small_box"] += 1
                continue
            pixels = instances == k
            if not pixels.any():
                skipped["not_segmented"] += 1
                continue
            classes_here, counts = np.unique(semantic[pixels], return_counts=True)
            if classes_here[counts.argmax()] != VOC_CLASSES.index(obj["name"]) + 1:
                skipped["class_mismatch"] += 1
                log.warning("%s object %d: SegmentationClass disagrees with class %s; skipped",
                            image_id, k, obj["name"])
                continue
            box = scale_box(obj["box"], box_scale)
            crop = crop_and_resize(image, box, image_size, outside="clip")
            mask = crop_and_resize(Image.fromarray(pixels.astype(np.uint8) * 255, mode="L"),
                                   box, image_size, outside="clip", resample=Image.NEAREST)
            label = label_of[obj["name"]]
            yield PreparedRecord(f"{image_id}_{k}", np.asarray(crop), np.asarray(mask) > 0,
                                 label, class_names[label], split)


def prepare_voc(raw_dir: str | Path, out_dir: str | Path, *, image_size: int = 224,
                verify: bool = True, classes: Sequence[str] | None = None,
                box_scale: float = 1.2, skip_difficult: bool = False,
                min_box_size: float = 0.0,
                checksums: Mapping[str, OfficialArchive] | None = None) -> Path:
    """Prepare VOC 2012 object crops (1.2x box) with segmentation foreground masks.

    Args:
        raw_dir: folder with ``VOCtrainval_11-May-2012.tar`` (or its extracted ``VOCdevkit/``).
        out_dir: output folder (replaced atomically).
        image_size: side S of the square crops (224; 227 for AlexNet).
        verify: check the archive's size and md5 (``False``: loud warning).
        classes: ``None`` = the 20 classes; or a subset of :data:`VOC_CLASSES` (labels follow
            the official order of the subset).
        box_scale: crop = object box scaled by this factor (paper: 1.2).
        skip_difficult: drop objects marked ``difficult``.
        min_box_size: drop objects whose box is narrower or shorter (pixels).
        checksums: archive table (default: the official one); tests pass their own.

    Returns:
        ``out_dir``.

    Raises:
        RawDataError: missing or malformed input (the file is named); ChecksumError for a
            wrong archive.
    """
    if classes is None:
        class_names = list(VOC_CLASSES)
    else:
        unknown = sorted(set(classes) - set(VOC_CLASSES))
        if unknown:
            raise ValueError(f"unknown VOC classes {unknown}; choose from {VOC_CLASSES}")
        class_names = [name for name in VOC_CLASSES if name in set(classes)]
    if box_scale <= 0:
        raise ValueError(f"box_scale must be positive, got {box_scale}")
    table = dict(checksums or archives_for("voc"))
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with staged(out_dir, raw_dir) as staging:
        # Pass 1: the split lists; pass 2: only the files of the segmentation subset
        # (JPEGImages holds ~17k photos, the subset ~2.9k).
        split_prefix = f"{_BASE}/ImageSets/Segmentation/"
        root, record = open_official_source(
            raw_dir, table["trainval"], staging,
            lambda name: name in {split_prefix + f for f in _SPLIT_FILES.values()},
            verify=verify)
        voc_root = root / _BASE
        split_ids = {split: _read_ids(voc_root / "ImageSets" / "Segmentation" / name)
                     for split, name in _SPLIT_FILES.items()}
        if root == staging:
            needed = {f"{_BASE}/{sub}/{image_id}.{ext}"
                      for ids in split_ids.values() for image_id in ids
                      for sub, ext in (("JPEGImages", "jpg"), ("Annotations", "xml"),
                                       ("SegmentationObject", "png"),
                                       ("SegmentationClass", "png"))}
            # Verified in pass 1; this second read needs no second md5.
            extract_tar(Path(raw_dir) / table["trainval"].filename, staging,
                        needed.__contains__)
        skipped: Counter = Counter()
        skipped_images: Counter = Counter()
        records = _records(voc_root, split_ids, class_names, image_size=image_size,
                           box_scale=box_scale, skip_difficult=skip_difficult,
                           min_box_size=min_box_size, skipped=skipped, skipped_images=skipped_images)
        params = {"image_size": image_size, "verify": verify, "classes": classes,
                  "box_scale": box_scale, "skip_difficult": skip_difficult,
                  "min_box_size": min_box_size}

        def provenance() -> str:  # called after all records are written: skipped is final
            return provenance_text({
                "dataset": "Pascal VOC 2012 (segmentation subset)", "archives": [record],
                "params": params, "skipped_objects": dict(sorted(skipped.items())),
                "skipped_images": dict(sorted(skipped_images.items())),
                "recipe": "one sample per object: box x box_scale, clipped, bilinear resize "
                          "to S x S; foreground = SegmentationObject == object index "
                          "(255 void = background), nearest resize; train.txt -> train, "
                          "val.txt -> test"})

        meta = {"name": "voc", "classes": class_names, "foreground": "mask"}
        return write_prepared(out_dir, records, meta,
                              extra_files={"provenance.json": provenance})


def main(argv: Sequence[str] | None = None) -> int:
    """DVC stage entry point (``python -m kdconcepts.data.voc``)."""
    return run_stage(argv, key="prepare_voc", prepare=prepare_voc,
                     description="Prepare Pascal VOC 2012 object crops and masks from the "
                                 "official archive.")


if __name__ == "__main__":
    raise SystemExit(main())
