"""ILSVRC-2013 DET, mammal classes, from the official archives: object-centred crops.

Recipe (paper, section 4: object-centred crops; foreground = the central 12 x 12 cells of the
16 x 16 grid). This module's choices, documented in docs/DATASETS.md:

- classes: the 24 mammal synsets of the ILSVRC "Animal-Part" category list of the same group
  (Zhang et al., interpretable CNNs), all of which are ILSVRC-2013 DET classes
  (:data:`MAMMAL_SYNSETS`); the paper does not list its synsets, so this is a documented
  choice, overridable with ``synsets``;
- samples: the devkit's positives of each class: every object whose ``<name>`` is the class's
  synset, in every annotation folder ``ILSVRC2013_DET_bbox_train/<folder>/<image>.xml``. DET
  train files an image under its *source* synset (a dog breed's folder, say, or another
  class's), a superset of the 200 classes, so an image's classes are its objects' names, not
  its folder; the image is ``ILSVRC2013_DET_train/<folder>.tar`` -> ``<image>.JPEG``. The
  ILSVRC2015/2017 layout (``ILSVRC/Data/DET/train/ILSVRC2013_train/<folder>/<image>.JPEG``
  and ``ILSVRC/Annotations/DET/train/ILSVRC2013_train/<folder>/<image>.xml``) is read too;
- boxes: ImageNet's 0-based pixel indices with inclusive max; a box one pixel wide or high
  (``xmax == xmin``) is valid there but too small to crop, and is skipped and counted, as is a
  box whose max lies before its min;
- crop: the box scaled by ``grid / foreground_cells`` (16/12) in width and height about its
  centre; the part outside the photo is padded with the ImageNet mean colour (so the object
  stays centred), then resized to S x S (bilinear; the aspect ratio is not kept);
- foreground: by construction the box fills the central ``foreground_cells / grid`` of the
  crop, so the mask is that central square: exactly the central 12 x 12 cells of a 16 x 16
  grid (``meta["foreground"] = "central"``);
- split: DET train has no test split of these classes, so the images (not boxes: all boxes
  of an image share a split) of each class are shuffled with ``seed`` and a fraction
  ``test_fraction`` goes to ``test`` (an image with objects of two classes keeps the split
  its first class gave it).

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


def _parse_objects(path: Path, wanted: set[str], skipped: Counter
                   ) -> list[tuple[int, str, tuple[float, float, float, float]]]:
    """(object number, synset, box) of every object of a ``wanted`` synset in an ImageNet DET
    annotation; number is 0-based over all the file's objects, the box half-open in pixels."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise RawDataError(f"cannot parse annotation {path}: {exc}") from exc
    found = []
    for number, obj in enumerate(root.findall("object")):
        wnid = (obj.findtext("name") or "").strip()
        if wnid not in wanted:
            continue
        try:
            bndbox = obj.find("bndbox")
            xmin, ymin, xmax, ymax = (float(bndbox.findtext(k)) for k in
                                      ("xmin", "ymin", "xmax", "ymax"))
        except (AttributeError, TypeError, ValueError):
            raise RawDataError(f"{path}: object {number + 1} lacks a numeric bndbox") from None
        if xmax < xmin or ymax < ymin:
            skipped["inverted_box"] += 1
            log.warning("%s: object %d has max before min (%s, %s, %s, %s); skipped", path,
                        number + 1, xmin, ymin, xmax, ymax)
            continue
        if xmax == xmin or ymax == ymin:  # one pixel wide or high: valid, but nothing to crop
            skipped["one_pixel_box"] += 1
            continue
        # ImageNet boxes are 0-based pixel indices with inclusive max.
        found.append((number, wnid, (xmin, ymin, xmax + 1, ymax + 1)))
    return found


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


