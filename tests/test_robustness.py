"""Bad inputs are stopped before they cost work or data, and bad files are named (issue 12)."""

import math
import pickle
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from kdconcepts.checkpoints import UnsafeCheckpointError, load_checkpoint, safe_torch_load
from kdconcepts.config import config_file_problems, config_problems, load_schema
from kdconcepts.data import DatasetFormatError, PreparedRecord, load_split, write_prepared
from kdconcepts.pipeline import read_table
from kdconcepts.quantify.cli import main as quantify_main

from conftest import dry_runs

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = load_schema(ROOT / "workflow/schemas/config.schema.yaml")
FAST = ["--grid", "8", "--steps", "5", "--boost-after", "3", "--samples", "3", "--no-figures", "--numerics", "native"]


def _default():
    return yaml.safe_load((ROOT / "config/config.yaml").read_text())


def _problems(**changes) -> str:
    cfg = _default()
    for dotted, value in changes.items():
        node = cfg
        *parents, last = dotted.split(".")
        for key in parents:
            node = node[key]
        node[last] = value
    return "\n".join(config_problems(cfg, SCHEMA, workdir=ROOT))


# --- the config: every check that can run before a job ---------------------------------------


@pytest.mark.parametrize("changes, words", [
    ({"layers": ["nonexistent"]}, "unknown layer 'nonexistent' for small_vgg"),
    ({"layers": ["features.2"]}, "is a ReLU, not a conv/linear layer"),
    ({"teacher.init": "imagenet"}, "teacher.init = 'imagenet' but architecture = 'small_vgg'"),
    ({"teacher.init": "imagenet"}, "but dataset.normalize = 'dataset': ImageNet weights expect"),
    ({"dataset.normalize": "ImageNet"}, "dataset.normalize = 'ImageNet'"),
    ({"dataset.dvc_stage": "synthetc"}, "dataset.dvc_stage = 'synthetc' is not a stage of dvc.yaml"),
    ({"dataset.dvc_stage": "prepare_cub"}, "is not made by DVC stage 'prepare_cub'"),
    ({"quantify.grid": 5}, "quantify.grid = 5 does not divide the prepared image size 32 px"),
    ({"report.palette": "colourblind"}, "report.palette = 'colourblind' is not a seaborn"),
    ({"quantify.lr": math.inf}, "quantify.lr = inf is not a finite number"),
    ({"optimizer.weight_decay": math.nan}, "optimizer.weight_decay = nan is not a finite number"),
    ({"quantify.target_entropy": 2.0}, "quantify.target_entropy (2.0) cannot be reached"),
    ({"quantify.sigma_init": 5.0}, "quantify.sigma_init (5.0) must lie in"),
    ({"quantify.lam": -1.0}, "quantify.lam = -1.0"),
    ({"quantify.boost_factor": 0.5}, "quantify.boost_factor = 0.5"),
    ({"quantify.lr": "1e-4"}, "write 1.0e-4"),
    ({"augment.crop_resize": 16}, "augment.crop_resize = 16 is smaller than the images (32 px)"),
    ({"networks": ["distilled_student", "logit_student"]}, "lacks the baseline (baseline: every student"),
    ({"networks": ["logit_student"]}, "networks = ['logit_student'] lacks the baseline"),
    ({"networks": ["baseline"]}, "lacks a student (distilled_student or logit_student)"),
    ({"networks": []}, "lacks the baseline (baseline: every student is compared with it) and a student"),
    ({"distilled_student.lr_start": {"fc1": 0.01}}, "gives no rate for layer(s) ['conv']"),
    ({"sweep": {"parameter": "background_bias", "values": [0.0, 0.3], "dvc_stage": "synthetic_bias",
                "root": "data/synthetic/bias_{value}/target"}}, "'synthetic_bias@0.3' is not a stage"),
])
def test_a_bad_value_is_refused_with_its_key_before_any_job(changes, words):
    assert words in _problems(**changes)


def test_the_image_size_each_architecture_needs():
    from kdconcepts.models import check_input_size
    assert check_input_size("vgg16", 224) is None and check_input_size("small_vgg", 32) is None
    assert "it needs at least 32 px" in check_input_size("vgg16", 16)
    assert "alexnet" in _problems(architecture="alexnet", **{"teacher.init": "none"})


