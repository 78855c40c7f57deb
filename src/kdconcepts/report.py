"""The paper's table (LaTeX, booktabs) and the figures, from the result tables (the summary and
the report's front page: :mod:`kdconcepts.summary`).

Every output names the tables it was made from; numbers are never typed in by hand.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from kdconcepts.metrics import BESIDE, REPORTED  # noqa: E402
from kdconcepts.runtime import atomic_path  # noqa: E402

__all__ = ["METRIC_LABELS", "NETWORK_LABELS", "latex_table", "premise_sentence", "plot_concepts_vs_distance",
           "plot_differences", "plot_entropy_maps", "plot_sweep", "save_figure", "stack_architectures"]

NETWORK_LABELS = {"teacher": "Teacher", "distilled_student": "Distilled student",
                  "logit_student": "Logit student", "baseline": "Baseline"}
METRIC_LABELS = {"n_fg": "N_fg", "n_bg": "N_bg", "lambda": "lambda", "d_mean": "D_mean",
                 "d_std": "D_std", "d_var": "D_var", "rho": "rho"}
_HEADERS = {"n_fg": r"$N_{\mathrm{fg}}\uparrow$", "n_bg": r"$N_{\mathrm{bg}}\downarrow$",
            "lambda": r"$\lambda\uparrow$", "d_mean": r"$D_{\mathrm{mean}}\downarrow$",
            "d_var": r"$D_{\mathrm{var}}\downarrow$", "d_std": r"$D_{\mathrm{std}}\downarrow$",
            "rho": r"$\rho\uparrow$"}
# Decimal places; None: three significant digits (weight distances span orders of magnitude).
_DIGITS = {"n_fg": 2, "n_bg": 2, "lambda": 3, "d_mean": None, "d_var": None, "d_std": None, "rho": 3}
# \surd, \times and \circ are core LaTeX: the fragment needs only booktabs.
# (D_var, shown beside D_std, is not a seventh test: no verdict, no mark.)
_MARKS = {"held": r"$^{\surd}$", "reversed": r"$^{\times}$", "not significant": r"$^{\circ}$", BESIDE: ""}


def _escape(text: str) -> str:
    for char in "&%$#_{}":
        text = text.replace(char, "\\" + char)
    return text


def _number(value: float, digits: int | None) -> str:
    if not np.isfinite(value):
        return "--"
    return f"{value:.{digits}f}" if digits is not None else f"{value:.3g}"


def _with_ci(value: float, low: float, high: float, digits: int | None) -> str:
    text = _number(value, digits)
    if np.isfinite(low) and np.isfinite(high):
        text += rf" {{\scriptsize[{_number(low, digits)}, {_number(high, digits)}]}}"
    return text


def premise_sentence(premise: pd.DataFrame, networks: Sequence[str]) -> tuple[str, bool]:
    """The premise line and whether the premise held.

    Args:
        premise: ``premise.csv`` (:func:`kdconcepts.metrics.premise`): per seed the test
            accuracies, the teacher's lead over the baseline and whether it reached the margin.
        networks: the networks whose mean accuracy the line names (after the teacher).

    Returns:
        The line (mean test accuracies, the range of the teacher's lead, the margin, and
        "held" or "not held" with the smallest lead and its seed) and whether it held in
        every seed.
    """
    means = ", ".join(f"{NETWORK_LABELS.get(n, n).lower()} {premise[n].mean():.3f}"
                      for n in ["teacher", *networks] if n in premise)
    gaps = premise["teacher_minus_baseline"]
    margin = float(premise["premise_margin"].iloc[0])
    held = bool(premise["premise_held"].all())
    text = (f"test accuracy, mean over {len(premise)} seed(s): {means}; teacher minus baseline "
            f"{gaps.min():+.3f} to {gaps.max():+.3f}; premise (the teacher leads by at least "
            f"{margin:.2f} in every seed): ")
    if held:
        text += "held"
    else:
        weakest = premise.loc[gaps.idxmin()]
        text += (f"not held (smallest lead {weakest['teacher_minus_baseline']:+.3f}, seed "
                 f"{weakest['seed']})")
    return text, held


def _premise_of(hypotheses: pd.DataFrame, premise: pd.DataFrame) -> tuple[str, bool]:
    """:func:`premise_sentence` of one tree, or of every block of an architecture axis
    ("small_vgg: ...; small_resnet: ...", held when it held for each)."""
    networks = list(dict.fromkeys(hypotheses["student"])) + ["baseline"]
    if "architecture" not in hypotheses:
        return premise_sentence(premise, networks)
    parts = [(arch, *premise_sentence(of_premise, networks))
             for arch, _, of_premise, _ in _architecture_blocks(hypotheses, premise, None, "")]
    return "; ".join(f"{arch}: {sentence}" for arch, sentence, _ in parts), all(held for *_, held in parts)


def latex_table(hypotheses: pd.DataFrame, premise: pd.DataFrame, *, dataset: str = "",
                architecture: str = "", confidence: float = 0.95, caption: str | None = None,
                label: str = "tab:kd-concepts", teacher: pd.DataFrame | None = None) -> str:
    """The paper's results table, pooled over seeds, with confidence intervals.

    Per layer: one row per student and one for the baseline with each metric's mean over seeds
    and its interval, the student's cells marked by the verdict on the difference ($\\surd$
    held, $\\times$ reversed, $\\circ$ not significant), and a row per student with the
    difference and its interval. Rows where the paper's direction did not hold are shown like
    the others. The premise line (test accuracies) is part of the caption. With ``teacher``, a
    first row per layer gives the teacher's N_fg, N_bg and lambda at the final checkpoint on the
    same images, marked as context (no verdict; no D or rho: one checkpoint).

    Args:
        hypotheses: ``results/tables/hypotheses.csv`` (pooled) as a frame. With an
            ``architecture`` column (an architecture axis: :func:`stack_architectures`), one
            block of rows per architecture, each with its premise and teacher rows.
        premise: ``results/tables/premise.csv`` as a frame (with ``architecture`` likewise).
        teacher: ``results/tables/teacher.csv`` (:func:`kdconcepts.metrics.teacher_reference`).
    """
    students = list(dict.fromkeys(hypotheses["student"]))
    rows = []
    for arch, block, block_premise, block_teacher in _architecture_blocks(hypotheses, premise, teacher,
                                                                          architecture):
        rows += _latex_rows(block, block_premise, block_teacher, students, f"{arch} ({dataset})")
    frame = pd.DataFrame(rows)
    sentence, _ = _premise_of(hypotheses, premise)
    level = f"{100 * confidence:g}"
    caption = caption or (
        rf"Visual concepts of the students and the baseline (final checkpoint), means over "
        rf"{int(hypotheses['n_seeds'].max())} seed(s) with {level}\% t-intervals over seeds (the "
        rf"seed is the unit of replication). Arrows: the paper's direction; on a student, "
        rf"$\surd$ = held (the t-test of the per-seed differences, Holm-adjusted over the six "
        rf"hypotheses, rejects at {100 - float(level):g}\% in that direction), $\times$ = "
        rf"reversed (it rejects against it), $\circ$ = not significant."
        + (r" The teacher's row is context (final checkpoint, same images), not a hypothesis."
           if teacher is not None and len(teacher) else "")
        + (" One block per architecture, each its own pipeline (teacher, students, baseline, "
           "images)." if "architecture" in hypotheses else "")
        + rf" Premise: {_escape(sentence)}. Made from results/tables/hypotheses.csv, "
        + ("teacher.csv " if teacher is not None and len(teacher) else "") + "and premise.csv.")
    styler = frame.style.hide(axis="index")
    return styler.to_latex(hrules=True, column_format="ll" + "r" * (frame.shape[1] - 2),
                           caption=caption, label=label, position="t", position_float="centering")


def _architecture_blocks(hypotheses: pd.DataFrame, premise: pd.DataFrame, teacher: pd.DataFrame | None,
                         architecture: str):
    """(architecture, hypotheses, premise, teacher) per row block: one block, or one per value of
    an ``architecture`` column (the tables of an architecture axis, config ``architectures``)."""
    if "architecture" not in hypotheses:
        yield architecture, hypotheses, premise, teacher
        return
    for arch, block in hypotheses.groupby("architecture", sort=False):
        of_premise = premise[premise["architecture"] == arch].drop(columns="architecture")
        of_teacher = None if teacher is None else teacher[teacher["architecture"] == arch]
        yield arch, block, of_premise, of_teacher


def _latex_rows(hypotheses: pd.DataFrame, premise: pd.DataFrame, teacher: pd.DataFrame | None,
                students: list[str], model_label: str) -> list[dict]:
    """The table rows of one block (one architecture): per layer, the teacher's context row, each
    student with its difference row, then the baseline."""
    metrics = [m for m, _, _ in REPORTED]
    rows = []
    for layer, group in hypotheses.groupby("layer", sort=False):
        by = {(r.student, r.metric): r for r in group.itertuples()}
        model = _escape(f"{model_label}, {layer}")
        if teacher is not None and len(teacher[teacher["layer"] == layer]):
            of_teacher = teacher[teacher["layer"] == layer].drop_duplicates("metric").set_index("metric")
            cells = {"Model": model, "Network": "Teacher (context)"}
            for metric in metrics:
                cells[_HEADERS[metric]] = "--" if metric not in of_teacher.index else _with_ci(
                    *of_teacher.loc[metric, ["teacher_value", "teacher_ci_low", "teacher_ci_high"]],
                    _DIGITS[metric])
            cells["Acc."] = _number(premise["teacher"].mean(), 3) if "teacher" in premise else "--"
            rows.append(cells)
            model = ""
        for k, student in enumerate(students):
            cells = {"Model": model if k == 0 else "", "Network": NETWORK_LABELS.get(student, student)}
            for metric in metrics:
                r = by.get((student, metric))
                cells[_HEADERS[metric]] = "--" if r is None else (
                    _with_ci(r.student_value, r.student_ci_low, r.student_ci_high, _DIGITS[metric])
                    + _MARKS[r.verdict])
            cells["Acc."] = _number(premise[student].mean(), 3) if student in premise else "--"
            rows.append(cells)
            diff = {"Model": "", "Network": r"\quad $\Delta$ vs baseline"}
            for metric in metrics:
                r = by.get((student, metric))
                diff[_HEADERS[metric]] = "--" if r is None else _with_ci(
                    r.difference, r.ci_low, r.ci_high, _DIGITS[metric])
            diff["Acc."] = ""
            rows.append(diff)
        base = {"Model": "", "Network": NETWORK_LABELS["baseline"]}
        first = students[0]
        for metric in metrics:
            r = by.get((first, metric))
            base[_HEADERS[metric]] = "--" if r is None else _with_ci(
                r.baseline_value, r.baseline_ci_low, r.baseline_ci_high, _DIGITS[metric])
        base["Acc."] = _number(premise["baseline"].mean(), 3) if "baseline" in premise else "--"
        rows.append(base)
    return rows


def save_figure(fig, path: str | Path, settings: Mapping) -> None:
    """Write ``fig`` to ``path`` atomically (a partial file never looks finished), at the
    config's ``report`` settings (``dpi``, ``figure_format``), and close it."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=settings["dpi"], format=settings["figure_format"])
    plt.close(fig)


