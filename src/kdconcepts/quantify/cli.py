"""``kdconcepts quantify``: sigma maps, entropy maps and concept counts for a folder of images.

Examples:
    kdconcepts quantify --checkpoint results/train/baseline/epoch_025.pt --layer conv \\
        --images data/synthetic/target --out results/adhoc/baseline
    kdconcepts quantify --torchvision-model vgg16 --no-weights --layer features.28 \\
        --images my_photos/ --out out/ --image-size 224

``--images`` is a prepared dataset folder (``meta.json``, ``index.csv``, ``images/``,
``masks/``; images normalised with its mean/std) or a plain folder of images (in it or in
``images/``) with optional masks ``masks/<stem>.png``. Writes ``entropy.parquet`` (the
pipeline's table), ``concepts.csv`` (N_fg, N_bg per image, when masks exist) and one
``maps/<image id>.png`` per image.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from kdconcepts.data.format import normalization
from kdconcepts.quantify.concepts import background_baseline, concept_counts, downsample_mask
from kdconcepts.quantify.config import SigmaConfig, sigma_schema
from kdconcepts.quantify.engine import PRECISIONS, _refuse_non_finite, resolve_device
from kdconcepts.quantify.figures import save_entropy_map
from kdconcepts.quantify.pipeline import quantify_images
from kdconcepts.runtime import atomic_path, keep_freed_memory

log = logging.getLogger("kdconcepts.quantify")

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
# The method's options, one flag each, defaults and ranges from SigmaConfig (its schema).
_METHOD_OPTIONS = ("grid", "steps", "boost_after", "samples", "lr", "lam", "boost_factor",
                   "target_entropy", "sigma_init", "sigma_min", "sigma_max", "stop",
                   "settle_margin", "settle_steps")
_STOPS = tuple(sigma_schema()["properties"]["stop"]["enum"])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kdconcepts quantify",
        description="Estimate sigma maps (information discarding) and count visual concepts.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path, help="kdconcepts checkpoint (.pt)")
    source.add_argument("--torchvision-model", metavar="NAME",
                        help="torchvision model name, e.g. vgg16")
    parser.add_argument("--no-weights", action="store_true",
                        help="with --torchvision-model: random init (no ImageNet weights)")
    parser.add_argument("--num-classes", type=int, default=1000,
                        help="with --torchvision-model --no-weights: classifier size")
    parser.add_argument("--layer", required=True,
                        help="conv | fc1 | fc2 (kdconcepts architectures) or a node name")
    parser.add_argument("--images", type=Path, required=True, help="image folder")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an earlier run's outputs in --out (refused without it)")
    parser.add_argument("--split", choices=("train", "test", "all"), default="all",
                        help="prepared dataset: which split (default all)")
    parser.add_argument("--skip-bad", action="store_true",
                        help="leave out unreadable or mis-sized images and masks (listed in "
                             "skipped.csv) instead of stopping with an error naming the file")
    parser.add_argument("--limit", type=int, default=None, help="first N images only")
    parser.add_argument("--image-size", type=int, default=None,
                        help="resize plain-folder images to this size")
    parser.add_argument("--normalize", choices=("auto", "none", "imagenet", "dataset"), default="auto",
                        help="auto: the checkpoint's own (stored with its weights), else a prepared "
                             "dataset's meta.json, ImageNet for torchvision weights, none with "
                             "--no-weights; a plain folder with an older checkpoint needs it named")
    parser.add_argument("--numerics", choices=("portable", "native"), default="portable",
                        help="portable: AVX2-pinned kernels, the same bits on every x86-64 host; native: faster")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (fixed: part of the numerics)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32")
    parser.add_argument("--max-batch", type=int, default=1536,
                        help="(image, noise sample) rows per forward chunk")
    parser.add_argument("--batch-images", type=int, default=32,
                        help="images per engine call (progress unit)")
    parser.add_argument("--no-figures", action="store_true")
    parser.add_argument("--b", type=float, default=0.2, help="concept threshold b")
    defaults = SigmaConfig()
    for name in _METHOD_OPTIONS:
        value = getattr(defaults, name)
        extra = {"choices": _STOPS} if name == "stop" else {}
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, type=type(value),
                            default=value, help=f"(default {value})", **extra)
    return parser


def _load_model(args: argparse.Namespace, device: torch.device):
    """Returns (model, node name, expected image size or None, default normalisation)."""
    if args.checkpoint is not None:
        from kdconcepts.models import resolve_layer
        from kdconcepts.checkpoints import load_checkpoint
        model, info = load_checkpoint(args.checkpoint, map_location=device)
        stored = info.get("input_normalization")  # what the network was trained on
        own = (tuple(stored["mean"]), tuple(stored["std"])) if stored else None
        return model, resolve_layer(info["arch"], args.layer), int(info["image_size"]), own
    import torchvision
    name = args.torchvision_model
    if name not in torchvision.models.list_models():
        raise SystemExit(f"unknown torchvision model {name!r}")
    if args.no_weights:
        model = torchvision.models.get_model(name, weights=None, num_classes=args.num_classes)
        return model.eval(), args.layer, None, "none"
    # Weights only from the local torch cache: never download.
    url = torchvision.models.get_model_weights(name).DEFAULT.url
    path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
    if not path.is_file():
        raise SystemExit(f"no cached weights for {name} at {path}; place the file there "
                         f"or use --no-weights (this command never downloads)")
    from kdconcepts.checkpoints import safe_torch_load
    model = torchvision.models.get_model(name, weights=None)
    model.load_state_dict(safe_torch_load(path))
    return model.eval(), args.layer, None, "imagenet"


def _read_rgb(path: Path, size: int | None) -> np.ndarray:
    from PIL import Image
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            if size is not None and image.size != (size, size):
                image = image.resize((size, size), Image.BILINEAR)
            return np.asarray(image, dtype=np.uint8)
    except (OSError, SyntaxError, ValueError) as error:
        raise ValueError(f"{path}: cannot be read as an image ({error})") from None


def _read_mask(path: Path, shape: tuple[int, int]) -> np.ndarray:
    from PIL import Image
    try:
        with Image.open(path) as mask:
            mask = mask.convert("L")
            if mask.size != (shape[1], shape[0]):
                mask = mask.resize((shape[1], shape[0]), Image.NEAREST)
            return np.asarray(mask) >= 128
    except (OSError, SyntaxError, ValueError) as error:
        raise ValueError(f"{path}: cannot be read as a mask ({error})") from None


def load_images(root: Path, split: str, size: int | None, normalize: str, skip_bad: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor | None, list[str], list[tuple[str, str]]]:
    """Images [N,3,S,S] (normalised), masks [N,S,S] bool or None, ids, and the (file, reason)
    of images left out (only with ``skip_bad``), from a folder.

    A bad image or mask is an error naming the file, unless ``skip_bad``.
    """
    if not root.is_dir():
        raise SystemExit(f"image folder not found: {root}")
    if (root / "meta.json").is_file() != (root / "index.csv").is_file():
        present, absent = (("meta.json", "index.csv") if (root / "meta.json").is_file()
                           else ("index.csv", "meta.json"))
        raise SystemExit(f"{root} has {present} but no {absent}: an incomplete prepared dataset. "
                         f"Read as a plain folder it would lose its normalisation, which changes "
                         f"every map; restore {absent} (or prepare the dataset again)")
    if (root / "meta.json").is_file():
        from kdconcepts.data import DatasetFormatError, load_split, read_index, read_meta
        try:
            present = {row.split for row in read_index(root, read_meta(root)["num_classes"])}
            splits = [name for name in ("train", "test") if name in present] if split == "all" else [split]
            if not splits:
                raise SystemExit(f"{root}/index.csv lists no image")
            if split == "all" and len(splits) < 2:
                log.info("%s has only a %s split", root, splits[0])
            # auto: the dataset's own mean/std (meta.json); the pipeline's dataset.normalize
            # takes the same values through the same reader
            own = isinstance(normalize, tuple)  # the checkpoint's mean and std, applied below
            parts = [load_split(root, name, normalize=False if own else normalize,
                                on_bad="skip" if skip_bad else "raise") for name in splits]
        except (DatasetFormatError, FileNotFoundError) as error:
            raise SystemExit(f"{error}{'' if skip_bad else ' (--skip-bad leaves such images out)'}") from None
        images = torch.cat([p.images for p in parts])
        if own:
            images = _normalise(images, *normalize)
        skipped = [(i, reason) for p in parts for i, reason in p.skipped]
        return (images, torch.cat([p.masks for p in parts]), [i for p in parts for i in p.ids], skipped)
    folder = root / "images" if (root / "images").is_dir() else root
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SystemExit(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    mask_dir = root / "masks"
    if mask_dir.is_dir():
        missing = [p.stem for p in files if not (mask_dir / f"{p.stem}.png").is_file()]
        if missing:
            raise SystemExit(f"masks missing in {mask_dir}: {missing[:5]}")
    arrays, mask_arrays, kept, skipped = [], [], [], []
    for path in files:
        try:
            array = _read_rgb(path, size)
            mask = _read_mask(mask_dir / f"{path.stem}.png", array.shape[:2]) if mask_dir.is_dir() else None
        except ValueError as error:
            if not skip_bad:
                raise SystemExit(f"{error} (--skip-bad leaves such images out)") from None
            skipped.append((str(path), str(error)))
            continue
        arrays.append(array)
        mask_arrays.append(mask)
        kept.append(path)
    if not arrays:
        raise SystemExit(f"no readable image in {folder} ({len(skipped)} skipped)")
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise SystemExit(f"images differ in size {sorted(shapes)}; pass --image-size")
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255.0
    if normalize == "dataset":
        raise SystemExit(f"--normalize dataset needs a prepared dataset (meta.json) in {root}")
    stats = normalize if isinstance(normalize, tuple) else normalization(normalize, {"mean": None, "std": None})
    if stats is not None:
        images = _normalise(images, *stats)
    masks = torch.from_numpy(np.stack(mask_arrays)) if mask_dir.is_dir() else None
    return images, masks, [p.stem for p in kept], skipped


def _check_arguments(args: argparse.Namespace) -> None:
    """Refuse bad option values before any work, naming the option."""
    for option in ("limit", "batch_images", "max_batch", "num_classes"):
        value = getattr(args, option)
        if value is not None and value < 1:
            raise SystemExit(f"--{option.replace('_', '-')} must be >= 1, got {value}")
    if args.image_size is not None and args.image_size < 8:
        raise SystemExit(f"--image-size must be >= 8, got {args.image_size}")
    if args.out.exists() and not args.out.is_dir():
        raise SystemExit(f"--out {args.out} exists and is not a folder")
    earlier = _earlier_outputs(args.out) if args.out.is_dir() else []
    if earlier and not args.overwrite:
        raise SystemExit(f"--out {args.out} holds an earlier run's outputs ({', '.join(earlier)}); "
                         "choose another folder, or pass --overwrite to replace them")
    ancestor = args.out
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK):
        raise SystemExit(f"--out {args.out}: cannot create it in {ancestor}")
    if args.checkpoint is not None and not args.checkpoint.is_file():
        raise SystemExit(f"--checkpoint {args.checkpoint}: no such file")


def _normalise(images: torch.Tensor, mean, std) -> torch.Tensor:
    return (images - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def _atomic(path: Path, write) -> None:
    with atomic_path(path) as tmp:
        write(tmp)


#: What a run writes into --out: an earlier run's are replaced only with --overwrite.
_OUTPUTS = ("entropy.parquet", "concepts.csv", "skipped.csv", "maps")


def _earlier_outputs(out: Path) -> list[str]:
    """The outputs of an earlier run in ``out``, described (``maps/ (6 files)``)."""
    found = []
    for name in _OUTPUTS:
        path = out / name
        if path.is_dir():
            found.append(f"{name}/ ({sum(1 for _ in path.iterdir())} files)")
        elif path.exists():
            found.append(name)
    return found


def _remove_earlier_outputs(out: Path) -> None:
    """Remove what an earlier run wrote (only the names in ``_OUTPUTS``), so that nothing of it
    stays beside the new outputs (a map of an image this run did not quantify, say)."""
    for name in _OUTPUTS:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``kdconcepts quantify``; returns the exit status."""
    import pandas as pd

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s",
                        stream=sys.stderr)
    if args.no_weights and args.torchvision_model is None:
        raise SystemExit("--no-weights needs --torchvision-model")
    _check_arguments(args)
    try:
        cfg = SigmaConfig(**{k: getattr(args, k) for k in _METHOD_OPTIONS})
        device = resolve_device(args.device)
    except ValueError as error:
        raise SystemExit(str(error)) from error
    try:
        model, node, model_size, default_norm = _load_model(args, device)
    except ValueError as error:  # unreadable, unsafe or foreign checkpoint: named in the message
        raise SystemExit(str(error)) from None
    normalize = args.normalize
    if normalize == "auto":
        prepared = (args.images / "meta.json").is_file()
        if default_norm is None and not prepared:
            raise SystemExit(f"--checkpoint {args.checkpoint} does not say which input normalisation its network "
                             f"was trained with (a checkpoint from before kdconcepts stored it), and {args.images} "
                             "is a plain folder: pass --normalize dataset|imagenet|none")
        normalize = default_norm if default_norm is not None else "dataset"
    images, masks, ids, skipped = load_images(args.images, args.split, args.image_size or model_size,
                                              normalize, skip_bad=args.skip_bad)
    if skipped:
        log.warning("left out %d bad image(s) (--skip-bad), listed in %s: %s", len(skipped),
                    args.out / "skipped.csv", ", ".join(name for name, _ in skipped[:10]))
    if args.limit is not None:
        images, ids = images[: args.limit], ids[: args.limit]
        masks = None if masks is None else masks[: args.limit]
    try:  # before any work, not at the batch that holds the image
        _refuse_non_finite(images, ids)
    except ValueError as error:
        raise SystemExit(f"--images {args.images}: {error}") from None
    if images.shape[-1] % cfg.grid or images.shape[-2] % cfg.grid:
        raise SystemExit(f"image size {tuple(images.shape[-2:])} not divisible by grid "
                         f"{cfg.grid}; pass --image-size")
    log.info("quantify %d images, layer %s, on %s", len(ids), node, device)

    keep_freed_memory()  # as the pipeline's jobs: fewer page faults, the same numbers
    torch.set_num_threads(args.threads)
    from kdconcepts.numerics import problems as numerics_problems  # (the pins: kdconcepts.cli, before torch)

    wrong = numerics_problems(args.numerics, args.threads)
    if wrong:
        raise SystemExit(f"--numerics {args.numerics} did not take effect: " + "; ".join(wrong)
                         + " (run it as `kdconcepts quantify`, which sets the pins before torch starts)")
    tables = []
    for start in range(0, len(ids), args.batch_images):
        stop = min(start + args.batch_images, len(ids))
        tables.append(quantify_images(
            model, node, images[start:stop], ids[start:stop], cfg, seed=args.seed,
            device=device, max_batch=args.max_batch, precision=args.precision,
            progress_desc=f"images {start + 1}-{stop} of {len(ids)}"))
    table = pd.concat(tables, ignore_index=True)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.overwrite:  # only now that the new outputs are ready to be written
        _remove_earlier_outputs(args.out)
    _atomic(args.out / "entropy.parquet", lambda tmp: table.to_parquet(tmp, index=False))
    if skipped:
        _atomic(args.out / "skipped.csv", lambda tmp: pd.DataFrame(
            skipped, columns=["image", "reason"]).to_csv(tmp, index=False))

    grid = cfg.grid
    entropy = torch.from_numpy(np.stack(table["entropy"].to_list())).view(-1, grid, grid)
    fg = None
    if masks is not None:
        fg = downsample_mask(masks, grid)
        h_bar = background_baseline(entropy, fg)
        counts = concept_counts(entropy, fg, h_bar, b=args.b)
        concepts = pd.DataFrame({"image_id": ids, "usable": table["usable"],
                                 "h_bar": h_bar, "n_fg": counts.n_fg.numpy(),
                                 "n_bg": counts.n_bg.numpy(),
                                 "fg_ratio": counts.fg_ratio.numpy()})
        _atomic(args.out / "concepts.csv", lambda tmp: concepts.to_csv(tmp, index=False))
    if not args.no_figures:
        for i, image_id in enumerate(ids):
            row = table.iloc[i]
            title = (f"{image_id}: step {row['step']}, mean H {row['mean_entropy']:.3f}"
                     if row["usable"] else f"{image_id}: not usable (sigma_f = 0)")
            save_entropy_map(args.out / "maps" / f"{image_id}.png", images[i], entropy[i],
                             None if fg is None else fg[i], title=title)
    log.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