def _positives(boxes_root: Path, synsets: list[str], skipped: Counter
               ) -> list[tuple[Path, list[tuple[int, str, tuple[float, float, float, float]]]]]:
    """Every annotation, in any folder, with an object of a wanted synset: (xml path, objects)."""
    wanted = set(synsets)
    found = []
    for xml_path in tqdm(sorted(boxes_root.glob("*/*.xml")), desc="ilsvrc annotations", unit="xml",
                         mininterval=2.0):
        objects = _parse_objects(xml_path, wanted, skipped)
        if objects:
            found.append((xml_path, objects))
    return found


def _splits(positives, synsets: list[str], test_fraction: float, seed: int) -> dict[str, str]:
    """Image stem -> split: per class (in ``synsets`` order) its images not split yet are
    shuffled with ``seed`` and ``test_fraction`` of them go to test."""
    rng = np.random.default_rng(seed)
    split: dict[str, str] = {}
    for wnid in synsets:
        stems = sorted({xml.stem for xml, objects in positives if any(w == wnid for _, w, _ in objects)}
                       - set(split))
        order = rng.permutation(len(stems))
        n_test = int(round(len(stems) * test_fraction))
        for rank, i in enumerate(order):
            split[stems[i]] = "test" if rank < n_test else "train"
    return split


def _records(images_root: Path, positives, synsets: list[str], staging: Path, *,
             image_size: int, scale: float, test_fraction: float, seed: int,
             min_box_size: float, skipped: Counter) -> Iterator[PreparedRecord]:
    mask = central_mask(image_size, 1.0 / scale)
    label_of = {wnid: label for label, wnid in enumerate(synsets)}
    split = _splits(positives, synsets, test_fraction, seed)
    photos_of: dict[str, dict[str, Path]] = {}
    for xml_path, objects in tqdm(positives, desc="ilsvrc crops", unit="img", mininterval=2.0):
        folder = xml_path.parent.name  # the image's source synset, not its class
        if folder not in photos_of:
            photos_of[folder] = {p.stem: p for p in _image_folder(images_root, folder, staging).rglob("*")
                                 if p.suffix.lower() in (".jpeg", ".jpg")}
        photos = photos_of[folder]
        if xml_path.stem not in photos:
            raise RawDataError(f"{xml_path} has no image {xml_path.stem}.JPEG in the "
                               f"images of folder {folder}")
        image = open_rgb(photos[xml_path.stem])
        for number, wnid, box in objects:
            if min(box[2] - box[0], box[3] - box[1]) < min_box_size:
                skipped["small_box"] += 1
                continue
            crop = crop_and_resize(image, scale_box(box, scale), image_size,
                                   outside="pad", fill=_PAD_RGB)
            yield PreparedRecord(f"{xml_path.stem}_{number}", np.asarray(crop), mask, label_of[wnid],
                                 MAMMAL_SYNSETS.get(wnid, wnid), split[xml_path.stem])


def _has_2013_input(raw_dir: Path, table: Mapping[str, OfficialArchive]) -> bool:
    """Whether the ILSVRC-2013 DET box annotations are there, as the archive or its folder."""
    boxes = table["boxes"]
    return (Path(raw_dir) / boxes.filename).is_file() or (Path(raw_dir) / boxes.folder).is_dir()


def _layout_2017(raw_dir: Path) -> tuple[Path, Path] | None:
    """(images root, annotations root) of an extracted ILSVRC2015/2017 DET tree, if any."""
    top = Path(raw_dir) / "ILSVRC"
    images = top / "Data/DET/train/ILSVRC2013_train"
    boxes = top / "Annotations/DET/train/ILSVRC2013_train"
    return (images, boxes) if images.is_dir() and boxes.is_dir() else None


