"""Shared machinery of the real-dataset stages (CUB-200-2011, VOC 2012, ILSVRC-2013 DET).

Each ``prepare_<name>`` function reads the official archives (or their extracted folders) from a
raw folder, checks every archive's size and md5 against :mod:`kdconcepts.data.checksums`,
extracts only the members it needs into a staging folder next to the output, and streams
object crops and foreground masks through :func:`kdconcepts.data.format.write_prepared`, which
writes a temporary folder renamed into place only when complete. The staging folder is always
removed. So a failure (bad checksum, missing file, malformed annotation, mask of the wrong
size) leaves no partial output.

The output is the prepared format of docs/ARCHITECTURE.md: ``images/<id>.png``,
``masks/<id>.png`` (255 = foreground), ``index.csv``, ``meta.json``; plus ``provenance.json``
(which archives were read, their md5 values, whether they were verified, the recipe's params,
what was skipped and why).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import inspect
import json
import logging
import math
import os
import shutil
import sys
import tarfile
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from PIL import Image

from kdconcepts.data.checksums import OfficialArchive
from kdconcepts.data import DatasetFormatError

__all__ = [
    "RawDataError",
    "ChecksumError",
    "file_md5",
    "verify_archive",
    "extract_tar",
    "open_official_source",
    "scale_box",
    "crop_and_resize",
    "open_rgb",
    "open_mask",
    "provenance_text",
    "staging_dir",
    "staged",
    "run_stage",
]

log = logging.getLogger("kdconcepts.data")



class RawDataError(ValueError):
    """Raw (official) input missing, malformed or inconsistent; the message names the file."""


class ChecksumError(RawDataError):
    """An official archive's size or md5 differs from the official value."""


# ----------------------------------------------------------------------------- checksums

def file_md5(path: str | Path, chunk_bytes: int = 8 << 20) -> str:
    """Hex md5 of a file, read in chunks (archives are gigabytes)."""
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk_bytes), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_archive(path: str | Path, expected: OfficialArchive, *, verify: bool = True) -> dict:
    """Check an archive's size and md5 against the official values.

    Args:
        path: the archive file.
        expected: its official record (``size``/``md5`` may be ``None`` = unknown).
        verify: ``False`` skips the comparison with a loud warning (the md5 is still recorded).

    Returns:
        A provenance record ``{"file", "size", "md5", "verified"}``.

    Raises:
        ChecksumError: naming the file, the expected and the found size and md5, and the URL.
    """
    path = Path(path)
    size = path.stat().st_size
    md5 = file_md5(path)
    record = {"file": path.name, "size": size, "md5": md5, "verified": False}
    if not verify:
        log.warning("CHECKSUM VERIFICATION IS OFF (verify: false): %s is used unchecked "
                    "(size %d, md5 %s). Results may not match the paper's data.", path, size, md5)
        return record
    if expected.size is None and expected.md5 is None:
        log.warning("NO OFFICIAL CHECKSUM KNOWN for %s: it cannot be verified (found size %d, "
                    "md5 %s); see docs/DATASETS.md.", path, size, md5)
        return record
    size_bad = expected.size is not None and size != expected.size
    md5_bad = expected.md5 is not None and md5 != expected.md5.lower()
    if size_bad or md5_bad:
        raise ChecksumError(
            f"{path} is not the official {expected.filename}: expected size "
            f"{expected.size} bytes and md5 {expected.md5}, found size {size} bytes and md5 "
            f"{md5}. The file is corrupt, truncated or a different release; obtain it from "
            f"{expected.url}.")
    record["verified"] = True
    return record


# ----------------------------------------------------------------------------- extraction

def extract_tar(archive: str | Path, dest: str | Path, wanted: Callable[[str], bool]) -> int:
    """Extract the members of a (possibly compressed) tar whose name passes ``wanted``.

    Streams the archive once (gzip is not seekable) and uses tarfile's ``data`` filter, so
    absolute paths, ``..`` and links out of ``dest`` are refused.

    Returns:
        The number of files extracted.

    Raises:
        RawDataError: the archive cannot be read (corrupt or truncated).
    """
    count = seen = 0
    try:
        with tarfile.open(archive, mode="r|*") as tar:
            for member in tar:
                seen += 1
                if member.isfile() and wanted(member.name):
                    tar.extract(member, dest, filter="data")
                    count += 1
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise RawDataError(f"cannot read archive {archive}: {exc} (corrupt or truncated; "
                           f"obtain it again)") from exc
    if seen == 0:  # stream mode reads a garbled gzip as an empty archive
        raise RawDataError(f"cannot read archive {archive}: no members (corrupt, truncated "
                           f"or not a tar; obtain it again)")
    return count