def plot_concepts_vs_distance(per_image: pd.DataFrame, layer: str, *, palette: str = "colorblind",
                              ax_size: float = 3.2):
    """N_fg and N_bg (mean over evaluated images, 95% CI) against the weight distance, one line
    per network and seed.

    The paper's Fig. 5: a distilled student should gain foreground concepts early in training
    (small weight distance) and gain fewer background ones.
    """
    data = per_image[(per_image["layer"] == layer) & per_image["weight_distance"].notna()].copy()
    data["network"] = data["network"].map(lambda n: NETWORK_LABELS.get(n, n))
    if "seed" not in data:
        data["seed"] = 0
    data["seed"] = data["seed"].astype(str)
    fig, axes = plt.subplots(1, 2, figsize=(2 * ax_size + 1.5, ax_size), sharex=True)
    for ax, col, title in ((axes[0], "n_fg", r"$N_{\mathrm{fg}}$ (foreground concepts)"),
                           (axes[1], "n_bg", r"$N_{\mathrm{bg}}$ (background concepts)")):
        sns.lineplot(data=data, x="weight_distance", y=col, hue="network", style="seed",
                     markers=True, dashes=False, errorbar=("ci", 95), palette=palette, ax=ax,
                     estimator="mean", seed=0)
        ax.set(xlabel="weight distance d(m)", ylabel=col.replace("n_", "N_"), title=title)
    axes[1].get_legend().remove()
    sns.move_legend(axes[0], "upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, title_fontsize=7)
    fig.suptitle(f"Concepts over training, layer {layer}")
    fig.tight_layout()
    return fig


def plot_differences(differences: pd.DataFrame, layer: str, *, palette: str = "colorblind",
                     confidence: float = 0.95, ax_size: float = 2.4,
                     teacher: pd.DataFrame | None = None):
    """For each metric, the student-minus-baseline difference with its interval, per seed and
    pooled (the pooled t-interval over seeds). The paper's direction is
    shaded: a pooled interval inside the shade has p < 1 - confidence before Holm's adjustment
    (the verdict, in hypotheses.csv, is the adjusted test's). With ``teacher``
    (``teacher.csv``), a dashed line on N_fg, N_bg and lambda marks the teacher-minus-baseline
    difference: where a student that copied the teacher would sit. With an ``architecture``
    column (:func:`stack_architectures`), one row of panels per architecture."""
    data = differences[differences["layer"] == layer].copy()
    data["seed"] = data["seed"].astype(str)
    metrics = [m for m, _, _ in REPORTED if m in set(data["metric"])]
    students = list(dict.fromkeys(data["student"]))
    colours = dict(zip(students, sns.color_palette(palette, len(students))))
    blocks = ([(None, data, teacher)] if "architecture" not in data else
              [(arch, block, None if teacher is None else teacher[teacher["architecture"] == arch])
               for arch, block in data.groupby("architecture", sort=False)])
    fig, axes = plt.subplots(len(blocks), len(metrics), squeeze=False,
                             figsize=(ax_size * len(metrics), (ax_size + 0.6) * len(blocks)))
    for row, (arch, block, of_teacher) in zip(axes, blocks):
        for ax, metric in zip(row, metrics):
            _difference_panel(ax, block[block["metric"] == metric], metric, layer, students, colours,
                              of_teacher)
        row[0].set_ylabel("student - baseline" if arch is None else f"{arch}\nstudent - baseline")
    legend = {}
    for ax in axes.flat:  # the teacher's line is on some panels only
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    axes[0, -1].legend(legend.values(), legend.keys(), fontsize=7, loc="best")
    fig.suptitle(f"Differences with {100 * confidence:g}% intervals, layer {layer} "
                 f"(shade: the paper's direction)", fontsize=10)
    fig.tight_layout()
    return fig


def _difference_panel(ax, of_metric: pd.DataFrame, metric: str, layer: str, students: list[str],
                      colours: dict, teacher: pd.DataFrame | None) -> None:
    """One panel of :func:`plot_differences`: one metric's differences, per seed and pooled."""
    seeds = [s for s in dict.fromkeys(of_metric["seed"]) if s != "pooled"] + ["pooled"]
    for j, student in enumerate(students):
        rows = of_metric[of_metric["student"] == student].set_index("seed").reindex(seeds)
        x = np.arange(len(seeds)) + (j - (len(students) - 1) / 2) * 0.2
        err = np.vstack([rows["difference"] - rows["ci_low"], rows["ci_high"] - rows["difference"]])
        ax.errorbar(x, rows["difference"], yerr=np.nan_to_num(err), fmt="o", color=colours[student],
                    label=NETWORK_LABELS.get(student, student), capsize=2, markersize=4)
        ax.plot(x[-1:], rows["difference"].to_numpy()[-1:], "D", color=colours[student], markersize=7)
    direction = of_metric["direction"].iloc[0]
    ax.axhline(0.0, color="black", linewidth=0.8)
    if teacher is not None:
        ref = teacher[(teacher["layer"] == layer) & (teacher["metric"] == metric)]
        if len(ref):
            ax.axhline(float(ref["teacher_minus_baseline"].iloc[0]), color="grey", linestyle="--",
                       linewidth=1.0, label="teacher - baseline")
    ylim = ax.get_ylim()
    ax.axhspan(0, ylim[1] if direction == "up" else ylim[0], color="green", alpha=0.08, linewidth=0)
    ax.set_ylim(ylim)
    ax.set_xticks(np.arange(len(seeds)), [f"seed {s}" if s != "pooled" else "pooled" for s in seeds],
                  rotation=45, fontsize=7)
    ax.set_title(f"{METRIC_LABELS[metric]} ({'up' if direction == 'up' else 'down'})", fontsize=9)


def stack_architectures(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """One table of an architecture axis from each architecture's own (its output tree's
    ``hypotheses.csv``, ``premise.csv``, ...): the rows in the given order, an ``architecture``
    column first. A table that already has that column is refused (stacked twice)."""
    frames = []
    for arch, table in tables.items():
        if "architecture" in table:
            raise ValueError(f"the {arch} table already has an architecture column")
        frames.append(table.assign(architecture=arch)[["architecture", *table.columns]])
    return pd.concat(frames, ignore_index=True)


def plot_sweep(sweep: pd.DataFrame, parameter: str, *, palette: str = "colorblind",
               confidence: float = 0.95, ax_size: float = 2.4):
    """Each metric's pooled student-minus-baseline difference, with its interval, against the
    swept parameter (one panel per metric, one line per student and layer)."""
    metrics = [m for m, _, _ in REPORTED if m in set(sweep["metric"])]
    fig, axes = plt.subplots(1, len(metrics), figsize=(ax_size * len(metrics), ax_size + 0.6), squeeze=False)
    groups = list(dict.fromkeys(zip(sweep["student"], sweep["layer"])))
    colours = dict(zip(groups, sns.color_palette(palette, len(groups))))
    for ax, metric in zip(axes[0], metrics):
        of_metric = sweep[sweep["metric"] == metric]
        for student, layer in groups:
            rows = of_metric[(of_metric["student"] == student) & (of_metric["layer"] == layer)] \
                .sort_values("value")
            err = np.vstack([rows["difference"] - rows["ci_low"], rows["ci_high"] - rows["difference"]])
            ax.errorbar(rows["value"], rows["difference"], yerr=np.nan_to_num(err), fmt="o-",
                        color=colours[(student, layer)], capsize=2, markersize=4,
                        label=f"{NETWORK_LABELS.get(student, student)}, {layer}")
        ax.axhline(0.0, color="black", linewidth=0.8)
        direction = of_metric["direction"].iloc[0]
        ylim = ax.get_ylim()
        ax.axhspan(0, ylim[1] if direction == "up" else ylim[0], color="green", alpha=0.08, linewidth=0)
        ax.set_ylim(ylim)
        ax.set_xlabel(parameter.replace("_", " "))
        ax.set_title(f"{METRIC_LABELS[metric]} ({direction})", fontsize=9)
    axes[0, 0].set_ylabel("student - baseline")
    axes[0, -1].legend(fontsize=7, loc="best")
    fig.suptitle(f"Student minus baseline against {parameter.replace('_', ' ')}, "
                 f"{100 * confidence:g}% intervals (shade: the paper's direction)", fontsize=10)
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
    import torch  # (here: the table and summary jobs import this module without torch)

    from kdconcepts.quantify import concept_counts

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
            concept = concept_counts(torch.from_numpy(np.asarray(entropy[net][i], dtype=np.float64)),
                                     torch.from_numpy(np.asarray(fg_grid[i], dtype=bool)), h_bar[net], b=b)
            ys, xs = np.nonzero(concept.is_concept[0].numpy())  # (the metrics' own rule)
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
