"""The photographs dataset (kdconcepts.data.photos) on a tiny fixture in Fashion-MNIST's own file
format (gzipped IDX) and a few small photographs made here."""

import gzip
import hashlib

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from kdconcepts.data import load_split, read_meta
from kdconcepts.data import photos as P

N_PER_CLASS = {"train": 8, "t10k": 3}


def _idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _items(n: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """n items per class: a bright rectangle with a hole (a dark ring inside) on black."""
    images, labels = [], []
    for label in range(10):
        for _ in range(n):
            item = np.zeros((28, 28), np.uint8)
            top, left = rng.integers(2, 8, size=2)
            item[top:top + 16, left:left + 12 + label % 3] = 200
            item[top + 5:top + 9, left + 4:left + 7] = 0  # a hole: filled in the mask
            item[top, left] = 5  # a faint pixel at the edge, below the threshold of 8
            images.append(item)
            labels.append(label)
    return np.stack(images), np.array(labels, np.uint8)


@pytest.fixture
def sources(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "debian"
    folder.mkdir()
    checksums = {}
    for split, n in N_PER_CLASS.items():
        images, labels = _items(n, rng)
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            name = f"{split}-{kind}-ubyte.gz"
            raw = _idx(array)
            (folder / name).write_bytes(gzip.compress(raw))
            checksums[name] = hashlib.sha256(raw).hexdigest()
    backgrounds = tmp_path / "photos"
    backgrounds.mkdir()
    for k, colour in enumerate([(30, 160, 40), (20, 60, 200), (180, 120, 60)]):
        photo = np.zeros((40, 60, 3), np.uint8) + np.array(colour, np.uint8)
        photo[::7] = 255  # some structure for the crops
        Image.fromarray(photo).save(backgrounds / f"habitat{k}.png")
    params = {"sources": {"debian": str(folder), "url": "http://127.0.0.1:9/", "cache": str(tmp_path / "cache")},
              "backgrounds": [f"habitat{k}.png" for k in range(3)],
              "pretrain": {"train_per_class": 4, "test_per_class": 1, "background_bias": 0.0},
              "target": {"train_per_class": 2, "test_per_class": 3, "background_bias": 1.0}}
    return {"params": params, "checksums": checksums, "backgrounds": backgrounds, "folder": folder}


def _generate(tmp_path, sources, **overrides):
    params = {**sources["params"], **overrides}
    return P.generate(tmp_path / "out", params, checksums=sources["checksums"],
                      background_folder=sources["backgrounds"])


def test_idx_reader_and_item_mask():
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(P.read_idx(_idx(array)), array)
    with pytest.raises(P.PhotosSourceError, match="not an unsigned-byte IDX"):
        P.read_idx(b"\x00\x00\x0d\x01" + b"\x00" * 8)
    with pytest.raises(P.PhotosSourceError, match="holds 23 values"):
        P.read_idx(_idx(array)[:-1])
    item = np.zeros((7, 7), np.uint8)
    item[1:6, 1:6] = 100
    item[3, 3] = 0      # a hole
    item[0, 0] = 4      # faint: below the threshold
    mask = P.item_mask(item, 8)
    assert mask[3, 3] and not mask[0, 0] and mask.sum() == 25


def test_sets_have_exact_masks_and_disjoint_items(tmp_path, sources):
    written = _generate(tmp_path, sources)
    pretrain, target = (read_meta(written[s]) for s in ("pretrain", "target"))
    assert pretrain["classes"] == target["classes"] == list(P.CLASSES)
    assert target["background_licences"]["habitat0.png"] == "unknown"  # not one of the shipped photos
    root = written["target"]
    index = pd.read_csv(root / "index.csv")
    assert (index["split"] == "train").sum() == 20 and (index["split"] == "test").sum() == 30
    for image_id in index["id"][:12]:
        image = np.asarray(Image.open(root / "images" / f"{image_id}.png")).astype(int)
        mask = np.asarray(Image.open(root / "masks" / f"{image_id}.png")) == 255
        assert 0 < mask.sum() < mask.size
        # Exact: every mask pixel is the grey item (R = G = B), every other pixel the photo's
        # crop, whose colours are never grey here.
        grey = (image[..., 0] == image[..., 1]) & (image[..., 1] == image[..., 2])
        assert grey[mask].all()
        assert not grey[~mask & (image.sum(-1) < 3 * 250)].any()
    train = load_split(root, "train")
    assert tuple(train.images.shape) == (20, 3, 32, 32)


def test_the_bias_knob(tmp_path, sources):
    written = _generate(tmp_path, sources)
    habitats = pd.read_csv(written["target"] / "habitats.csv").merge(
        pd.read_csv(written["target"] / "index.csv"), on="id")
    # bias 1: every image on its class's photograph (class mod 3)
    assert (habitats["habitat"] == habitats["label"] % 3).all()
    pretrain = pd.read_csv(written["pretrain"] / "habitats.csv").merge(
        pd.read_csv(written["pretrain"] / "index.csv"), on="id")
    assert (pretrain["habitat"] != pretrain["label"] % 3).any()  # bias 0: uniform
    with pytest.raises(ValueError, match=r"photos.target.background_bias = 1.5"):
        P.resolve_params({"target": {"background_bias": 1.5}})
    with pytest.raises(ValueError, match=r"photos.colour: unknown parameter"):
        P.resolve_params({"colour": True})


def test_a_wrong_checksum_or_a_missing_source_is_one_named_error(tmp_path, sources):
    wrong = dict(sources["checksums"], **{"train-labels-idx1-ubyte.gz": "0" * 64})
    with pytest.raises(P.PhotosSourceError, match=r"train-labels-idx1-ubyte.gz: SHA-256 of its content is [0-9a-f]{64}, expected 0{64}"):
        P.generate(tmp_path / "out", sources["params"], checksums=wrong, background_folder=sources["backgrounds"])
    (sources["folder"] / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(P.PhotosSourceError) as error:
        _generate(tmp_path, sources)
    message = str(error.value)
    # Both sources named: the Debian folder (and how to install it) and the URL that failed.
    assert str(sources["folder"]) in message and "apt-get install dataset-fashion-mnist" in message
    assert "http://127.0.0.1:9/t10k-images-idx3-ubyte.gz" in message
    assert not (tmp_path / "out").exists()


def test_the_pinned_checksums_match_the_installed_package():
    folder = P.DEFAULT_PARAMS["sources"]["debian"]
    files = {name: f"{folder}/{name}" for name in P.FASHION_MNIST_SHA256}
    import os
    if not all(os.path.isfile(f) for f in files.values()):
        pytest.skip("dataset-fashion-mnist is not installed (apt-get install dataset-fashion-mnist; .ci/run installs it)")
    for name, path in files.items():
        with gzip.open(path, "rb") as handle:
            assert hashlib.sha256(handle.read()).hexdigest() == P.FASHION_MNIST_SHA256[name], name
