"""How exact are the photographs dataset's masks? (docs/DATA.md, "The photographs dataset")

Not a test. On Fashion-MNIST itself (the installed Debian files, checked against their pinned
SHA-256) it prints, over every item of both splits:

  * the share of border pixels that are exactly 0 (the items sit on black);
  * the share of the item's nonzero pixels at or below ``mask_threshold`` (faint pixels the
    mask leaves out: the item's photograph has them, the written image does not, since only
    masked pixels are pasted);
  * the share of mask pixels added by hole filling (dark pixels inside the item, pasted as
    they are: part of the object in the written image);

and writes a figure of prepared images with their masks (``--figure``), from a prepared set.

    PYTHONPATH=src python benchmarks/photos_masks.py --root data/photos/target --figure docs/figures/photos_examples.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from kdconcepts.data import photos as P  # noqa: E402


def mask_statistics(items: np.ndarray, threshold: int) -> dict[str, float]:
    """Shares over ``items`` (N x 28 x 28 uint8): border pixels at 0, faint nonzero pixels left
    out of the mask, mask pixels from hole filling."""
    border = np.concatenate([items[:, 0], items[:, -1], items[:, 1:-1, 0], items[:, 1:-1, -1]], axis=1)
    nonzero = items > 0
    above = items > threshold
    filled = np.stack([P.item_mask(item, threshold) for item in items])
    return {"border_zero": float((border == 0).mean()),
            "faint_left_out": float((nonzero & ~above).sum() / nonzero.sum()),
            "filled_holes": float((filled & ~above).sum() / filled.sum()),
            "items": int(len(items))}


def figure(root: Path, out: Path, n: int = 10) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from kdconcepts.data import load_split

    train = load_split(root, "train", normalize=False)
    picks = [int(np.flatnonzero(train.labels.numpy() == c)[0]) for c in range(min(n, len(P.CLASSES)))]
    fig, axes = plt.subplots(2, len(picks), figsize=(1.3 * len(picks), 2.8))
    for k, i in enumerate(picks):
        axes[0, k].imshow(train.images[i].permute(1, 2, 0).numpy())
        axes[1, k].imshow(train.masks[i].numpy(), cmap="gray", vmin=0, vmax=1)
        axes[0, k].set_title(P.CLASSES[int(train.labels[i])].replace("_", " "), fontsize=7)
        for ax in axes[:, k]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("image", fontsize=8)
    axes[1, 0].set_ylabel("mask", fontsize=8)
    fig.suptitle(f"{root}: one training image per class and its mask", fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threshold", type=int, default=P.DEFAULT_PARAMS["mask_threshold"])
    parser.add_argument("--root", type=Path, default=None, help="a prepared photos set, for --figure")
    parser.add_argument("--figure", type=Path, default=None)
    args = parser.parse_args(argv)
    arrays = P.fashion_mnist(P.DEFAULT_PARAMS["sources"])
    for split in ("train", "test"):
        stats = mask_statistics(arrays[f"{split}_images"], args.threshold)
        print(f"{split}: {stats['items']} items; border pixels exactly 0: {100 * stats['border_zero']:.1f}%; "
              f"nonzero pixels at or below {args.threshold} (left out of the mask): "
              f"{100 * stats['faint_left_out']:.2f}%; mask pixels from hole filling: "
              f"{100 * stats['filled_holes']:.2f}%")
    if args.figure is not None:
        if args.root is None:
            parser.error("--figure needs --root")
        figure(args.root, args.figure)
        print(f"wrote {args.figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
