"""ILSVRC-2013 DET, mammal classes, from the official archives: object-centred crops.

Recipe (paper, section 4: object-centred crops; foreground = the central 12 x 12 cells of the
16 x 16 grid). This module's choices, documented in docs/DATASETS.md:

- classes: the 24 mammal synsets of the ILSVRC "Animal-Part" category list of the same group
  (Zhang et al., interpretable CNNs), all of which are ILSVRC-2013 DET classes
  (:data:`MAMMAL_SYNSETS`); the paper does not list its synsets, so this is a documented
  choice, overridable with ``synsets``;
- samples: every box of the class's own synset in
  ``ILSVRC2013_DET_bbox_train/<wnid>/<image>.xml`` (boxes of other synsets in the same image
  are ignored); the image is ``ILSVRC2013_DET_train/<wnid>.tar`` -> ``<image>.JPEG``;
- crop: the box scaled by ``grid / foreground_cells`` (16/12) in width and height about its
  centre; the part outside the photo is padded with the ImageNet mean colour (so the object
  stays centred), then resized to S x S (bilinear; the aspect ratio is not kept);
- foreground: by construction the box fills the central ``foreground_cells / grid`` of the
  crop, so the mask is that central square: exactly the central 12 x 12 cells of a 16 x 16
  grid (``meta["foreground"] = "central"``);
- split: DET train has no test split of these classes, so the images (not boxes: all boxes
  of an image share a split) of each class are shuffled with ``seed`` and a fraction
  ``test_fraction`` goes to ``test``.

Run as the DVC stage ``prepare_ilsvrc``::

    python -m kdconcepts.data.ilsvrc --raw data/raw/ilsvrc --out data/prepared/ilsvrc \\
        --params params.yaml
"""

from __future__ import annotations

import logging
import tarfile
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from kdconcepts.data._official import (RawDataError, crop_and_resize,
                                       open_official_source, open_rgb, provenance_text,
                                       run_stage, scale_box, staged)
from kdconcepts.data.checksums import OfficialArchive, archives_for
from kdconcepts.data import PreparedRecord, write_prepared

__all__ = ["MAMMAL_SYNSETS", "central_mask", "prepare_ilsvrc", "main"]

log = logging.getLogger("kdconcepts.data.ilsvrc")

#: Mammal synsets (WordNet id -> name) among the ILSVRC-2013 DET classes, in WordNet-id order.
MAMMAL_SYNSETS: dict[str, str] = {
    "n01882714": "koala_bear", "n02084071": "dog", "n02118333": "fox",
    "n02121808": "domestic_cat", "n02129165": "lion", "n02129604": "tiger",
    "n02131653": "bear", "n02324045": "rabbit", "n02342885": "hamster",
    "n02355227": "squirrel", "n02374451": "horse", "n02391049": "zebra",
    "n02395003": "swine", "n02398521": "hippopotamus", "n02402425": "cattle",
    "n02411705": "sheep", "n02419796": "antelope", "n02437136": "camel",
    "n02444819": "otter", "n02454379": "armadillo", "n02484322": "monkey",
    "n02503517": "elephant", "n02509815": "red_panda", "n02510455": "giant_panda",
}

#: ImageNet mean colour (0..255) used to pad crops that reach past the photo.
_PAD_RGB = (124, 116, 104)


def central_mask(image_size: int, fraction: float) -> np.ndarray:
    """Boolean S x S mask of the central square covering ``fraction`` of each side.

    With ``fraction = 12/16`` and S divisible by 16 it is exactly the central 12 x 12 cells.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    lo = round(image_size * (1 - fraction) / 2)
    hi = image_size - lo
    mask = np.zeros((image_size, image_size), dtype=bool)
    mask[lo:hi, lo:hi] = True
    return mask


def _parse_boxes(path: Path, wnid: str) -> list[tuple[float, float, float, float]]:
    """Boxes of synset ``wnid`` in an ImageNet DET annotation (0-based, exclusive x1/y1)."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise RawDataError(f"cannot parse annotation {path}: {exc}") from exc
    boxes = []
    for number, obj in enumerate(root.findall("object"), start=1):
        if (obj.findtext("name") or "").strip() != wnid:
            continue
        try:
            bndbox = obj.find("bndbox")
            xmin, ymin, xmax, ymax = (float(bndbox.findtext(k)) for k in
                                      ("xmin", "ymin", "xmax", "ymax"))
        except (AttributeError, TypeError, ValueError):
            raise RawDataError(f"{path}: object {number} lacks a numeric bndbox") from None
        if xmax <= xmin or ymax <= ymin:
            raise RawDataError(f"{path}: object {number} has an empty box "
                               f"({xmin}, {ymin}, {xmax}, {ymax})")
        # ImageNet boxes are 0-based pixel indices with inclusive max.
        boxes.append((xmin, ymin, xmax + 1, ymax + 1))
    return boxes


