"""Real photographs with exact masks: Fashion-MNIST objects pasted onto photographed scenes.

The embedded synthetic set draws its objects and backgrounds; this set takes both from
photographs (docs/DATA.md, "The photographs dataset"):

- **Objects**: Fashion-MNIST (Xiao, Rasul and Vollgraf 2017; MIT licence), 70,000 28 x 28 grey
  photographs of clothing, each a centred item on a black background. The item's mask is its
  pixels above ``mask_threshold`` with the holes filled (``scipy.ndimage.binary_fill_holes``).
  The item (its tight box) is scaled to a random size and pasted at a random place fully
  inside the image: intensities bilinear, the mask nearest-neighbour, and the pasted pixels
  are exactly the mask's, so the mask is exact per pixel of the written image.
- **Backgrounds**: photographs that ship in scikit-image (``skimage/data``), each CC0 or public
  domain (:data:`BACKGROUND_LICENCES`). Each photograph is one habitat; a background is a random
  crop of it, resized to the image. As in the synthetic set, an image of class ``c`` gets its
  class's habitat (``c mod H``) with probability ``background_bias``, else a uniform one.

Two sets, like the synthetic ones: ``pretrain`` (the teacher's extra data, no bias: it plays
ImageNet, so the teacher has seen these classes before) from Fashion-MNIST's training split,
and ``target`` (12 images per class, bias 0.6) from the rest of the training split (train) and
the test split (test). Objects stay grey: the class is in the object's shape and texture, not
in a colour the background could also carry.

Sources of Fashion-MNIST, in order: the Debian package ``dataset-fashion-mnist`` (its files),
else the upstream download; either is checked against the pinned SHA-256 of the decompressed
files (:data:`FASHION_MNIST_SHA256`; Debian recompresses the archives, so the archives' own
checksums differ, their content does not).

    PYTHONPATH=src python -m kdconcepts.data.photos --params params.yaml --out data/photos
"""

from __future__ import annotations

import argparse
import copy
import gzip
import hashlib
import io
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image
from tqdm import tqdm

from kdconcepts.data.format import PreparedRecord, write_prepared

__all__ = ["BACKGROUND_LICENCES", "CLASSES", "FASHION_MNIST_SHA256", "PhotosSourceError",
           "fashion_mnist", "generate", "item_mask", "read_idx"]

#: Fashion-MNIST's classes, by label.
CLASSES = ("t_shirt_top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker",
           "bag", "ankle_boot")
#: SHA-256 of each file's decompressed content (computed from Debian's
#: dataset-fashion-mnist 0.0~git20200523.55506a9-1, 2026-12-03).
FASHION_MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte.gz": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte.gz": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte.gz": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
#: Each background photograph of scikit-image's ``skimage/data`` and its licence, as its
#: docstring in ``skimage.data`` states it (scikit-image 0.26.0).
BACKGROUND_LICENCES = {
    "brick.png": "CC0 (CC0Textures, Bricks25)",
    "grass.png": "CC0 (DeviantArt, linolafett, Grass-01)",
    "gravel.png": "CC0 (CC0Textures, Gravel04)",
    "coffee.png": "CC0 (Rachel Michetti, Pikolo Espresso Bar)",
    "rocket.jpg": "public domain (SpaceX, DSCOVR launch)",
    "hubble_deep_field.jpg": "public domain (NASA, HubbleSite)",
    "camera.png": "CC0 (Lav Varshney)",
    "chelsea.png": "CC0 (Stefan van der Walt)",
    "astronaut.png": "public domain (NASA)",
    "retina.jpg": "CC0 (Mikael Haggstrom, Wikimedia)",
}
SET_CODES = {"pretrain": 0, "target": 1}
SPLIT_CODES = {"train": 0, "test": 1}

DEFAULT_PARAMS: dict[str, Any] = {
    "seed": 0,
    "image_size": 32,
    "object_scale": [0.6, 0.9],
    "crop_scale": [0.2, 0.5],
    "mask_threshold": 8,
    "backgrounds": ["brick.png", "grass.png", "gravel.png", "coffee.png", "rocket.jpg",
                    "hubble_deep_field.jpg", "camera.png", "chelsea.png"],
    "sources": {"debian": "/usr/share/datasets/fashion-mnist",
                "url": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                "cache": "data/raw/fashion-mnist"},
    "pretrain": {"train_per_class": 500, "test_per_class": 50, "background_bias": 0.0},
    "target": {"train_per_class": 12, "test_per_class": 50, "background_bias": 0.6},
}