def open_official_source(raw_dir: str | Path, archive: OfficialArchive, staging: Path,
                         wanted: Callable[[str], bool], *, verify: bool = True
                         ) -> tuple[Path, dict]:
    """Find one official input under ``raw_dir``: the archive (verified, then extracted) or
    its already-extracted folder.

    Args:
        raw_dir: the raw folder (``data/raw/<name>/``).
        archive: official record; ``archive.filename`` or the folder ``archive.folder``.
        staging: where archive members are extracted.
        wanted: which member paths to extract (paths start with ``archive.folder``).
        verify: compare size and md5 with the official values.

    Returns:
        ``(root, provenance)`` where ``root / archive.folder`` is the extracted folder.

    Raises:
        RawDataError: neither the archive nor the folder is there.
        ChecksumError: the archive's size or md5 is wrong.
    """
    raw_dir = Path(raw_dir)
    archive_path = raw_dir / archive.filename
    folder_path = raw_dir / archive.folder
    if archive_path.is_file():
        record = verify_archive(archive_path, archive, verify=verify)
        n = extract_tar(archive_path, staging, wanted)
        log.info("extracted %d files from %s", n, archive_path.name)
        if not (staging / archive.folder).is_dir():
            raise RawDataError(f"{archive_path} has no top-level folder {archive.folder}/ "
                               f"among the members needed; is it the official archive?")
        return staging, record
    if folder_path.is_dir():
        log.warning("using the extracted folder %s: the official archive %s is not there, so "
                    "its checksum is not verified", folder_path, archive.filename)
        return raw_dir, {"file": archive.folder + "/", "size": None, "md5": None,
                         "verified": False}
    raise RawDataError(f"missing official input: neither {archive_path} nor the extracted "
                       f"folder {folder_path}/ exists; obtain {archive.filename} from "
                       f"{archive.url} and put it in {raw_dir}/")


@contextlib.contextmanager
def staged(out_dir: Path, raw_dir: str | Path) -> Iterator[Path]:
    """A staging folder for extracted archive members, always removed afterwards.

    Error messages that name a file inside it are rewritten to name the raw folder instead
    (``<raw_dir>/[archive]/...``): the staging path is gone by the time the user reads them.
    """
    staging = staging_dir(out_dir, "raw")
    try:
        yield staging
    except RawDataError as exc:
        message = str(exc).replace(str(staging), f"{raw_dir}/[archive]")
        if message == str(exc):
            raise
        raise type(exc)(message) from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def staging_dir(out_dir: Path, purpose: str) -> Path:
    """A fresh hidden folder next to ``out_dir`` (same filesystem, so rename is atomic)."""
    path = out_dir.parent / f".{out_dir.name}.{purpose}-{os.getpid()}"
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


# ----------------------------------------------------------------------------- crops

Box = tuple[float, float, float, float]


def scale_box(box: Box, factor: float) -> Box:
    """Scale a box ``(x0, y0, x1, y1)`` about its centre by ``factor`` in width and height."""
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    half_w, half_h = (x1 - x0) * factor / 2, (y1 - y0) * factor / 2
    return (cx - half_w, cy - half_h, cx + half_w, cy + half_h)


def _int_box(box: Box) -> tuple[int, int, int, int]:
    x0, y0 = math.floor(box[0]), math.floor(box[1])
    x1, y1 = max(math.ceil(box[2]), x0 + 1), max(math.ceil(box[3]), y0 + 1)
    return x0, y0, x1, y1