def _image_folder(images_root: Path, wnid: str, staging: Path) -> Path:
    """The folder holding ``<wnid>_*.JPEG``: extracted already, or from ``<wnid>.tar``.

    (The caller has checked that one of the two exists.)
    """
    folder = images_root / wnid
    if folder.is_dir():
        return folder
    inner = images_root / f"{wnid}.tar"
    target = staging / "inner" / wnid
    target.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(inner) as tar:
            tar.extractall(target, filter="data")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise RawDataError(f"cannot read {inner}: {exc} (corrupt or truncated)") from exc
    return target


def _records(images_root: Path, boxes_root: Path, synsets: list[str], staging: Path, *,
             image_size: int, scale: float, test_fraction: float, seed: int,
             min_box_size: float, skipped: Counter) -> Iterator[PreparedRecord]:
    mask = central_mask(image_size, 1.0 / scale)
    rng = np.random.default_rng(seed)
    for label, wnid in enumerate(synsets):
        xml_dir = boxes_root / wnid
        photos = {p.stem: p for p in _image_folder(images_root, wnid, staging).rglob("*")
                  if p.suffix.lower() in (".jpeg", ".jpg")}
        xml_files = sorted(xml_dir.glob("*.xml"))
        # Split by image so that boxes of one photo never straddle train and test.
        order = rng.permutation(len(xml_files))
        n_test = int(round(len(xml_files) * test_fraction))
        test_stems = {xml_files[i].stem for i in order[:n_test]}
        for xml_path in tqdm(xml_files, desc=f"ilsvrc {wnid}", unit="img", mininterval=2.0):
            boxes = _parse_boxes(xml_path, wnid)
            if not boxes:
                skipped["no_box_of_own_synset"] += 1
                continue
            if xml_path.stem not in photos:
                raise RawDataError(f"{xml_path} has no image {xml_path.stem}.JPEG in the "
                                   f"images of synset {wnid}")
            image = open_rgb(photos[xml_path.stem])
            split = "test" if xml_path.stem in test_stems else "train"
            for k, box in enumerate(boxes):
                if min(box[2] - box[0], box[3] - box[1]) < min_box_size:
                    skipped["small_box"] += 1
                    continue
                crop = crop_and_resize(image, scale_box(box, scale), image_size,
                                       outside="pad", fill=_PAD_RGB)
                yield PreparedRecord(f"{xml_path.stem}_{k}", np.asarray(crop), mask, label,
                                     MAMMAL_SYNSETS.get(wnid, wnid), split)


