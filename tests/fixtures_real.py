"""Tiny fixtures in the exact official layouts of CUB-200-2011, VOC 2012 and ILSVRC-2013 DET.

Each ``make_*_raw(raw_dir, archived=...)`` writes a handful of small photos (tens of pixels)
with the official folder layout, list files, annotation XML and PNG modes/palettes, either as
the official archive file names or as the extracted folders, and returns a :class:`Fixture`
with the checksum table that matches the archives it wrote (the official table would reject
them, which is the point of the corrupt-archive tests).

Photos: a grey background with a saturated object (colour per class) inside its box, so tests
can check that crops are centred on the object and that masks cover it.
"""

from __future__ import annotations

import hashlib
import shutil
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from kdconcepts.data.checksums import OfficialArchive

BACKGROUND = (90, 90, 90)
COLOURS = [(230, 30, 30), (30, 200, 40), (40, 60, 230), (220, 200, 30)]


@dataclass
class Fixture:
    raw_dir: Path
    checksums: dict[str, OfficialArchive]
    #: expected samples: id -> (class_name, split)
    samples: dict[str, tuple[str, str]] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _photo(size: tuple[int, int], box: tuple[int, int, int, int], colour) -> Image.Image:
    """Grey noisy photo with a box (x0, y0, x1, y1) filled with ``colour``."""
    w, h = size
    rng = np.random.default_rng(w * 1000 + h + box[0])
    pixels = np.empty((h, w, 3), np.uint8)
    pixels[:] = BACKGROUND
    pixels = np.clip(pixels + rng.integers(-8, 9, pixels.shape), 0, 255).astype(np.uint8)
    pixels[box[1]:box[3], box[0]:box[2]] = colour
    return Image.fromarray(pixels, "RGB")