class PhotosSourceError(RuntimeError):
    """Fashion-MNIST or a background photograph could not be found or failed its check."""


# --- sources ---------------------------------------------------------------------------------


def read_idx(data: bytes, where: str = "IDX data") -> np.ndarray:
    """An IDX array (the MNIST file format: big-endian magic, dimensions, then uint8 values)."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise PhotosSourceError(f"{where} is not an unsigned-byte IDX file (magic {data[:4].hex()})")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * k: 8 + 4 * k], "big") for k in range(ndim))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise PhotosSourceError(f"{where} holds {body.size} values, its header says {shape}")
    return body.reshape(shape)


def _checked(name: str, compressed: bytes, where: str, checksums: Mapping[str, str]) -> bytes:
    try:
        raw = gzip.decompress(compressed)
    except (OSError, EOFError) as error:
        raise PhotosSourceError(f"{where} is not a gzip file ({error})") from None
    digest = hashlib.sha256(raw).hexdigest()
    if digest != checksums[name]:
        raise PhotosSourceError(f"{where}: SHA-256 of its content is {digest}, expected {checksums[name]} "
                                f"(kdconcepts.data.photos.FASHION_MNIST_SHA256); a different or damaged file")
    return raw


def fashion_mnist(sources: Mapping[str, str], checksums: Mapping[str, str] = FASHION_MNIST_SHA256
                  ) -> dict[str, np.ndarray]:
    """Fashion-MNIST's four arrays (``train_images``, ``train_labels``, ``test_images``,
    ``test_labels``), read from the Debian package's folder, else downloaded into the cache,
    each checked against ``checksums``.

    Raises:
        PhotosSourceError: a file found but wrong (named), or neither source available (one
            message naming both).
    """
    out = {}
    for name in checksums:
        local = Path(sources["debian"]) / name
        cached = Path(sources["cache"]) / name
        if local.is_file():
            raw = _checked(name, local.read_bytes(), str(local), checksums)
        elif cached.is_file():
            raw = _checked(name, cached.read_bytes(), str(cached), checksums)
        else:
            url = sources["url"].rstrip("/") + "/" + name
            try:
                with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 (a pinned https/http URL)
                    compressed = response.read()
            except (OSError, ValueError) as error:
                raise PhotosSourceError(
                    f"Fashion-MNIST's {name} was not found: not in {sources['debian']} "
                    f"(apt-get install dataset-fashion-mnist) and not downloadable from {url} "
                    f"({error})") from None
            raw = _checked(name, compressed, url, checksums)
            cached.parent.mkdir(parents=True, exist_ok=True)
            cached.write_bytes(compressed)
        key = name.split("-")[0].replace("t10k", "test") + "_" + name.split("-")[1]
        out[key] = read_idx(raw, name)
    return out


def background_photos(names, folder: str | Path | None = None) -> list[np.ndarray]:
    """The background photographs as float RGB arrays in [0, 1], from scikit-image's bundled
    data (or ``folder``, for tests)."""
    if folder is None:
        from importlib.resources import files
        try:
            folder = Path(str(files("skimage") / "data"))
        except ModuleNotFoundError:
            raise PhotosSourceError("scikit-image is not installed (it is in envs/requirements.lock: "
                                    "make venv)") from None
    photos = []
    for name in names:
        path = Path(folder) / name
        if not path.is_file():
            raise PhotosSourceError(f"background photograph {path} not found")
        with Image.open(path) as image:
            photos.append(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0)
    return photos


# --- one image ---------------------------------------------------------------------------------


def item_mask(item: np.ndarray, threshold: int) -> np.ndarray:
    """The clothing item's mask: pixels above ``threshold``, holes filled."""
    from scipy import ndimage

    return ndimage.binary_fill_holes(item > threshold)