def test_the_shipped_configs_are_valid():
    for path in [ROOT / "config/config.yaml", *ROOT.glob("config/*/*.yaml"), *ROOT.glob("config/*.yaml"),
                 *ROOT.glob("tests/configs/*.yaml")]:
        cfg = yaml.safe_load(path.read_text())
        if path.parent.name in ("paper", "quick", "ablation") or path.name in ("extended.yaml", "photos.yaml"):
            merged = _default()
            _merge(merged, cfg)
            cfg = merged
        assert config_problems(cfg, SCHEMA, workdir=ROOT, deep=False) == [], path


def _merge(base, update):
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


# --- files: a bad file is named ---------------------------------------------------------------


@pytest.fixture
def prepared(tmp_path):
    rng = np.random.default_rng(0)

    def records():
        for split, n in (("train", 4), ("test", 3)):
            for k in range(n):
                image = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
                mask = np.zeros((16, 16), np.uint8)
                mask[4:12, 4:12] = 255
                yield PreparedRecord(f"{split}_{k}", image, mask, k % 2, f"c{k % 2}", split)

    root = write_prepared(tmp_path / "set", records(), {"name": "t", "classes": ["c0", "c1"],
                                                        "foreground": "mask"})
    return root


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_a_truncated_png_is_named(prepared):
    _truncate(prepared / "images/test_1.png")
    with pytest.raises(DatasetFormatError, match=re.escape(str(prepared / "images/test_1.png"))):
        load_split(prepared, "test")
    ok = load_split(prepared, "test", on_bad="skip")
    assert ok.ids == ["test_0", "test_2"] and ok.skipped[0][0] == "test_1"


def test_quantify_cli_stops_on_a_bad_image_and_skips_only_when_asked(prepared, tmp_path):
    net = tmp_path / "net"
    _truncate(prepared / "images/test_1.png")
    args = ["--torchvision-model", "squeezenet1_0", "--no-weights", "--layer", "features.0",
            "--images", str(prepared), *FAST]
    with pytest.raises(SystemExit, match="test_1.png: cannot be read"):
        quantify_main([*args, "--out", str(net)])
    assert not net.exists()  # refused before any output
    assert quantify_main([*args, "--out", str(net), "--skip-bad"]) == 0
    table = pd.read_parquet(net / "entropy.parquet")
    assert len(table) == 6 and "test_1" not in set(table["image_id"])  # the rest of the split is kept
    skipped = pd.read_csv(net / "skipped.csv")
    assert skipped["image"].tolist() == ["test_1"] and "cannot be read" in skipped["reason"][0]


def test_a_mis_sized_mask_is_named(prepared):
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(prepared / "masks/train_2.png")
    with pytest.raises(DatasetFormatError, match=r"train_2\.png: size 8x8, expected 16x16"):
        load_split(prepared, "train")


def test_meta_without_index_is_refused(prepared, tmp_path):
    (prepared / "index.csv").unlink()
    with pytest.raises(SystemExit, match="has meta.json but no index.csv"):
        quantify_main(["--torchvision-model", "squeezenet1_0", "--no-weights", "--layer", "features.0",
                       "--images", str(prepared), "--out", str(tmp_path / "o"), *FAST])


@pytest.mark.parametrize("option, value, words", [
    ("--limit", "0", "--limit must be >= 1"),
    ("--batch-images", "0", "--batch-images must be >= 1"),
    ("--max-batch", "0", "--max-batch must be >= 1"),
])
def test_cli_options_are_checked_before_any_work(prepared, tmp_path, option, value, words):
    with pytest.raises(SystemExit, match=re.escape(words)):
        quantify_main(["--torchvision-model", "squeezenet1_0", "--no-weights", "--layer", "features.0",
                       "--images", str(prepared), "--out", str(tmp_path / "o"), option, value, *FAST])


def test_an_out_that_is_a_file_is_refused_first(prepared, tmp_path, monkeypatch):
    out = tmp_path / "file"
    out.write_text("x")
    import kdconcepts.quantify.cli as cli
    monkeypatch.setattr(cli, "quantify_images", lambda *a, **k: pytest.fail("computed before refusing"))
    with pytest.raises(SystemExit, match="exists and is not a folder"):
        quantify_main(["--torchvision-model", "squeezenet1_0", "--no-weights", "--layer", "features.0",
                       "--images", str(prepared), "--out", str(out), *FAST])


class _Payload:
    def __reduce__(self):
        return (print, ("this would have run",))


def test_a_file_refused_by_weights_only_loading_is_reported_as_refused_for_safety(tmp_path):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as fh:
        pickle.dump({"state_dict": _Payload()}, fh, protocol=2)
    with pytest.raises(UnsafeCheckpointError) as error:
        load_checkpoint(path)
    assert "refused for safety" in str(error.value) and "weights_only=False" not in str(error.value).split("(")[0]
    truncated = tmp_path / "torn.pt"
    torch.save({"a": torch.zeros(1000)}, truncated)
    _truncate(truncated)
    with pytest.raises(ValueError, match="torn.pt is not a readable torch file"):
        safe_torch_load(truncated)