def _ellipse(size: tuple[int, int], box: tuple[int, int, int, int]) -> np.ndarray:
    """Boolean mask of the ellipse inscribed in ``box`` (half-open)."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    rx, ry = (box[2] - box[0]) / 2, (box[3] - box[1]) / 2
    return ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0


def _pack(archive: Path, source: Path, top: str, mode: str) -> None:
    with tarfile.open(archive, mode) as tar:
        tar.add(source / top, arcname=top)


def _table(raw_dir: Path, spec: dict[str, tuple[str, str]]) -> dict[str, OfficialArchive]:
    """Checksum table for the archives written (key -> (filename, folder))."""
    table = {}
    for key, (filename, folder) in spec.items():
        path = raw_dir / filename
        size, md5 = (path.stat().st_size, _md5(path)) if path.exists() else (None, None)
        table[key] = OfficialArchive(filename, size, md5, f"fixture://{filename}", folder)
    return table


# ----------------------------------------------------------------------------- CUB

CUB_CLASSES = ["001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross"]


def make_cub_raw(raw_dir: Path, *, archived: bool = True, n_classes: int = 2,
                 per_class: int = 3, bad_mask_for: str | None = None) -> Fixture:
    """CUB_200_2011.tgz + segmentations.tgz (or the extracted folders) with a few birds.

    Args:
        bad_mask_for: image stem whose segmentation PNG gets the wrong size.
    """
    if n_classes > len(CUB_CLASSES):
        raise ValueError(f"n_classes={n_classes}: the CUB fixture has {len(CUB_CLASSES)} classes")
    raw_dir = Path(raw_dir)
    build = raw_dir / "_build" if archived else raw_dir
    cub, seg = build / "CUB_200_2011", build / "segmentations"
    (cub / "images").mkdir(parents=True)
    seg.mkdir(parents=True)
    (cub / "README").write_text("CUB-200-2011 fixture\n")
    fixture = Fixture(raw_dir, {})
    images, labels, split_lines, boxes = [], [], [], []
    image_id = 0
    classes = CUB_CLASSES[:n_classes]
    (cub / "classes.txt").write_text(
        "".join(f"{i} {name}\n" for i, name in enumerate(classes, start=1)))
    for class_no, folder in enumerate(classes, start=1):
        (cub / "images" / folder).mkdir()
        (seg / folder).mkdir()
        species = folder.split(".", 1)[1]
        for j in range(per_class):
            image_id += 1
            stem = f"{species}_{j + 1:04d}_{7900 + image_id}"
            size = (40 + 4 * j, 30 + 2 * j)
            box = (6 + j, 5, 30 + j, 25)
            _photo(size, box, COLOURS[class_no - 1]).save(cub / "images" / folder / f"{stem}.jpg",
                                                          quality=95)
            # Segmentations are greyscale: 255 where all annotators agree, lower values where
            # fewer do (here a one-pixel ring at 102 around the ellipse).
            inside = _ellipse(size, box)
            ring = _ellipse(size, (box[0] - 1, box[1] - 1, box[2] + 1, box[3] + 1)) & ~inside
            seg_pixels = np.where(inside, 255, np.where(ring, 102, 0)).astype(np.uint8)
            seg_image = Image.fromarray(seg_pixels, "L")
            if stem == bad_mask_for:
                seg_image = seg_image.resize((size[0] + 3, size[1]))
            seg_image.save(seg / folder / f"{stem}.png")
            split = "train" if j % 3 != 2 else "test"
            images.append(f"{image_id} {folder}/{stem}.jpg\n")
            labels.append(f"{image_id} {class_no}\n")
            split_lines.append(f"{image_id} {1 if split == 'train' else 0}\n")
            boxes.append(f"{image_id} {box[0]:.1f} {box[1]:.1f} {box[2] - box[0]:.1f} "
                         f"{box[3] - box[1]:.1f}\n")
            fixture.samples[stem] = (species, split)
            fixture.extra[stem] = {"size": size, "box": box, "colour": COLOURS[class_no - 1]}
    for name, lines in (("images.txt", images), ("image_class_labels.txt", labels),
                        ("train_test_split.txt", split_lines),
                        ("bounding_boxes.txt", boxes)):
        (cub / name).write_text("".join(lines))
    if archived:
        (build / "attributes.txt").write_text("1 has_bill_shape::curved\n")
        with tarfile.open(raw_dir / "CUB_200_2011.tgz", "w:gz") as tar:
            tar.add(build / "attributes.txt", arcname="attributes.txt")
            tar.add(cub, arcname="CUB_200_2011")
        _pack(raw_dir / "segmentations.tgz", build, "segmentations", "w:gz")
        shutil.rmtree(build)
    fixture.checksums = _table(raw_dir, {"images": ("CUB_200_2011.tgz", "CUB_200_2011"),
                                         "segmentations": ("segmentations.tgz",
                                                           "segmentations")})
    return fixture


# ----------------------------------------------------------------------------- VOC

VOC_NAMES = ["aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
             "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
             "sheep", "sofa", "train", "tvmonitor"]


def voc_palette() -> list[int]:
    """The VOC colour map (index -> RGB, bit-interleaved), flattened for ``putpalette``."""
    palette = []
    for index in range(256):
        r = g = b = 0
        c = index
        for bit in range(8):
            r |= ((c >> 0) & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        palette += [r, g, b]
    return palette


def _palette_png(indices: np.ndarray, path: Path) -> None:
    image = Image.fromarray(indices.astype(np.uint8), "P")
    image.putpalette(voc_palette())
    image.save(path)


def _voc_xml(image_id: str, size: tuple[int, int], objects: list[dict]) -> str:
    parts = [f"<annotation>\n\t<folder>VOC2012</folder>\n\t<filename>{image_id}.jpg</filename>\n"
             "\t<source>\n\t\t<database>The VOC2007 Database</database>\n"
             "\t\t<annotation>PASCAL VOC2007</annotation>\n\t\t<image>flickr</image>\n"
             "\t</source>\n"
             f"\t<size>\n\t\t<width>{size[0]}</width>\n\t\t<height>{size[1]}</height>\n"
             "\t\t<depth>3</depth>\n\t</size>\n\t<segmented>1</segmented>\n"]
    for obj in objects:
        x0, y0, x1, y1 = obj["box"]  # half-open 0-based -> VOC 1-based inclusive
        parts.append(
            f"\t<object>\n\t\t<name>{obj['name']}</name>\n\t\t<pose>Unspecified</pose>\n"
            f"\t\t<truncated>0</truncated>\n\t\t<difficult>{int(obj.get('difficult', 0))}"
            f"</difficult>\n\t\t<bndbox>\n\t\t\t<xmin>{x0 + 1}</xmin>\n\t\t\t<ymin>{y0 + 1}"
            f"</ymin>\n\t\t\t<xmax>{x1}</xmax>\n\t\t\t<ymax>{y1}</ymax>\n\t\t</bndbox>\n"
            "\t</object>\n")
    parts.append("</annotation>\n")
    return "".join(parts)


VOC_IMAGES = {
    # id: (split, [(class, box half-open 0-based)])
    "2007_000032": ("train", [("aeroplane", (3, 4, 22, 20)), ("person", (24, 8, 37, 27))]),
    "2007_000039": ("train", [("tvmonitor", (8, 6, 32, 24))]),
    "2007_000063": ("test", [("dog", (2, 2, 18, 26)), ("cat", (20, 5, 38, 25))]),
}


def make_voc_raw(raw_dir: Path, *, archived: bool = True, bad_mask_for: str | None = None,
                 mislabel: str | None = None, extra_instance_for: str | None = None) -> Fixture:
    """VOCtrainval_11-May-2012.tar (or VOCdevkit/) with a few segmented images.

    Args:
        bad_mask_for: image id whose SegmentationObject PNG gets the wrong size.
        mislabel: image id whose first object's SegmentationClass disagrees with its XML.
        extra_instance_for: image id whose SegmentationObject PNG holds one instance more
            than its XML lists objects (a corner patch of index n + 1).
    """
    raw_dir = Path(raw_dir)
    build = raw_dir / "_build" if archived else raw_dir
    voc = build / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "Annotations", "SegmentationClass", "SegmentationObject",
                "ImageSets/Segmentation", "ImageSets/Main"):
        (voc / sub).mkdir(parents=True)
    fixture = Fixture(raw_dir, {})
    size = (40, 30)
    for number, (image_id, (split, objects)) in enumerate(VOC_IMAGES.items()):
        pixels = np.asarray(_photo(size, (0, 0, 0, 0), (0, 0, 0))).copy()
        cls = np.zeros((size[1], size[0]), np.uint8)
        inst = np.zeros_like(cls)
        for k, (name, box) in enumerate(objects, start=1):
            colour = COLOURS[(number + k) % len(COLOURS)]
            pixels[box[1]:box[3], box[0]:box[2]] = colour
            region = _ellipse(size, box)
            border = _ellipse(size, (box[0] - 1, box[1] - 1, box[2] + 1, box[3] + 1)) & ~region
            label = VOC_NAMES.index(name) + 1
            if image_id == mislabel and k == 1:
                label = label % 20 + 1
            cls[region], inst[region] = label, k
            cls[border & (cls == 0)], inst[border & (inst == 0)] = 255, 255
            fixture.samples[f"{image_id}_{k}"] = (name, split)
            fixture.extra[f"{image_id}_{k}"] = {"box": box, "colour": colour}
        Image.fromarray(pixels, "RGB").save(voc / "JPEGImages" / f"{image_id}.jpg", quality=95)
        (voc / "Annotations" / f"{image_id}.xml").write_text(
            _voc_xml(image_id, size, [{"name": n, "box": b} for n, b in objects]))
        _palette_png(cls, voc / "SegmentationClass" / f"{image_id}.png")
        if image_id == bad_mask_for:
            inst = np.pad(inst, ((0, 2), (0, 0)))
        if image_id == extra_instance_for:
            inst[:2, :2] = len(objects) + 1
        _palette_png(inst, voc / "SegmentationObject" / f"{image_id}.png")
    # A detection-only image (not in the segmentation subset): must be ignored.
    _photo(size, (5, 5, 20, 20), COLOURS[0]).save(voc / "JPEGImages" / "2008_000002.jpg")
    (voc / "Annotations" / "2008_000002.xml").write_text(
        _voc_xml("2008_000002", size, [{"name": "boat", "box": (5, 5, 20, 20)}]))
    seg_sets = voc / "ImageSets" / "Segmentation"
    for split_file, split in (("train.txt", "train"), ("val.txt", "test")):
        (seg_sets / split_file).write_text(
            "".join(f"{i}\n" for i, (s, _) in VOC_IMAGES.items() if s == split))
    (seg_sets / "trainval.txt").write_text("".join(f"{i}\n" for i in VOC_IMAGES))
    (voc / "ImageSets" / "Main" / "train.txt").write_text("2008_000002\n")
    if archived:
        _pack(raw_dir / "VOCtrainval_11-May-2012.tar", build, "VOCdevkit", "w")
        shutil.rmtree(build)
    fixture.checksums = _table(raw_dir, {"trainval": ("VOCtrainval_11-May-2012.tar",
                                                      "VOCdevkit")})
    return fixture


# ----------------------------------------------------------------------------- ILSVRC

ILSVRC_SYNSETS = ["n02084071", "n02121808"]  # dog, domestic cat (mammals)
ILSVRC_OTHER = "n01503061"  # bird: a DET class that is not a mammal
ILSVRC_BREED = "n02085620"  # Chihuahua: a source folder of DET train that is not one of its 200 classes


def _imagenet_xml(wnid: str, stem: str, size: tuple[int, int],
                  objects: list[tuple[str, tuple[int, int, int, int]]]) -> str:
    parts = [f"<annotation>\n\t<folder>{wnid}</folder>\n\t<filename>{stem}</filename>\n"
             "\t<source>\n\t\t<database>ILSVRC_2013</database>\n\t</source>\n"
             f"\t<size>\n\t\t<width>{size[0]}</width>\n\t\t<height>{size[1]}</height>\n"
             "\t</size>\n"]
    for name, (x0, y0, x1, y1) in objects:  # half-open -> ImageNet inclusive max
        parts.append(f"\t<object>\n\t\t<name>{name}</name>\n\t\t<bndbox>\n"
                     f"\t\t\t<xmin>{x0}</xmin>\n\t\t\t<xmax>{x1 - 1}</xmax>\n"
                     f"\t\t\t<ymin>{y0}</ymin>\n\t\t\t<ymax>{y1 - 1}</ymax>\n"
                     "\t\t</bndbox>\n\t</object>\n")
    parts.append("</annotation>\n")
    return "".join(parts)


def make_ilsvrc_raw(raw_dir: Path, *, archived: bool = True, per_class: int = 4,
                    layout: str = "2013") -> Fixture:
    """ILSVRC-2013 DET train in a real layout, where an image's class is the ``<name>`` of its
    objects, not the folder it is filed in.

    ``layout="2013"``: ``ILSVRC2013_DET_train.tar`` (one inner tar per source folder) and
    ``ILSVRC2013_DET_bbox_train.tgz`` (or their extracted folders, ``archived=False``);
    ``layout="2017"``: the extracted ILSVRC2015/2017 DET layout,
    ``ILSVRC/{Data,Annotations}/DET/train/ILSVRC2013_train/<folder>/``.

    Source folders: the dog's own, a dog breed's (Chihuahua: its images hold dog objects), the
    cat's and the bird's. Each image holds one box of its class, at a per-image spot; the first
    of a folder also a box of another class (a bird in a mammal's, a dog in the cat's and the
    bird's: that dog is a positive too), the second a second box of its class at the photo's
    edge (its crop needs padding), and the dog breed's third a one-pixel box (xmin == xmax,
    valid in ImageNet's inclusive coordinates; skipped and counted). ``samples`` maps the
    expected sample ids (``<image>_<object number>``, 0-based over the XML's objects) to
    (class synset, "?").
    """
    raw_dir = Path(raw_dir)
    build = raw_dir / "_build"
    if layout == "2017":
        top = raw_dir / "ILSVRC"
        train, boxes = (top / "Data/DET/train/ILSVRC2013_train", top / "Annotations/DET/train/ILSVRC2013_train")
    elif layout == "2013":
        train = (build if archived else raw_dir) / "ILSVRC2013_DET_train"
        boxes = (build if archived else raw_dir) / "ILSVRC2013_DET_bbox_train"
    else:
        raise ValueError(layout)
    train.mkdir(parents=True)
    fixture = Fixture(raw_dir, {})
    size = (64, 48)
    folders = {ILSVRC_SYNSETS[0]: ILSVRC_SYNSETS[0], ILSVRC_BREED: ILSVRC_SYNSETS[0],
               ILSVRC_SYNSETS[1]: ILSVRC_SYNSETS[1], ILSVRC_OTHER: ILSVRC_OTHER}
    colour_of = {ILSVRC_SYNSETS[0]: COLOURS[0], ILSVRC_SYNSETS[1]: COLOURS[1], ILSVRC_OTHER: COLOURS[2]}
    for folder, wnid in folders.items():
        photos = build / "photos" / folder
        photos.mkdir(parents=True)
        (boxes / folder).mkdir(parents=True)
        for j in range(per_class):
            stem = f"{folder}_{100 + j}"
            box = (16 + j, 12, 48 + j, 36)
            objects = [(wnid, box)]
            image = np.asarray(_photo(size, box, colour_of[wnid])).copy()
            if j == 0:
                other = ILSVRC_OTHER if wnid == ILSVRC_SYNSETS[0] else ILSVRC_SYNSETS[0]
                objects.append((other, (0, 0, 8, 8)))
                image[0:8, 0:8] = colour_of[other]
            if j == 1:
                edge = (0, 30, 16, 48)
                objects.append((wnid, edge))
                image[edge[1]:edge[3], edge[0]:edge[2]] = colour_of[wnid]
            if j == 2 and folder == ILSVRC_BREED:
                objects.append((wnid, (60, 2, 61, 10)))  # one pixel wide
            Image.fromarray(image, "RGB").save(photos / f"{stem}.JPEG", quality=95)
            (boxes / folder / f"{stem}.xml").write_text(_imagenet_xml(folder, stem, size, objects))
            for number, (name, b) in enumerate(objects):
                if name in ILSVRC_SYNSETS and b[2] - b[0] > 1:
                    fixture.samples[f"{stem}_{number}"] = (name, "?")
                    fixture.extra[f"{stem}_{number}"] = {"box": b, "colour": colour_of[name],
                                                        "folder": folder}
        if layout == "2017":  # extracted: one folder of JPEGs per source folder
            shutil.copytree(photos, train / folder)
        else:  # the official train archive holds one tar per source folder
            with tarfile.open(train / f"{folder}.tar", "w") as tar:
                for photo in sorted(photos.iterdir()):
                    tar.add(photo, arcname=photo.name)
    if archived and layout == "2013":
        _pack(raw_dir / "ILSVRC2013_DET_train.tar", build, "ILSVRC2013_DET_train", "w")
        _pack(raw_dir / "ILSVRC2013_DET_bbox_train.tgz", build, "ILSVRC2013_DET_bbox_train",
              "w:gz")
    shutil.rmtree(build)
    fixture.checksums = _table(raw_dir, {
        "images": ("ILSVRC2013_DET_train.tar", "ILSVRC2013_DET_train"),
        "boxes": ("ILSVRC2013_DET_bbox_train.tgz", "ILSVRC2013_DET_bbox_train")})
    return fixture
