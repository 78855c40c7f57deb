"""End-to-end tests of the pipeline helper and the ``kdconcepts quantify`` command."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn

from kdconcepts.quantify import SigmaConfig, quantify_images
from kdconcepts.quantify.cli import main

torch.set_num_threads(1)

# (in this process torch started without the pins: `kdconcepts quantify` sets them, tests/test_cli.py)
FAST = ["--grid", "8", "--steps", "5", "--boost-after", "3", "--samples", "3", "--numerics", "native"]


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 6, 3, padding=1)

    def forward(self, x):
        return self.conv(x)


def test_quantify_images_table_is_ready_for_parquet(tmp_path):
    x = torch.rand(3, 3, 16, 16)
    x[2] = 0.0
    model = TinyNet()
    model.conv.weight.data[:, :, :, :] = 0.0
    model.conv.weight.data[:, 0, 1, 1] = 1.0  # f = ReLU(channel 0 + bias): zero on image 2
    model.conv.bias.data.fill_(-2.0)
    x[:2, 0] += 2.5
    cfg = SigmaConfig(grid=8, steps=5, boost_after=3, samples=3)
    table = quantify_images(model, "conv", x, ["a", "b", "c"], cfg, seed=0, device="cpu")
    assert list(table.columns) == ["image_id", "usable", "sigma_f", "step", "mean_entropy",
                                   "target_reached", "boosted", "passes", "sample_passes", "entropy", "trace"]
    assert (table["sample_passes"] == table["passes"] * cfg.samples + cfg.samples).all()
    assert table["passes"].iloc[2] == 0 and table["sample_passes"].iloc[2] == cfg.samples
    assert table["image_id"].tolist() == ["a", "b", "c"]
    assert table["usable"].tolist() == [True, True, False]
    assert table["step"].iloc[2] == -1 and math.isnan(table["mean_entropy"].iloc[2])
    first = np.asarray(table["entropy"].iloc[0])
    assert first.dtype == np.float32 and first.shape == (64,)
    assert table["mean_entropy"].iloc[0] == pytest.approx(float(first.mean()), abs=1e-5)
    path = tmp_path / "t.parquet"
    table.to_parquet(path, index=False)
    back = pd.read_parquet(path)
    np.testing.assert_array_equal(np.asarray(back["entropy"].iloc[1]),
                                  np.asarray(table["entropy"].iloc[1]))
    # Noise is keyed by image id: the same image alone gives the same map.
    alone = quantify_images(model, "conv", x[1:2], ["b"], cfg, seed=0, device="cpu")
    np.testing.assert_allclose(np.asarray(alone["entropy"].iloc[0]),
                               np.asarray(table["entropy"].iloc[1]), rtol=1e-5)


def _plain_folder(root, n=3, size=32):
    rng = np.random.default_rng(0)
    (root / "masks").mkdir(parents=True)
    for i in range(n):
        pixels = (rng.random((size, size, 3)) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(root / f"img{i}.png")
        mask = np.zeros((size, size), np.uint8)
        mask[8:24, 8:24] = 255
        Image.fromarray(mask).save(root / "masks" / f"img{i}.png")


def _checkpoint(path, normalization={"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}):
    from kdconcepts.models import build_model
    torch.manual_seed(0)
    model = build_model("small_vgg", 4, 32)
    extra = {"input_normalization": normalization} if normalization else {}
    torch.save({"state_dict": model.state_dict(), "arch": "small_vgg", "num_classes": 4,
                "image_size": 32, "epoch": 0, "role": "baseline", "layer": None,
                "config_hash": "x", "data_hash": "y", "weight_distance": {}, **extra}, path)


def test_the_checkpoints_own_normalisation_is_used_and_an_unknown_one_refused(tmp_path):
    """A network is fed as it was trained: the mean and std its checkpoint stores; a plain folder
    with a checkpoint that stores none is refused unless --normalize names one."""
    images = tmp_path / "imgs"
    _plain_folder(images)
    stats = {"mean": [0.4, 0.5, 0.6], "std": [0.2, 0.25, 0.3]}
    _checkpoint(tmp_path / "own.pt", stats)
    _checkpoint(tmp_path / "old.pt", None)
    run = lambda ckpt, out, *extra: main(["--checkpoint", str(tmp_path / ckpt), "--layer", "conv", "--images",  # noqa: E731
                                          str(images), "--out", str(tmp_path / out), *FAST, "--no-figures", *extra])
    assert run("own.pt", "own") == 0
    with pytest.raises(SystemExit, match="does not say which input normalisation .* pass --normalize"):
        run("old.pt", "old")
    assert not (tmp_path / "old").exists()
    # The same maps as the images normalised by hand with those statistics.
    from kdconcepts.quantify.cli import load_images
    from kdconcepts.quantify import SigmaConfig, estimate_sigma
    from kdconcepts.checkpoints import load_checkpoint
    x, _, ids, _ = load_images(images, "all", 32, (tuple(stats["mean"]), tuple(stats["std"])))
    raw, _, _, _ = load_images(images, "all", 32, "none")
    expected = (raw - torch.tensor(stats["mean"]).view(1, 3, 1, 1)) / torch.tensor(stats["std"]).view(1, 3, 1, 1)
    assert torch.allclose(x, expected)
    model, _ = load_checkpoint(tmp_path / "own.pt")
    cfg = SigmaConfig(grid=8, steps=5, boost_after=3, samples=3)
    own = estimate_sigma(model, "features.15", x, cfg, seed=0, image_keys=ids, device="cpu")
    table = pd.read_parquet(tmp_path / "own/entropy.parquet")
    assert np.allclose(np.stack(table["entropy"].to_list()).reshape(-1, 8, 8), own.entropy.numpy(), equal_nan=True)


def test_cli_with_a_checkpoint_writes_table_concepts_and_maps(tmp_path):
    images = tmp_path / "imgs"
    _plain_folder(images)
    _checkpoint(tmp_path / "net.pt")
    out = tmp_path / "out"
    assert main(["--checkpoint", str(tmp_path / "net.pt"), "--layer", "conv",
                 "--images", str(images), "--out", str(out), *FAST]) == 0
    table = pd.read_parquet(out / "entropy.parquet")
    assert table["image_id"].tolist() == ["img0", "img1", "img2"]
    assert table["usable"].all() and len(table["entropy"].iloc[0]) == 64
    concepts = pd.read_csv(out / "concepts.csv")
    assert (concepts["n_fg"] + concepts["n_bg"] <= 64).all()
    assert concepts["n_fg"].max() <= 16  # the central 16 x 16 px mask is 4 x 4 cells
    for image_id in table["image_id"]:
        with Image.open(out / "maps" / f"{image_id}.png") as png:
            assert png.size[0] > 100
    assert not list(out.rglob("*.tmp"))


def test_cli_with_a_torchvision_model_and_bad_arguments(tmp_path):
    images = tmp_path / "imgs"
    _plain_folder(images, n=2)
    out = tmp_path / "out"
    assert main(["--torchvision-model", "squeezenet1_0", "--no-weights", "--layer",
                 "features.0", "--images", str(images), "--out", str(out), "--no-figures",
                 *FAST]) == 0
    assert len(pd.read_parquet(out / "entropy.parquet")) == 2
    assert not (out / "maps").exists()
    with pytest.raises(SystemExit, match="divisible"):
        main(["--torchvision-model", "squeezenet1_0", "--no-weights", "--layer",
              "features.0", "--images", str(images), "--out", str(out), "--grid", "5", "--overwrite"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SystemExit, match="no images"):
        main(["--torchvision-model", "squeezenet1_0", "--no-weights", "--layer",
              "features.0", "--images", str(empty), "--out", str(out), "--overwrite"])
    # Runs that failed replaced nothing: the first run's table is still there.
    assert len(pd.read_parquet(out / "entropy.parquet")) == 2


def test_cli_refuses_an_earlier_runs_outputs_or_replaces_them_all(tmp_path):
    """A second run into the same --out: refused before any work, naming what is there; with
    --overwrite, nothing of the earlier run stays (no map of an image it did not quantify), and
    every output gets the usual file mode (umask), not the temporary file's 0600."""
    import os
    import stat

    images = tmp_path / "imgs"
    _plain_folder(images, n=3)
    _checkpoint(tmp_path / "net.pt")
    out = tmp_path / "out"
    run = ["--checkpoint", str(tmp_path / "net.pt"), "--layer", "conv", "--images", str(images),
           "--out", str(out), *FAST]
    assert main(run) == 0
    assert sorted(p.name for p in (out / "maps").iterdir()) == ["img0.png", "img1.png", "img2.png"]
    with pytest.raises(SystemExit, match=r"holds an earlier run's outputs \(entropy.parquet, "
                                         r"concepts.csv, maps/ \(3 files\)\); .* --overwrite"):
        main([*run, "--limit", "1"])
    assert main([*run, "--limit", "1", "--overwrite"]) == 0
    assert [p.name for p in (out / "maps").iterdir()] == ["img0.png"]
    assert pd.read_parquet(out / "entropy.parquet")["image_id"].tolist() == ["img0"]
    umask = os.umask(0)
    os.umask(umask)
    for path in [out / "entropy.parquet", out / "concepts.csv", out / "maps/img0.png"]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path


def test_cli_settled_stop_gives_the_full_loops_maps_with_fewer_passes(tmp_path):
    """``--stop settled`` (the pipeline's default) reaches the engine: the same selected maps
    as the authors' loop, fewer passes."""
    images = tmp_path / "imgs"
    _plain_folder(images, n=2)
    _checkpoint(tmp_path / "net.pt")
    tables = {}
    for stop in ("full", "settled"):
        out = tmp_path / stop
        # lr 1e-3: the trace passes H* well before the decision step (as in the engine's test).
        assert main(["--checkpoint", str(tmp_path / "net.pt"), "--layer", "conv", "--images",
                     str(images), "--out", str(out), "--no-figures", "--grid", "8", "--steps", "40",
                     "--boost-after", "30", "--samples", "6", "--lr", "1e-3", "--stop", stop, "--numerics", "native"]) == 0
        tables[stop] = pd.read_parquet(out / "entropy.parquet")
    full, settled = tables["full"], tables["settled"]
    assert (full["step"] == settled["step"]).all()
    for a, b in zip(full["entropy"], settled["entropy"]):
        np.testing.assert_array_equal(a, b)
    assert (settled["sample_passes"] < full["sample_passes"]).all()
