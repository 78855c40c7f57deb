"""Reader and writer of the prepared-dataset format (docs/ARCHITECTURE.md, docs/DATA.md).

A prepared dataset is a folder ``<root>/`` with ``images/<id>.png`` (RGB, 8 bit, S x S),
``masks/<id>.png`` (8-bit greyscale, 255 = foreground, 0 = background), ``index.csv``
(columns ``id``, ``label``, ``class_name``, ``split``; row order is the canonical image
order) and ``meta.json`` (name, image_size S, num_classes C, classes, mean, std,
foreground). Every dataset of the project, synthetic or real, is written with
:func:`write_prepared` and read with :func:`load_split`.

Example:
    >>> import tempfile, numpy as np
    >>> tmp = Path(tempfile.mkdtemp())
    >>> recs = [PreparedRecord(f"im{i}", np.zeros((8, 8, 3), np.uint8),
    ...                        np.ones((8, 8), bool), i % 2, f"c{i % 2}", "train")
    ...         for i in range(4)]
    >>> root = write_prepared(tmp / "toy", recs, {"name": "toy", "classes": ["c0", "c1"]})
    >>> load_split(root, "train").images.shape
    torch.Size([4, 3, 8, 8])
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

if TYPE_CHECKING:  # torch is imported lazily so the data generator does not pay for it
    import torch

INDEX_COLUMNS = ("id", "label", "class_name", "split")
SPLITS = ("train", "test")
FOREGROUND_KINDS = ("mask", "box", "central")
META_KEYS = ("name", "image_size", "num_classes", "classes", "mean", "std", "foreground")
# File stems must be safe on every file system and inside CSV without quoting.
_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


class DatasetFormatError(ValueError):
    """A prepared dataset (or a record to be written) breaks the documented format."""


@dataclass(frozen=True)
class PreparedRecord:
    """One image of a prepared dataset, as handed to :func:`write_prepared`.

    Attributes:
        id: File stem, unique in the dataset (letters, digits, ``_ . -``).
        image: uint8 array [S, S, 3] (RGB).
        mask: Array [S, S]; bool, or uint8 with 255 = foreground and 0 = background.
        label: Class index in 0..C-1.
        class_name: Name of the class; must equal ``meta["classes"][label]``.
        split: ``"train"`` or ``"test"``.
    """

    id: str
    image: np.ndarray
    mask: np.ndarray
    label: int
    class_name: str
    split: str


@dataclass(frozen=True)
class IndexRow:
    """One parsed row of ``index.csv``."""

    id: str
    label: int
    class_name: str
    split: str


@dataclass
class LabelledImages:
    """In-memory split of a prepared dataset.

    Attributes:
        images: float32 [N, 3, S, S], normalised with ``meta["mean"]``/``meta["std"]``
            (the dataset's, or ImageNet's with ``normalize="imagenet"``), or in [0, 1] when
            loaded with ``normalize="none"``.
        masks: bool [N, S, S], True on the object (foreground).
        labels: int64 [N], class indices.
        ids: Image ids (file stems), in canonical order.
        meta: The dataset's ``meta.json``.
        skipped: (id, reason) of rows left out (only with ``on_bad="skip"``).
    """

    images: torch.Tensor
    masks: torch.Tensor
    labels: torch.Tensor
    ids: list[str]
    meta: dict[str, Any] = field(repr=False)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def class_names(self) -> list[str]:
        """Class names indexed by label."""
        return list(self.meta["classes"])


# --------------------------------------------------------------------------- reading


def read_meta(root: str | os.PathLike) -> dict[str, Any]:
    """Read and validate ``<root>/meta.json``.

    Args:
        root: Prepared dataset folder.

    Returns:
        The meta dict (all keys of the format present and consistent).

    Raises:
        FileNotFoundError: The folder or its meta.json is missing.
        DatasetFormatError: A key is missing or has a wrong value.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"prepared dataset folder not found: {root}")
    path = root / "meta.json"
    if not path.is_file():
        raise FileNotFoundError(f"missing {path} (is {root} a prepared dataset?)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DatasetFormatError(f"{path}: not valid JSON: {err}") from err
    _validate_meta(meta, where=str(path))
    return meta


def read_index(root: str | os.PathLike, num_classes: int | None = None,
               classes: list[str] | None = None) -> list[IndexRow]:
    """Read and validate ``<root>/index.csv``.

    Args:
        root: Prepared dataset folder.
        num_classes: If given, labels must lie in 0..num_classes-1.
        classes: If given, ``class_name`` must equal ``classes[label]``.

    Returns:
        The rows in canonical order.

    Raises:
        FileNotFoundError: index.csv is missing.
        DatasetFormatError: Wrong header, or a bad row (the row number and id are named).
    """
    path = Path(root) / "index.csv"
    if not path.is_file():
        raise FileNotFoundError(f"missing {path}")
    rows: list[IndexRow] = []
    seen: set[str] = set()
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or tuple(header) != INDEX_COLUMNS:
            raise DatasetFormatError(f"{path}: header must be {','.join(INDEX_COLUMNS)}, "
                                     f"got {header}")
        for line_no, fields in enumerate(reader, start=2):
            where = f"{path} line {line_no}"
            if len(fields) != len(INDEX_COLUMNS):
                raise DatasetFormatError(f"{where}: expected {len(INDEX_COLUMNS)} fields, "
                                         f"got {len(fields)}: {fields}")
            image_id, label_text, class_name, split = fields
            if not _ID_PATTERN.match(image_id):
                raise DatasetFormatError(f"{where}: bad id {image_id!r}")
            if image_id in seen:
                raise DatasetFormatError(f"{where}: duplicate id {image_id!r}")
            seen.add(image_id)
            try:
                label = int(label_text)
            except ValueError:
                raise DatasetFormatError(f"{where} (id={image_id}): label {label_text!r} "
                                         f"is not an integer") from None
            _check_label(label, class_name, num_classes, classes, f"{where} (id={image_id})")
            if split not in SPLITS:
                raise DatasetFormatError(f"{where} (id={image_id}): split {split!r} "
                                         f"not in {SPLITS}")
            rows.append(IndexRow(image_id, label, class_name, split))
    return rows


#: ImageNet's per-channel statistics, which ImageNet-pretrained torchvision weights expect
#: (SPEC section 7: the authors' inputs are ImageNet-normalised).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: How :func:`load_split` normalises: the dataset's own train statistics (``meta.json``),
#: ImageNet's, or not at all (pixels in [0, 1]). The config key ``dataset.normalize``.
NORMALIZATIONS = ("dataset", "imagenet", "none")


def normalization(normalize: bool | str, meta: Mapping[str, Any]) -> tuple[Any, Any] | None:
    """The (mean, std) that ``normalize`` applies to a dataset with ``meta``, or None.

    ``True`` and ``False`` are the older spellings of ``"dataset"`` and ``"none"``.
    """
    name = ("dataset" if normalize else "none") if isinstance(normalize, bool) else normalize
    if name == "dataset":
        return meta["mean"], meta["std"]
    if name == "imagenet":
        return IMAGENET_MEAN, IMAGENET_STD
    if name == "none":
        return None
    raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")


def load_split(root: str | os.PathLike, split: str, *, normalize: bool | str = "dataset",
               on_bad: str = "raise") -> LabelledImages:
    """Load one split of a prepared dataset into memory.

    Images x are scaled to [0, 1] and, by default, normalised per channel:
    x_c <- (x_c - mean_c) / std_c with the train-split statistics of ``meta.json``.

    Args:
        root: Prepared dataset folder.
        split: ``"train"`` or ``"test"``.
        normalize: ``"dataset"`` (default: the mean/std of ``meta.json``), ``"imagenet"``
            (:data:`IMAGENET_MEAN`/:data:`IMAGENET_STD`, what an ImageNet-initialised network
            expects) or ``"none"`` (images in [0, 1]). The returned ``meta`` then holds the
            mean and std that were applied, so :func:`denormalize` undoes them.
        on_bad: ``"raise"`` (default): a missing, unreadable or mis-sized image or mask is an
            error naming the file; ``"skip"``: leave that row out and record it in
            ``skipped`` (for ad-hoc use such as ``kdconcepts quantify --skip-bad``).

    Returns:
        A :class:`LabelledImages` in the canonical (index.csv) order.

    Raises:
        FileNotFoundError: Folder, meta.json, index.csv, an image or a mask is missing.
        DatasetFormatError: Bad meta or row, an image or mask that cannot be read (truncated,
            not a PNG) or has the wrong size or mode, or no row in the split; the message names
            the file.
    """
    import torch

    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    normalization(normalize, {"mean": None, "std": None})  # a bad value before any file is read
    if on_bad not in ("raise", "skip"):
        raise ValueError(f"on_bad must be 'raise' or 'skip', got {on_bad!r}")
    root = Path(root)
    meta = read_meta(root)
    size = int(meta["image_size"])
    rows = [row for row in read_index(root, meta["num_classes"], meta["classes"])
            if row.split == split]
    if not rows:
        raise DatasetFormatError(f"{root}/index.csv has no row with split {split!r}")
    images = np.empty((len(rows), size, size, 3), dtype=np.uint8)
    masks = np.empty((len(rows), size, size), dtype=bool)
    kept, skipped = [], []
    for row in rows:
        try:
            image = _read_png(root / "images" / f"{row.id}.png", size, ("RGB",))
            mask = _read_png(root / "masks" / f"{row.id}.png", size, ("L", "1")) >= 128
        except (FileNotFoundError, DatasetFormatError) as error:
            if on_bad == "raise":
                raise
            skipped.append((row.id, str(error)))
            continue
        images[len(kept)], masks[len(kept)] = image, mask
        kept.append(row)
    if not kept:
        raise DatasetFormatError(f"{root}: no readable image in split {split!r} "
                                 f"({len(skipped)} skipped, first: {skipped[0][1]})")
    rows, images, masks = kept, images[:len(kept)], masks[:len(kept)]
    image_tensor = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)
    stats = normalization(normalize, meta)
    if stats is not None:
        mean = torch.tensor(stats[0], dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(stats[1], dtype=torch.float32).view(1, 3, 1, 1)
        image_tensor = (image_tensor - mean) / std
        if stats != (meta["mean"], meta["std"]):  # what denormalize must undo
            meta = {**meta, "mean": list(stats[0]), "std": list(stats[1])}
    return LabelledImages(
        images=image_tensor.contiguous(),
        masks=torch.from_numpy(masks),
        labels=torch.tensor([row.label for row in rows], dtype=torch.int64),
        ids=[row.id for row in rows],
        meta=meta,
        skipped=skipped,
    )


def denormalize(images: torch.Tensor, meta: dict[str, Any]) -> torch.Tensor:
    """Undo the mean/std normalisation of :func:`load_split`, for figures.

    Args:
        images: float [N, 3, S, S] or [3, S, S], normalised.
        meta: The dataset's meta dict.

    Returns:
        The images in [0, 1] (clamped), same shape.
    """
    import torch

    if images.dim() not in (3, 4) or images.shape[-3] != 3:
        raise ValueError(f"expected [N,3,S,S] or [3,S,S] images, got {tuple(images.shape)}")
    shape = (3, 1, 1) if images.dim() == 3 else (1, 3, 1, 1)
    mean = torch.tensor(meta["mean"], dtype=images.dtype, device=images.device).view(shape)
    std = torch.tensor(meta["std"], dtype=images.dtype, device=images.device).view(shape)
    return (images * std + mean).clamp(0.0, 1.0)


def data_hash(root: str | os.PathLike) -> str:
    """SHA-256 of a prepared dataset: index.csv, meta.json and every image and mask file.

    Used in checkpoint metadata to tie a network to the exact data it saw. Reads each file
    once (a few MB for the default dataset: well under a second).

    Args:
        root: Prepared dataset folder.

    Returns:
        Hex digest (64 characters).
    """
    root = Path(root)
    meta = read_meta(root)
    rows = read_index(root, meta["num_classes"], meta["classes"])
    digest = hashlib.sha256()
    for relative in ["index.csv", "meta.json"] + [
            f"{sub}/{row.id}.png" for row in rows for sub in ("images", "masks")]:
        path = root / relative
        if not path.is_file():
            raise FileNotFoundError(f"missing {path}")
        # Length-prefixed name + content so that moved bytes change the hash.
        content = path.read_bytes()
        digest.update(f"{relative}\0{len(content)}\0".encode())
        digest.update(content)
    return digest.hexdigest()


# --------------------------------------------------------------------------- writing


def write_prepared(root: str | os.PathLike, records: Iterable[PreparedRecord],
                   meta: dict[str, Any],
                   extra_files: Mapping[str, str | Callable[[], str]] | None = None) -> Path:
    """Write a prepared dataset atomically.

    Everything is written into a sibling folder ``<root>.tmp-XXXX`` that is renamed to
    ``<root>`` only when complete (an existing ``<root>`` is replaced), so an interrupted
    run never leaves a valid-looking dataset. ``records`` may be a generator (streamed).

    The writer fills in ``image_size`` (from the first record), ``num_classes`` (from
    ``classes``) and the per-channel ``mean``/``std`` of the train split in [0, 1] units
    (computed exactly from integer pixel sums, so they are reproducible).

    Args:
        root: Destination folder (its parent is created if needed).
        records: The images, in canonical order.
        meta: At least ``name`` and ``classes`` (names by label); optional ``foreground``
            (default ``"mask"``) and any extra keys, which are kept as they are.
            ``image_size``/``num_classes``/``mean``/``std``, if given, must agree with
            the data (mean/std are recomputed).
        extra_files: Optional text files written into the folder beside index.csv
            (name -> content, or a callable returning it, called after all records are
            written, so a generator can report what it drew).

    Returns:
        The path of the written dataset.

    Raises:
        DatasetFormatError: A bad record (id, shape, dtype, label, class name, split),
            duplicate id, no train image, or inconsistent meta. Nothing is left behind.
    """
    root = Path(root)
    meta = dict(meta)
    for key in ("name", "classes"):
        if key not in meta:
            raise DatasetFormatError(f"meta needs {key!r}")
    classes = list(meta["classes"])
    if not classes or not all(isinstance(name, str) and name for name in classes):
        raise DatasetFormatError(f"meta['classes'] must be non-empty names, got {classes}")
    if "num_classes" in meta and meta["num_classes"] != len(classes):
        raise DatasetFormatError(f"meta num_classes={meta['num_classes']} but "
                                 f"{len(classes)} classes")
    meta.setdefault("foreground", "mask")
    if meta["foreground"] not in FOREGROUND_KINDS:
        raise DatasetFormatError(f"meta foreground must be one of {FOREGROUND_KINDS}")

    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{root.name}.tmp-", dir=root.parent))
    try:
        (tmp / "images").mkdir()
        (tmp / "masks").mkdir()
        size = meta.get("image_size")
        seen: set[str] = set()
        # Exact integer sums over train pixels (per channel) for mean/std.
        pixel_sum = np.zeros(3, dtype=np.int64)
        pixel_sq_sum = np.zeros(3, dtype=np.int64)
        train_pixels = 0
        with (tmp / "index.csv").open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(INDEX_COLUMNS)
            for number, record in enumerate(records):
                where = f"record {number} (id={getattr(record, 'id', '?')!r})"
                image, mask = _check_record(record, size, len(classes), classes, where)
                size = image.shape[0]
                if record.id in seen:
                    raise DatasetFormatError(f"{where}: duplicate id")
                seen.add(record.id)
                _write_png(tmp / "images" / f"{record.id}.png", image)
                _write_png(tmp / "masks" / f"{record.id}.png", mask)
                writer.writerow((record.id, int(record.label), record.class_name,
                                 record.split))
                if record.split == "train":
                    flat = image.reshape(-1, 3).astype(np.int64)
                    pixel_sum += flat.sum(axis=0)
                    pixel_sq_sum += (flat * flat).sum(axis=0)
                    train_pixels += flat.shape[0]
        if train_pixels == 0:
            raise DatasetFormatError("no record with split 'train' (mean/std need it)")
        mean = pixel_sum / (train_pixels * 255.0)
        var = pixel_sq_sum / (train_pixels * 255.0**2) - mean**2
        std = np.sqrt(np.maximum(var, 1e-12))
        meta.update(image_size=int(size), num_classes=len(classes), classes=classes,
                    mean=[round(float(v), 6) for v in mean],
                    std=[round(float(v), 6) for v in std])
        ordered = {key: meta[key] for key in META_KEYS}
        ordered.update({key: value for key, value in meta.items() if key not in ordered})
        (tmp / "meta.json").write_text(json.dumps(ordered, indent=2) + "\n", encoding="utf-8")
        for name, content in (extra_files or {}).items():
            if "/" in name or name in ("index.csv", "meta.json", "images", "masks"):
                raise DatasetFormatError(f"bad extra file name {name!r}")
            text = content() if callable(content) else content
            (tmp / name).write_text(text, encoding="utf-8")
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700
        _replace_dir(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


# --------------------------------------------------------------------------- helpers


def _validate_meta(meta: Any, where: str) -> None:
    if not isinstance(meta, dict):
        raise DatasetFormatError(f"{where}: must hold a JSON object")
    missing = [key for key in META_KEYS if key not in meta]
    if missing:
        raise DatasetFormatError(f"{where}: missing key(s) {missing}")
    if not isinstance(meta["image_size"], int) or meta["image_size"] <= 0:
        raise DatasetFormatError(f"{where}: image_size must be a positive int")
    if not isinstance(meta["classes"], list) or len(meta["classes"]) != meta["num_classes"]:
        raise DatasetFormatError(f"{where}: classes must be a list of num_classes names")
    for key in ("mean", "std"):
        values = meta[key]
        if (not isinstance(values, list) or len(values) != 3
                or not all(isinstance(v, (int, float)) for v in values)):
            raise DatasetFormatError(f"{where}: {key} must be 3 numbers")
    if not all(v > 0 for v in meta["std"]):
        raise DatasetFormatError(f"{where}: std must be positive")
    if meta["foreground"] not in FOREGROUND_KINDS:
        raise DatasetFormatError(f"{where}: foreground must be one of {FOREGROUND_KINDS}")


def _check_label(label: int, class_name: str, num_classes: int | None,
                 classes: list[str] | None, where: str) -> None:
    if num_classes is not None and not 0 <= label < num_classes:
        raise DatasetFormatError(f"{where}: label {label} outside 0..{num_classes - 1}")
    if classes is not None and class_name != classes[label]:
        raise DatasetFormatError(f"{where}: class_name {class_name!r} does not match "
                                 f"classes[{label}] = {classes[label]!r}")


def _check_record(record: PreparedRecord, size: int | None, num_classes: int,
                  classes: list[str], where: str) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(record.id, str) or not _ID_PATTERN.match(record.id):
        raise DatasetFormatError(f"{where}: id must match {_ID_PATTERN.pattern}")
    if isinstance(record.label, bool) or not isinstance(record.label, (int, np.integer)):
        raise DatasetFormatError(f"{where}: label must be an int, got {record.label!r}")
    _check_label(int(record.label), record.class_name, num_classes, classes, where)
    if record.split not in SPLITS:
        raise DatasetFormatError(f"{where}: split {record.split!r} not in {SPLITS}")
    image = np.asarray(record.image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 \
            or image.shape[0] != image.shape[1]:
        raise DatasetFormatError(f"{where}: image must be uint8 [S,S,3], got "
                                 f"{image.dtype} {image.shape}")
    if size is not None and image.shape[0] != size:
        raise DatasetFormatError(f"{where}: image is {image.shape[0]}x{image.shape[1]}, "
                                 f"expected {size}x{size}")
    mask = np.asarray(record.mask)
    if mask.shape != image.shape[:2]:
        raise DatasetFormatError(f"{where}: mask shape {mask.shape} != image "
                                 f"{image.shape[:2]}")
    if mask.dtype == bool:
        mask = mask.astype(np.uint8) * 255
    elif mask.dtype == np.uint8 and np.isin(mask, (0, 255)).all():
        pass
    else:
        raise DatasetFormatError(f"{where}: mask must be bool or uint8 in {{0, 255}}")
    return image, mask


def _read_png(path: Path, size: int, modes: tuple[str, ...]) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"missing {path}")
    try:
        with Image.open(path) as img:
            if img.mode not in modes:
                raise DatasetFormatError(f"{path}: mode {img.mode}, expected {' or '.join(modes)}")
            if img.size != (size, size):
                raise DatasetFormatError(f"{path}: size {img.size[0]}x{img.size[1]}, expected "
                                         f"{size}x{size} (meta image_size)")
            # Pixels are decoded here: a truncated file fails now, not at Image.open.
            array = np.asarray(img.convert("L") if img.mode == "1" else img)
    except DatasetFormatError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise DatasetFormatError(f"{path}: cannot be read as an image ({error})") from None
    return array


def _write_png(path: Path, array: np.ndarray) -> None:
    # Pillow writes no timestamp, so equal arrays give equal bytes (for a given zlib).
    Image.fromarray(array).save(path, format="PNG", compress_level=6)


def _replace_dir(src: Path, dst: Path) -> None:
    """Rename a finished folder into place, replacing an existing one."""
    if dst.exists() or dst.is_symlink():
        # rename() cannot replace a non-empty directory: move the old one aside first.
        old = Path(tempfile.mkdtemp(prefix=f"{dst.name}.old-", dir=dst.parent))
        os.replace(dst, old / dst.name)
        os.replace(src, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dst)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