def test_a_corrupt_parquet_is_named_with_the_way_out(tmp_path):
    path = tmp_path / "epoch_003.parquet"
    pd.DataFrame({"a": np.arange(1000)}).to_parquet(path)
    _truncate(path)
    with pytest.raises(ValueError, match="epoch_003.parquet is corrupt .* Delete it; the next run rebuilds it"):
        read_table(path)


def test_a_device_the_machine_lacks_is_named_with_what_it_has(monkeypatch):
    from kdconcepts import runtime

    assert runtime.device_problem("auto") is None and runtime.device_problem("cpu") is None
    assert "is not a device name" in runtime.device_problem("gpu0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert runtime.device_problem("cuda") == "device 'cuda' is not on this machine, which has no CUDA device"
    with pytest.raises(ValueError, match="which has no CUDA device; use 'auto' or 'cpu'"):
        runtime.resolve_device("cuda:0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert runtime.device_problem("cuda") is None and runtime.device_problem("cuda:1") is None
    assert runtime.device_problem("cuda:2") == ("device 'cuda:2' is not on this machine, which has "
                                                "2 CUDA device(s): cuda:0, cuda:1")


def test_quantify_cli_names_non_finite_pixels_before_any_work(prepared, tmp_path, monkeypatch):
    """Non-finite input values (a NaN in a decoded image, an overflow in a normalisation) are
    named with the image before any map is made, not turned into "not usable" images."""
    import kdconcepts.quantify.cli as cli

    real = cli.load_images

    def with_a_nan(*args, **kwargs):
        images, masks, ids, skipped = real(*args, **kwargs)
        images[ids.index("train_2"), 1, 3, 3] = float("nan")
        return images, masks, ids, skipped

    monkeypatch.setattr(cli, "load_images", with_a_nan)
    out = tmp_path / "out"
    with pytest.raises(SystemExit, match=r"--images .*: non-finite pixel values \(NaN or inf\) in "
                                         r"image\(s\) train_2 \(1 value\(s\)\)"):
        quantify_main(["--torchvision-model", "squeezenet1_0", "--no-weights", "--layer",
                       "features.0", "--images", str(prepared), "--out", str(out), *FAST])
    assert not out.exists()


def test_a_config_file_is_checked_as_yaml_naming_file_line_and_column(tmp_path):
    dup = tmp_path / "dup.yaml"
    dup.write_text("quantify:\n  steps: 3\nseeds: [0]\nquantify:\n  samples: 4\n")
    assert config_file_problems(dup) == [
        f"{dup}, line 4, column 1: key 'quantify' is repeated (first at line 1); the second "
        "would silently replace the first"]
    nested = tmp_path / "nested.yaml"
    nested.write_text("metrics:\n  b: 0.2\n  b: 0.3\n")
    assert "line 3, column 3: key 'b' is repeated (first at line 2)" in config_file_problems(nested)[0]
    broken = tmp_path / "broken.yaml"
    broken.write_text("quantify:\n  steps: [80\n  samples: 96\n")
    [problem] = config_file_problems(broken)
    assert problem.startswith(f"{broken}, line 3, column ") and "expected ',' or ']'" in problem
    assert config_file_problems(Path(__file__).resolve().parents[1] / "config/config.yaml") == []


def test_a_repeated_key_or_a_broken_default_config_stops_the_run_before_any_job(repo_copy):
    (repo_copy / "dup.yaml").write_text("quantify:\n  steps: 12\nquantify:\n  samples: 4\n")
    default = repo_copy / "config/config.yaml"
    broken = default.read_text().replace("  steps: 80", "  steps: [80", 1)
    repeated, = dry_runs(repo_copy, [["--cores", "1", "--configfile", "tests/configs/smoke.yaml", "dup.yaml"]])
    assert repeated.returncode != 0
    assert "dup.yaml, line 3, column 1: key 'quantify' is repeated (first at line 1)" in repeated.stdout
    default.write_text(broken)
    syntax, = dry_runs(repo_copy, [["--cores", "1"]])
    assert syntax.returncode != 0
    assert re.search(r"config/config.yaml, line \d+, column \d+: expected ',' or '\]'", syntax.stdout)
    assert not (repo_copy / "results").exists()