def _resize(array: np.ndarray, size: tuple[int, int], resample) -> np.ndarray:
    """(width, height) resize of a 2-D float array or a bool mask."""
    if array.dtype == bool:
        image = Image.fromarray(array.astype(np.uint8) * 255)
        return np.asarray(image.resize(size, resample)) >= 128
    return np.asarray(Image.fromarray(array.astype(np.float32), mode="F").resize(size, resample))


def render(rng: np.random.Generator, item: np.ndarray, photo: np.ndarray, params: Mapping[str, Any]
           ) -> tuple[np.ndarray, np.ndarray]:
    """One image (uint8 RGB, S x S) and its exact mask: the item pasted onto a crop of the photo."""
    size = int(params["image_size"])
    height, width = photo.shape[:2]
    side = int(round(rng.uniform(*params["crop_scale"]) * min(height, width)))
    top, left = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
    crop = photo[top:top + side, left:left + side]
    background = np.stack([_resize(crop[..., c], (size, size), Image.BILINEAR) for c in range(3)], -1)
    mask = item_mask(item, int(params["mask_threshold"]))
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    grey, mask = item[box].astype(np.float32) / 255.0, mask[box]
    scale = rng.uniform(*params["object_scale"]) * size / max(grey.shape)
    out_h, out_w = (max(1, min(size, int(round(n * scale)))) for n in grey.shape)
    grey = np.clip(_resize(grey, (out_w, out_h), Image.BILINEAR), 0.0, 1.0)
    mask = _resize(mask, (out_w, out_h), Image.NEAREST)
    y, x = int(rng.integers(0, size - out_h + 1)), int(rng.integers(0, size - out_w + 1))
    full = np.zeros((size, size), dtype=bool)
    full[y:y + out_h, x:x + out_w] = mask
    image = background.copy()
    image[y:y + out_h, x:x + out_w][mask] = grey[mask][:, None]
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8), full


# --- the sets ----------------------------------------------------------------------------------


def resolve_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """``params`` over :data:`DEFAULT_PARAMS`; an unknown key is refused by name."""
    out = copy.deepcopy(DEFAULT_PARAMS)
    for key, value in (params or {}).items():
        if key not in out:
            raise ValueError(f"photos.{key}: unknown parameter (known: {', '.join(out)})")
        if isinstance(out[key], dict):
            unknown = set(value) - set(out[key])
            if unknown:
                raise ValueError(f"photos.{key}.{sorted(unknown)[0]}: unknown parameter")
            out[key].update(value)
        else:
            out[key] = value
    for name in ("pretrain", "target"):
        bias = out[name]["background_bias"]
        if not 0.0 <= float(bias) <= 1.0:
            raise ValueError(f"photos.{name}.background_bias = {bias} is not in [0, 1]")
    for key in ("object_scale", "crop_scale"):
        low, high = out[key]
        if not 0.0 < low <= high <= 1.0:
            raise ValueError(f"photos.{key} = {out[key]} must be 0 < low <= high <= 1")
    if int(out["image_size"]) < 8:
        raise ValueError(f"photos.image_size = {out['image_size']} is below 8")
    return out


def _pools(arrays: Mapping[str, np.ndarray], params: Mapping[str, Any]) -> dict[tuple[str, str], list[np.ndarray]]:
    """Per (set, split), the Fashion-MNIST indices of each class, disjoint across sets: the
    pre-training set and the target's train split come from Fashion-MNIST's training split (in
    a seeded order), the target's test split from its test split."""
    rng = np.random.default_rng([int(params["seed"]), 99])
    pools = {}
    train_order = [rng.permutation(np.flatnonzero(arrays["train_labels"] == c)) for c in range(len(CLASSES))]
    test_order = [rng.permutation(np.flatnonzero(arrays["test_labels"] == c)) for c in range(len(CLASSES))]
    n_pre = int(params["pretrain"]["train_per_class"]) + int(params["pretrain"]["test_per_class"])
    n_target = int(params["target"]["train_per_class"])
    for c in range(len(CLASSES)):
        if len(train_order[c]) < n_pre + n_target or len(test_order[c]) < int(params["target"]["test_per_class"]):
            raise ValueError(f"Fashion-MNIST has too few images of class {CLASSES[c]} for these counts")
    pools[("pretrain", "train")] = [o[: int(params["pretrain"]["train_per_class"])] for o in train_order]
    pools[("pretrain", "test")] = [o[int(params["pretrain"]["train_per_class"]): n_pre] for o in train_order]
    pools[("target", "train")] = [o[n_pre: n_pre + n_target] for o in train_order]
    pools[("target", "test")] = [o[: int(params["target"]["test_per_class"])] for o in test_order]
    return pools


