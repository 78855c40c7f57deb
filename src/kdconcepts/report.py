"""The paper's table (LaTeX, booktabs) and figures, from the metrics tables.

Every output names the table it was made from; numbers are never typed in by hand.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from kdconcepts.metrics import HYPOTHESES  # noqa: E402

__all__ = ["latex_table", "plot_concepts_vs_distance", "plot_entropy_maps"]

NETWORK_LABELS = {"teacher": "Teacher", "distilled_student": "Distilled student",
                  "baseline": "Baseline"}
_HEADERS = {"n_fg": r"$N_{\mathrm{fg}}\uparrow$", "n_bg": r"$N_{\mathrm{bg}}\downarrow$",
            "lambda": r"$\lambda\uparrow$", "d_mean": r"$D_{\mathrm{mean}}\downarrow$",
            "d_var": r"$D_{\mathrm{var}}\downarrow$", "d_std": r"$D_{\mathrm{std}}\downarrow$",
            "rho": r"$\rho\uparrow$", "test_accuracy": "Acc."}
_FORMATS = {"n_fg": "{:.2f}", "n_bg": "{:.2f}", "lambda": "{:.3f}", "d_mean": "{:.3f}",
            "d_var": "{:.4f}", "d_std": "{:.3f}", "rho": "{:.3f}", "test_accuracy": "{:.3f}"}
# \surd and \times are core LaTeX: the fragment needs only booktabs.
_HELD, _FAILED = r"$^{\surd}$", r"$^{\times}$"


def _escape(text: str) -> str:
    for char in "&%$#_{}":
        text = text.replace(char, "\\" + char)
    return text


def latex_table(metrics: pd.DataFrame, hypotheses: pd.DataFrame, *, caption: str | None = None,
                label: str = "tab:kd-concepts") -> str:
    """The paper's results table: a distilled-student row and a baseline row per (net, layer).

    The better value of each hypothesis column is bold; the student's value carries
    :math:`\\surd` where the paper's direction held and :math:`\\times` where it failed.
    ``d_var`` (the authors' np.var) is shown beside ``d_std``; both follow hypothesis 2.

    Args:
        metrics: ``results/tables/metrics.csv`` as a frame.
        hypotheses: ``results/tables/hypotheses.csv`` as a frame.
    """
    direction = {m: d for m, d, _ in HYPOTHESES} | {"d_var": "down"}
    held = {(r.layer, r.metric): bool(r.held) for r in hypotheses.itertuples()}
    held.update({(layer, "d_var"): held.get((layer, "d_std"), False)
                 for layer in metrics["layer"].unique()})
    rows = []
    for (dataset, arch, layer), group in metrics.groupby(["dataset", "architecture", "layer"], sort=False):
        group = group.set_index("network")
        for net in ("distilled_student", "baseline"):
            if net not in group.index:
                continue
            model = _escape(f"{arch} ({dataset}), {layer}")
            cells = {"Model": model if net == "distilled_student" else "",
                     "Network": NETWORK_LABELS[net]}
            for col, fmt in _FORMATS.items():
                value = group.loc[net, col]
                text = fmt.format(value) if np.isfinite(value) else "--"
                other = "baseline" if net == "distilled_student" else "distilled_student"
                if col in direction and other in group.index and np.isfinite(value):
                    rival = group.loc[other, col]
                    better = value > rival if direction[col] == "up" else value < rival
                    if better:
                        text = rf"\textbf{{{text}}}"
                    if net == "distilled_student":
                        text += _HELD if held.get((layer, col), False) else _FAILED
                cells[_HEADERS[col]] = text
            rows.append(cells)
    frame = pd.DataFrame(rows)
    caption = caption or (
        r"Visual concepts of the distilled student and the baseline (final checkpoint). "
        r"Arrows give the paper's expected direction; bold marks the better value; "
        r"$\surd$/$\times$: the direction held/failed. Made from results/tables/metrics.csv.")
    styler = frame.style.hide(axis="index")
    return styler.to_latex(hrules=True, column_format="ll" + "r" * (frame.shape[1] - 2),
                           caption=caption, label=label, position="t", position_float="centering")


def plot_concepts_vs_distance(per_image: pd.DataFrame, layer: str, *, palette: str = "colorblind",
                              ax_size: float = 3.2):
    """N_fg and N_bg (mean over evaluated images, 95% CI) against the weight distance.

    The paper's Fig. 5: a distilled student should gain foreground concepts early in training
    (small weight distance) and gain fewer background ones.
    """
    data = per_image[(per_image["layer"] == layer) & per_image["weight_distance"].notna()].copy()
    data["network"] = data["network"].map(NETWORK_LABELS)
    fig, axes = plt.subplots(1, 2, figsize=(2 * ax_size + 1, ax_size), sharex=True)
    for ax, col, title in ((axes[0], "n_fg", r"$N_{\mathrm{fg}}$ (foreground concepts)"),
                           (axes[1], "n_bg", r"$N_{\mathrm{bg}}$ (background concepts)")):
        sns.lineplot(data=data, x="weight_distance", y=col, hue="network", style="network",
                     markers=True, dashes=False, errorbar=("ci", 95), palette=palette, ax=ax,
                     estimator="mean", seed=0)
        ax.set(xlabel="weight distance d(m)", ylabel=col.replace("n_", "N_"), title=title)
    axes[1].get_legend().remove()
    fig.suptitle(f"Concepts over training, layer {layer}")
    fig.tight_layout()
    return fig


def plot_entropy_maps(images: np.ndarray, entropy: Mapping[str, np.ndarray],
                      fg_grid: np.ndarray, h_bar: Mapping[str, float], b: float,
                      image_ids: Sequence[str], *, cmap: str = "magma"):
    """Entropy maps of the same images for each network, concepts outlined.

    Args:
        images: [n,S,S,3] float images in [0, 1] (denormalised).
        entropy: network -> [n,G,G] entropy maps (final checkpoint).
        fg_grid: [n,G,G] foreground cells.
        h_bar: network -> background baseline of that map set.
        b: concept threshold; cells with ``h_bar - H > b`` are outlined (cyan foreground,
            white background).
    """
    nets = list(entropy)
    n = len(image_ids)
    vmin = min(float(np.min(e)) for e in entropy.values())
    vmax = max(float(np.max(e)) for e in entropy.values())
    fig, axes = plt.subplots(n, len(nets) + 1, figsize=(2.1 * (len(nets) + 1), 2.1 * n + 0.4),
                             squeeze=False)
    grid = fg_grid.shape[-1]
    for i in range(n):
        ax = axes[i, 0]
        ax.imshow(images[i], interpolation="nearest")
        ax.contour(np.kron(fg_grid[i], np.ones((images.shape[1] // grid,) * 2)), levels=[0.5],
                   colors="yellow", linewidths=0.8)
        ax.set_title(image_ids[i] if i else f"image\n{image_ids[i]}", fontsize=7)
        for j, net in enumerate(nets, start=1):
            ax = axes[i, j]
            im = ax.imshow(entropy[net][i], cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
            concept = (h_bar[net] - entropy[net][i]) > b
            ys, xs = np.nonzero(concept)
            fgc = fg_grid[i][ys, xs]
            ax.scatter(xs[fgc], ys[fgc], s=6, c="cyan", marker="s", linewidths=0)
            ax.scatter(xs[~fgc], ys[~fgc], s=6, c="white", marker="s", linewidths=0)
            if i == 0:
                ax.set_title(NETWORK_LABELS.get(net, net), fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=axes[:, 1:].ravel().tolist(), shrink=0.8, label="entropy $H_i$")
    return fig