def prepare_ilsvrc(raw_dir: str | Path, out_dir: str | Path, *, image_size: int = 224,
                   verify: bool = True, synsets: Sequence[str] | None = None,
                   grid: int = 16, foreground_cells: int = 12, test_fraction: float = 0.1,
                   seed: int = 0, min_box_size: float = 0.0,
                   checksums: Mapping[str, OfficialArchive] | None = None) -> Path:
    """Prepare object-centred ILSVRC-2013 DET mammal crops with central foreground masks.

    Args:
        raw_dir: folder with ``ILSVRC2013_DET_train.tar`` and ``ILSVRC2013_DET_bbox_train.tgz``
            (or their extracted folders ``ILSVRC2013_DET_train/``, holding ``<folder>.tar`` or
            ``<folder>/``, and ``ILSVRC2013_DET_bbox_train/``), or else the extracted
            ILSVRC2015/2017 DET tree ``ILSVRC/`` (``Data/DET/train/ILSVRC2013_train/`` and
            ``Annotations/DET/train/ILSVRC2013_train/``; no checksum is known for it).
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
    with staged(out_dir, raw_dir) as staging:
        skipped: Counter = Counter()
        extracted = _layout_2017(raw_dir) if not _has_2013_input(raw_dir, table) else None
        if not extracted and not _has_2013_input(raw_dir, table):
            boxes = table["boxes"]
            raise RawDataError(
                f"missing official input: neither {boxes.filename} (or its folder {boxes.folder}/) "
                f"nor an extracted ILSVRC2015/2017 DET tree ILSVRC/Annotations/DET/train/"
                f"ILSVRC2013_train/ is in {raw_dir}/; obtain {boxes.filename} and "
                f"{table['images'].filename} from {boxes.url}, or the ILSVRC2017 DET download")
        if extracted:
            images_root, boxes_root = extracted
            log.warning("using the extracted ILSVRC2015/2017 DET tree %s/ILSVRC/: no official "
                        "checksum is known for it, so it is not verified", raw_dir)
            images_record = boxes_record = {"file": "ILSVRC/ (ILSVRC2015/2017 DET layout)",
                                            "size": None, "md5": None, "verified": False}
        else:
            # Annotations first: the images needed are in the folders where positives are.
            boxes_base, boxes_record = open_official_source(
                raw_dir, table["boxes"], staging,
                lambda name: name.startswith(table["boxes"].folder + "/") and name.endswith(".xml"),
                verify=verify)
            boxes_root = boxes_base / table["boxes"].folder
        positives = _positives(boxes_root, synsets, skipped)
        # Name every absent synset at once (the staging paths would mean nothing to a user).
        found = {wnid for _, objects in positives for _, wnid, _ in objects}
        absent = [w for w in synsets if w not in found]
        if absent:
            source = ("ILSVRC/Annotations/DET/train/ILSVRC2013_train/" if extracted else
                      f"{table['boxes'].filename} / {table['boxes'].folder}/")
            raise RawDataError(f"no object of synset(s) {', '.join(absent)} in any box annotation "
                               f"of {source} under {raw_dir}; are they ILSVRC-2013 DET synsets? "
                               f"(param synsets)")
        if not extracted:
            folders = {xml.parent.name for xml, _ in positives}

            def wanted(name: str) -> bool:  # <folder>/<source>.tar or <folder>/<source>/x
                parts = name.split("/")
                return (parts[0] == table["images"].folder and len(parts) >= 2
                        and parts[1].removesuffix(".tar") in folders)

            images_base, images_record = open_official_source(
                raw_dir, table["images"], staging, wanted, verify=verify)
            images_root = images_base / table["images"].folder
            absent = sorted(f for f in folders if not (images_root / f).is_dir()
                            and not (images_root / f"{f}.tar").is_file())
            if absent:
                raise RawDataError(f"no images of folder(s) {', '.join(absent)} in "
                                   f"{table['images'].filename} / {table['images'].folder}/ under "
                                   f"{raw_dir}, where their annotations have positives")
        scale = grid / foreground_cells
        records = _records(images_root, positives, synsets, staging,
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
                "recipe": "one sample per object named with a class's synset, in any "
                          "annotation folder (the devkit's positives): box x grid/"
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