def crop_and_resize(image: Image.Image, box: Box, size: int, *, outside: str = "clip",
                    fill: int | tuple[int, ...] = 0, resample: int = Image.BILINEAR
                    ) -> Image.Image:
    """Crop ``box`` (pixel coordinates, may exceed the image) and resize to ``size x size``.

    Args:
        image: PIL image (RGB photo or L mask).
        box: ``(x0, y0, x1, y1)``; x1/y1 exclusive.
        size: output side S (aspect ratio is not kept, as the authors' ``Resize((S, S))``).
        outside: ``"clip"`` cuts the box to the image first; ``"pad"`` keeps the box and fills
            the part outside the image with ``fill`` (keeps the object centred).
        fill: pad value.
        resample: PIL filter (bilinear for photos, nearest for masks).
    """
    if outside == "clip":
        box = (max(box[0], 0), max(box[1], 0), min(box[2], image.width), min(box[3], image.height))
    elif outside != "pad":
        raise ValueError(f"outside must be 'clip' or 'pad', got {outside!r}")
    x0, y0, x1, y1 = _int_box(box)
    canvas = Image.new(image.mode, (x1 - x0, y1 - y0), fill)
    ix0, iy0 = max(x0, 0), max(y0, 0)
    ix1, iy1 = min(x1, image.width), min(y1, image.height)
    if ix1 > ix0 and iy1 > iy0:
        canvas.paste(image.crop((ix0, iy0, ix1, iy1)), (ix0 - x0, iy0 - y0))
    return canvas.resize((size, size), resample=resample)


def open_rgb(path: Path) -> Image.Image:
    """Open a photo as RGB, naming the file on failure."""
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except FileNotFoundError:
        raise RawDataError(f"missing image file {path}") from None
    except OSError as exc:
        raise RawDataError(f"cannot read image {path}: {exc}") from exc


def open_mask(path: Path, expected_size: tuple[int, int], *, mode: str | None = None
              ) -> Image.Image:
    """Open a mask/label PNG and check it has the photo's size ``(width, height)``.

    Args:
        mode: convert to this PIL mode (``None`` keeps the stored one, e.g. ``P`` indices).
    """
    try:
        with Image.open(path) as img:
            img.load()
            mask = img.convert(mode) if mode else img.copy()
    except FileNotFoundError:
        raise RawDataError(f"missing mask file {path}") from None
    except OSError as exc:
        raise RawDataError(f"cannot read mask {path}: {exc}") from exc
    if mask.size != tuple(expected_size):
        raise RawDataError(f"mask {path} has size {mask.size[0]}x{mask.size[1]} but its image "
                           f"is {expected_size[0]}x{expected_size[1]} (width x height)")
    return mask


def provenance_text(provenance: Mapping[str, Any]) -> str:
    """``provenance.json`` content: sorted keys, so equal inputs give equal bytes."""
    return json.dumps(dict(provenance), indent=2, sort_keys=True, default=str) + "\n"


# ----------------------------------------------------------------------------- stage CLI

def run_stage(argv: Sequence[str] | None, *, key: str, prepare: Callable[..., Path],
              description: str) -> int:
    """Command line of a DVC stage: ``--raw DIR --out DIR --params params.yaml``.

    The params file's top-level ``key`` holds the keyword arguments of ``prepare``.
    Errors about the raw data are printed as one clear message and exit with status 1.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--raw", required=True, type=Path, help="raw folder (data/raw/<name>)")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"),
                        help=f"params file with a top-level '{key}' mapping")
    parser.add_argument("--key", default=key,
                        help=f"the params file's key to read (default {key}; e.g. {key}_quick)")
    args = parser.parse_args(argv)
    key = args.key
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    with open(args.params, encoding="utf-8") as fh:
        params = (yaml.safe_load(fh) or {}).get(key)
    if not isinstance(params, dict):
        parser.error(f"{args.params} has no '{key}' mapping")
    accepted = set(inspect.signature(prepare).parameters) - {"raw_dir", "out_dir", "checksums"}
    unknown = sorted(set(params) - accepted)
    if unknown:
        parser.error(f"unknown '{key}' params in {args.params}: {unknown}; "
                     f"allowed: {sorted(accepted)}")
    try:
        prepare(args.raw, args.out, **params)
    except (RawDataError, DatasetFormatError) as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    return 0