def _records(set_name: str, params, arrays, photos, pools, drawn: list, progress) -> Iterator[PreparedRecord]:
    section = params[set_name]
    n_classes, n_habitats = len(CLASSES), len(photos)
    for split in ("train", "test"):
        source = arrays["train_images"] if (set_name, split) != ("target", "test") else arrays["test_images"]
        for index in range(int(section[f"{split}_per_class"]) * n_classes):
            label = index % n_classes  # interleaved: every class equally often
            rng = np.random.default_rng([int(params["seed"]), SET_CODES[set_name], SPLIT_CODES[split], index])
            habitat = label % n_habitats if rng.uniform() < float(section["background_bias"]) \
                else int(rng.integers(n_habitats))
            item = source[pools[(set_name, split)][label][index // n_classes]]
            image, mask = render(rng, item, photos[habitat], params)
            image_id = f"{split}_{index:05d}"
            drawn.append((image_id, habitat))
            progress.update(1)
            yield PreparedRecord(image_id, image, mask, label, CLASSES[label], split)


def generate(out_dir: str | Path, params: Mapping[str, Any] | None = None, *,
             sets: tuple[str, ...] = ("pretrain", "target"),
             checksums: Mapping[str, str] = FASHION_MNIST_SHA256,
             background_folder: str | Path | None = None) -> dict[str, Path]:
    """Write the pre-training and target sets into ``out_dir/pretrain`` and ``out_dir/target``.

    Args:
        params: the ``photos`` section of params.yaml (missing keys: :data:`DEFAULT_PARAMS`).
        checksums, background_folder: for tests (a small fixture in the same formats).
    """
    params = resolve_params(params)
    arrays = fashion_mnist(params["sources"], checksums)
    photos = background_photos(params["backgrounds"], background_folder)
    pools = _pools(arrays, params)
    written = {}
    for set_name in sets:
        section = params[set_name]
        total = (int(section["train_per_class"]) + int(section["test_per_class"])) * len(CLASSES)
        drawn: list[tuple[str, int]] = []
        meta = {"name": f"photos-{set_name}", "classes": list(CLASSES), "foreground": "mask",
                "generator": "kdconcepts.data.photos", "background_bias": section["background_bias"],
                "habitats": list(params["backgrounds"]),
                "background_licences": {n: BACKGROUND_LICENCES.get(n, "unknown") for n in params["backgrounds"]},
                "objects": "Fashion-MNIST (Zalando SE, MIT licence)", "params": params}
        with tqdm(total=total, desc=f"photos {set_name}", unit="img", file=sys.stderr, disable=None) as bar:
            written[set_name] = write_prepared(
                Path(out_dir) / set_name, _records(set_name, params, arrays, photos, pools, drawn, bar), meta,
                extra_files={"habitats.csv": lambda d=drawn: _habitats_csv(d, params["backgrounds"])})
    return written


def _habitats_csv(drawn, names) -> str:
    out = io.StringIO()
    out.write("id,habitat,habitat_name\n")
    for image_id, habitat in drawn:
        out.write(f"{image_id},{habitat},{names[habitat]}\n")
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    """``python -m kdconcepts.data.photos --params params.yaml --out data/photos``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--out", type=Path, default=Path("data/photos"))
    args = parser.parse_args(argv)
    if not args.params.is_file():
        parser.error(f"params file not found: {args.params}")
    document = yaml.safe_load(args.params.read_text(encoding="utf-8")) or {}
    if "photos" not in document:
        parser.error(f"{args.params} has no 'photos' section")
    start = time.perf_counter()
    try:
        written = generate(args.out, document["photos"])
    except (ValueError, PhotosSourceError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {', '.join(map(str, written.values()))} in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