def prepare_ilsvrc(raw_dir: str | Path, out_dir: str | Path, *, image_size: int = 224,
                   verify: bool = True, synsets: Sequence[str] | None = None,
                   grid: int = 16, foreground_cells: int = 12, test_fraction: float = 0.1,
                   seed: int = 0, min_box_size: float = 0.0,
                   checksums: Mapping[str, OfficialArchive] | None = None) -> Path:
    """Prepare object-centred ILSVRC-2013 DET mammal crops with central foreground masks.

    Args:
        raw_dir: folder with ``ILSVRC2013_DET_train.tar`` and ``ILSVRC2013_DET_bbox_train.tgz``
            (or their extracted folders ``ILSVRC2013_DET_train/``, holding ``<wnid>.tar`` or
            ``<wnid>/``, and ``ILSVRC2013_DET_bbox_train/``).
        out_dir: output folder (replaced atomically).
        image_size: side S of the square crops (224; 227 for AlexNet).
        verify: check the archives' size and md5 where known (``False``: loud warning).
        synsets: WordNet ids (default: :data:`MAMMAL_SYNSETS`); label = position.
        grid: G of the sigma grid; with ``foreground_cells`` sets the margin: crop side =
            box side x ``grid / foreground_cells``.
        foreground_cells: side of the central foreground square, in cells (paper: 12).
        test_fraction: fraction of each class's images put in the test split.
        seed: seed of that split.
        min_box_size: drop boxes narrower or shorter than this (pixels).
        checksums: archive table (default: the official one); tests pass their own.

    Returns:
        ``out_dir``.

    Raises:
        RawDataError: missing or malformed input (the file is named); ChecksumError for a
            wrong archive.
    """
    synsets = list(synsets) if synsets is not None else list(MAMMAL_SYNSETS)
    if not synsets or len(set(synsets)) != len(synsets):
        raise ValueError(f"synsets must be distinct WordNet ids, got {synsets}")
    if not 0 < foreground_cells <= grid:
        raise ValueError(f"need 0 < foreground_cells <= grid, got {foreground_cells}, {grid}")
    if not 0 <= test_fraction < 1:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    table = dict(checksums or archives_for("ilsvrc"))
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    wanted_set = set(synsets)

    def wanted(name: str) -> bool:
        parts = name.split("/")
        if parts[0] == table["images"].folder:  # <folder>/<wnid>.tar or <folder>/<wnid>/x
            return len(parts) >= 2 and (parts[1].removesuffix(".tar") in wanted_set)
        if parts[0] == table["boxes"].folder:  # <folder>/<wnid>/<image>.xml
            return len(parts) == 3 and parts[1] in wanted_set and name.endswith(".xml")
        return False

    with staged(out_dir, raw_dir) as staging:
        images_base, images_record = open_official_source(
            raw_dir, table["images"], staging, wanted, verify=verify)
        boxes_base, boxes_record = open_official_source(
            raw_dir, table["boxes"], staging, wanted, verify=verify)
        images_root = images_base / table["images"].folder
        boxes_root = boxes_base / table["boxes"].folder
        # Name every absent synset at once (the staging paths would mean nothing to a user).
        for what, root, present in (
                ("box annotations", table["boxes"], lambda w: (boxes_root / w).is_dir()),
                ("images", table["images"], lambda w: (images_root / w).is_dir()
                 or (images_root / f"{w}.tar").is_file())):
            absent = [w for w in synsets if not present(w)]
            if absent:
                raise RawDataError(f"no {what} of synset(s) {', '.join(absent)} in "
                                   f"{root.filename} / {root.folder}/ under {raw_dir}; are "
                                   f"they ILSVRC-2013 DET synsets? (param synsets)")
        scale = grid / foreground_cells
        skipped: Counter = Counter()
        records = _records(images_root, boxes_root, synsets, staging,
                           image_size=image_size, scale=scale, test_fraction=test_fraction,
                           seed=seed, min_box_size=min_box_size, skipped=skipped)
        params = {"image_size": image_size, "verify": verify, "synsets": synsets,
                  "grid": grid, "foreground_cells": foreground_cells,
                  "test_fraction": test_fraction, "seed": seed, "min_box_size": min_box_size}

        def provenance() -> str:  # called after all records are written: skipped is final
            return provenance_text({
                "dataset": "ILSVRC-2013 DET train, mammal synsets",
                "archives": [images_record, boxes_record], "params": params,
                "skipped": dict(sorted(skipped.items())),
                "recipe": "one sample per box of the class's synset: box x grid/"
                          "foreground_cells about its centre, padded with the ImageNet mean "
                          "colour, bilinear resize to S x S; foreground = central square "
                          "(foreground_cells/grid of each side); seeded per-class image split"})

        meta = {"name": "ilsvrc", "classes": [MAMMAL_SYNSETS.get(w, w) for w in synsets],
                "foreground": "central", "synsets": synsets}
        return write_prepared(out_dir, records, meta,
                              extra_files={"provenance.json": provenance})


def main(argv: Sequence[str] | None = None) -> int:
    """DVC stage entry point (``python -m kdconcepts.data.ilsvrc``)."""
    return run_stage(argv, key="prepare_ilsvrc", prepare=prepare_ilsvrc,
                     description="Prepare ILSVRC-2013 DET mammal crops from the official "
                                 "archives.")


if __name__ == "__main__":
    raise SystemExit(main())
