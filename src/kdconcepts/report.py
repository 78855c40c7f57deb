"""The paper's table (LaTeX, booktabs), the figures and the summary, from the result tables.

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

from kdconcepts import stats  # noqa: E402
from kdconcepts.metrics import BESIDE, REPORTED  # noqa: E402
from kdconcepts.runtime import atomic_path  # noqa: E402

__all__ = ["NETWORK_LABELS", "architectures_summary", "front_page_rst", "latex_table", "premise_sentence",
           "verdict_table", "plot_concepts_vs_distance", "plot_differences", "plot_entropy_maps",
           "plot_sweep", "run_command", "save_figure", "stack_architectures", "summary_markdown", "teacher_sentences"]

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


def _markdown_table(frame: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def _title(tree: str) -> str:
    """"Results: <run>", "Results: <run>/<architecture>" or "Results: <run>/<parameter>_<value>"."""
    return "Results" if tree == "results" else f"Results: {tree.removeprefix('results/')}"


def verdict_table(hypotheses: pd.DataFrame, confidence: float) -> pd.DataFrame:
    """The verdicts as a reader sees them (summary.md, the report's front page): per layer,
    student and metric the two values, the difference with its interval, the p-value and the
    verdict, formatted."""
    level = f"{100 * confidence:g}%"
    verdicts = hypotheses.assign(
        network=hypotheses["student"].map(lambda s: NETWORK_LABELS.get(s, s)),
        metric=hypotheses["metric"].map(METRIC_LABELS) + " (" + hypotheses["direction"] + ")",
        student=hypotheses["student_value"].map(lambda v: f"{v:.4g}"),
        baseline=hypotheses["baseline_value"].map(lambda v: f"{v:.4g}"),
        difference=[f"{d:+.4g} [{lo:.4g}, {hi:.4g}]" for d, lo, hi in
                    zip(hypotheses["difference"], hypotheses["ci_low"], hypotheses["ci_high"])],
        p=hypotheses["p_value"].map(_p_value),
        holm=hypotheses["holm_p"].map(_p_value),
        mde=[f"{m:.3g}" if np.isfinite(m) else "" for m in hypotheses["mde"]],
        pairs=[f"{n} ({s})" + (f", {k} dropped" if k else "") for n, s, k in
               zip(hypotheses["n_pairs"], hypotheses["n_seeds"], hypotheses["n_dropped"])],
    )[(["architecture"] if "architecture" in hypotheses else []) +
      ["layer", "network", "hypothesis", "metric", "student", "baseline", "difference", "p", "holm",
       "verdict", "mde", "pairs"]]
    return verdicts.rename(columns={"difference": f"difference [{level} CI]", "p": "t-test p",
                                    "holm": "Holm p", "mde": "MDE", "pairs": "image pairs (seeds)"})


def verdict_meaning(confidence: float, seeds: int) -> str:
    """What a verdict means, in one sentence (summary.md and the report's front page)."""
    alpha = f"{1 - confidence:.3g}"
    return (f"A verdict is about the training procedure, replicated by {seeds} seed(s), each training "
            f"its own teacher, student and baseline: `held` means the two-sided t-test of the "
            f"per-seed student-minus-baseline differences ({seeds} - 1 degrees of freedom), "
            f"Holm-adjusted over the row's six hypotheses, gives p < {alpha} with the difference "
            f"in the paper's direction, `reversed` the same against it, and `not significant` "
            f"anything else, an effect smaller than its MDE included.")


def _p_value(p: float) -> str:
    return "" if not np.isfinite(p) else f"{p:.3g}"


def teacher_sentences(teacher: pd.DataFrame) -> list[str]:
    """One sentence per (layer, student, metric) of ``teacher.csv`` comparing the student (and
    the baseline) with the teacher, e.g. "the distilled student keeps 99% of the teacher's
    foreground concepts (23.0 of 23.1); the baseline has 26% (5.9)"."""
    what = {"n_fg": "foreground concepts", "n_bg": "background concepts",
            "lambda": "share of foreground concepts"}
    out = []
    for row in teacher.itertuples(index=False):
        student = NETWORK_LABELS.get(row.student, row.student).lower()
        if not np.isfinite(row.student_share):
            out.append(f"Layer {row.layer}, {METRIC_LABELS[row.metric]}: the teacher has none "
                       f"({row.teacher_value:.3g}); the {student} {row.student_value:.3g}, the "
                       f"baseline {row.baseline_value:.3g}.")
            continue
        verb = "keeps" if row.metric == "n_fg" else "has"
        out.append(f"Layer {row.layer}, {METRIC_LABELS[row.metric]}: the {student} {verb} "
                   f"{100 * row.student_share:.0f}% of the teacher's {what[row.metric]} "
                   f"({row.student_value:.3g} against {row.teacher_value:.3g}); the baseline "
                   f"{100 * row.baseline_share:.0f}% ({row.baseline_value:.3g}).")
    return out


def front_page_rst(*, tree: str, hypotheses: pd.DataFrame, premise: pd.DataFrame,
                   confidence: float, figures: Sequence[str | Path]) -> str:
    """The report's front page (``snakemake --report``): the answer first, the premise line and
    the verdict table, then the forest plot(s) of the differences, then the workflow.

    reStructuredText, as Snakemake renders its report description; the table and the figures
    are raw HTML (a PNG is embedded, another format is named), so the page needs no other file.
    """
    import base64
    import html

    sentence, held = _premise_of(hypotheses, premise)
    verdicts = verdict_table(hypotheses, confidence)
    # The answer first in the narrow column Snakemake gives the description: the verdict beside
    # the metric, then the numbers behind it.
    first = (["architecture"] if "architecture" in verdicts else []) + [
        "metric", "verdict", f"difference [{100 * confidence:g}% CI]", "student", "baseline", "network",
        "layer"]
    verdicts = verdicts[first + [c for c in verdicts.columns if c not in first + ["hypothesis"]]]
    table = verdicts.to_html(index=False, border=0, classes="verdicts", escape=True)
    seeds = int(hypotheses["n_seeds"].max())
    images = []
    for figure in figures:
        figure = Path(figure)
        if figure.suffix == ".png":
            data = base64.encodebytes(figure.read_bytes()).decode("ascii")  # 76-char lines:
            # docutils refuses longer ones, and browsers skip whitespace in base64 data URLs
            images.append(f'<img alt="{html.escape(figure.name)}" style="max-width: 100%" '
                          f'src="data:image/png;base64,\n{data}">')
        else:
            images.append(f"<p>{html.escape(str(figure))} (see Results)</p>")
    lines = [
        _title(tree), "=" * len(_title(tree)), "",
        f"**Premise {'held' if held else 'NOT held'}**: {sentence}.", "",
        f"**Verdicts**, pooled over {seeds} seed(s). "
        + verdict_meaning(confidence, seeds).replace("`", "``")
        + f" From ``{tree}/tables/hypotheses.csv``; all of it in ``{tree}/summary.md``.", "",
        ".. raw:: html", "",
        '   <div style="overflow-x: auto; max-width: 100%; font-size: 80%">',
        *("   " + line for line in table.splitlines()),
        "   </div>", "",
        "**Differences with their intervals**, per seed and pooled (the forest plot):", "",
        ".. raw:: html", "",
        *("   " + line for image in images for line in image.splitlines()), "",
        "kdconcepts reproduces Cheng, Rao, Chen and Zhang, *Explaining Knowledge Distillation by "
        "Quantifying the Knowledge* (CVPR 2020). The workflow that made these numbers follows; "
        "every figure, with its caption, is under Results.", "",
    ]
    return "\n".join(lines)


def _teacher_table(teacher: pd.DataFrame, confidence: float) -> pd.DataFrame:
    return pd.DataFrame({
        "layer": teacher["layer"],
        "metric": teacher["metric"].map(METRIC_LABELS),
        f"teacher [{100 * confidence:g}% CI]": [f"{v:.4g} [{lo:.4g}, {hi:.4g}]" for v, lo, hi in zip(
            teacher["teacher_value"], teacher["teacher_ci_low"], teacher["teacher_ci_high"])],
        "student": teacher["student"].map(lambda s: NETWORK_LABELS.get(s, s)),
        "student value": teacher["student_value"].map(lambda v: f"{v:.4g}"),
        "student / teacher": teacher["student_share"].map(lambda v: f"{100 * v:.0f}%" if np.isfinite(v) else ""),
        "baseline value": teacher["baseline_value"].map(lambda v: f"{v:.4g}"),
        "baseline / teacher": teacher["baseline_share"].map(lambda v: f"{100 * v:.0f}%" if np.isfinite(v) else ""),
    })


def _zero_concept_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per layer and network, the images without a foreground concept at any checkpoint, summed
    over seeds, out of the evaluated images."""
    seeds = metrics[metrics["seed"].astype(str) != "pooled"]
    table = seeds.groupby(["layer", "network"], sort=False, as_index=False)[
        ["no_fg_concept_images", "n_images"]].sum().astype({"no_fg_concept_images": int, "n_images": int})
    table["network"] = table["network"].map(lambda n: NETWORK_LABELS.get(n, n))
    return table.rename(columns={"no_fg_concept_images": "images without a foreground concept",
                                 "n_images": "evaluated images (all seeds)"})


def _images_per_seed(selection: pd.DataFrame) -> str:
    """The evaluated images per seed, "4" or "3-4" when seeds differ."""
    evaluated = selection["evaluated"].astype(int)
    low, high = int(evaluated.min()), int(evaluated.max())
    return f"{low}" if low == high else f"{low}-{high}"


def _seed_test_lines(differences: pd.DataFrame, confidence: float) -> list[str]:
    """The per-seed Wilcoxon tests, where a seed has enough pairs to reject; else one line."""
    per_seed = differences[differences["seed"].astype(str) != "pooled"]
    if per_seed["wilcoxon_p"].notna().any():
        return ["Per seed, the two-sided Wilcoxon signed-rank test on that seed's image pairs, where "
                "it can reject (descriptive: each seed alone; the verdicts come from the seeds "
                "together):", "", _markdown_table(_seed_tests(differences)), ""]
    pairs = int(per_seed["n_pairs"].max()) if len(per_seed) else 0
    return [f"Per-seed Wilcoxon tests: too few pairs per seed (at most {pairs}: the smallest "
            f"two-sided p is {stats.smallest_wilcoxon_p(pairs):.3g}, not below "
            f"{1 - confidence:.3g}).", ""]


def _seed_tests(differences: pd.DataFrame) -> pd.DataFrame:
    """The per-seed Wilcoxon p-values: one row per (layer, student, metric), one column per seed."""
    rows = differences[(differences["seed"].astype(str) != "pooled") & differences["wilcoxon_p"].notna()]
    wide = rows.assign(seed="seed " + rows["seed"].astype(str),
                       metric=rows["metric"].map(METRIC_LABELS),
                       student=rows["student"].map(lambda s: NETWORK_LABELS.get(s, s)),
                       p=rows["wilcoxon_p"].map(_p_value))
    order = {METRIC_LABELS[m]: k for k, (m, _, _) in enumerate(REPORTED)}
    table = wide.pivot(index=["layer", "student", "metric"], columns="seed", values="p") \
        .reindex(columns=sorted(set(wide["seed"]))).reset_index()
    return table.sort_values(["layer", "student", "metric"], key=lambda c: c.map(order) if c.name == "metric" else c,
                             kind="stable").rename_axis(columns=None)


def run_command(config_files: Sequence[str], default: str = "config/config.yaml") -> tuple[str, str]:
    """The command that makes a run's results and the config it reads, as a summary names them:
    ``("snakemake --cores all --configfile X", "config/config.yaml, overridden by X")``.
    ``config_files`` are the run's config files (relative paths); the default one is implied."""
    extra = [f for f in config_files if Path(f).as_posix() != default]
    return ("snakemake --cores all" + "".join(f" --configfile {f}" for f in extra),
            default + "".join(f", overridden by {f}" for f in extra))


def summary_markdown(*, command: str, tree: str, hypotheses: pd.DataFrame, premise: pd.DataFrame,
                     selection: pd.DataFrame, work: pd.DataFrame, times: pd.DataFrame,
                     confidence: float, config_name: str, teacher: pd.DataFrame | None = None,
                     metrics: pd.DataFrame | None = None, differences: pd.DataFrame | None = None,
                     zero_concept_images: str = "keep") -> str:
    """``results/summary.md``: the premise line, the verdicts, the teacher beside the student,
    the images, and the time and passes spent.

    Args:
        command: the command that made it (quoted in the text).
        hypotheses, premise, selection, work: the pooled tables of the tree.
        times: one row per job (``stage``, ``seconds``, ``cpu_seconds``), from the benchmarks.
        teacher, metrics, differences: ``teacher.csv`` (the context rows and sentences),
            ``metrics.csv`` (images without a foreground concept) and ``differences.csv`` (the
            per-seed Wilcoxon tests); each section is left out without its table.
        zero_concept_images: the ``metrics.zero_concept_images`` rule the run used.
    """
    students = list(dict.fromkeys(hypotheses["student"]))
    sentence, held = premise_sentence(premise, students + ["baseline"])
    level = f"{100 * confidence:g}%"
    verdicts = verdict_table(hypotheses, confidence)
    per_seed_acc = premise.rename(columns=lambda c: NETWORK_LABELS.get(c, c)).round(4)
    totals = work.groupby("network", sort=False, as_index=False)[["maps", "sample_passes"]].sum()
    totals.loc[len(totals)] = ["total", int(work["maps"].sum()), int(work["sample_passes"].sum())]
    stage_times = times.groupby("stage", sort=False, as_index=False)[["seconds", "cpu_seconds"]].sum()
    stage_times.loc[len(stage_times)] = ["total", times["seconds"].sum(), times["cpu_seconds"].sum()]
    stage_times = stage_times.round(1)
    seeds = int(hypotheses["n_seeds"].max())
    lines = [
        f"# {_title(tree)}",
        "",
        f"Made by `{command}` from `{config_name}` (rule `summary`; every number below is read "
        f"from the tables in `{tree}/tables/`, which trace back to the per-image rows of "
        f"`{tree}/tables/images.csv`).",
        "",
        "## Premise",
        "",
        f"{'Held' if held else '**Not held**'}: {sentence}.",
        "",
        _markdown_table(per_seed_acc),
        "",
        "## Verdicts",
        "",
        verdict_meaning(confidence, seeds),
        "",
        f"Design: {seeds} seed(s) x {_images_per_seed(selection)} evaluated image(s) per seed "
        f"(config `seeds`, `metrics.effective`). The seed is the unit of replication: each seed "
        f"gives one difference, that of the two networks' metrics on its image pairs (an image "
        f"without a value for one network, such as a rho without concepts, is dropped from both "
        f"and counted). Values are means over seeds; {level} t-intervals over seeds; `t-test p` "
        f"and its `Holm p` decide the verdict (D_var is D_std squared, shown beside it, not a "
        f"seventh test). `MDE`: the minimum detectable effect, the smallest |difference| this "
        f"design detects with power {stats.POWER:g} at the Bonferroni level "
        f"{(1 - confidence) / 6:.3g} that bounds Holm's first step, given the seed-to-seed "
        f"standard deviation of the differences measured here (`seed_sd` in hypotheses.csv).",
        "",
        _markdown_table(verdicts),
        "",
    ]
    if teacher is not None and len(teacher):
        lines += [
            "## The teacher beside the students",
            "",
            f"Context, not a hypothesis: the teacher's N_fg, N_bg and lambda at the final "
            f"checkpoint on the same evaluated images (from `{tree}/tables/teacher.csv`), beside "
            f"each student and the baseline; means over seeds, the teacher's {level} interval "
            f"a t-interval over seeds.",
            "",
            _markdown_table(_teacher_table(teacher, confidence)),
            "",
            *[f"- {sentence}" for sentence in teacher_sentences(teacher)],
            "",
        ]
    lines += [
        "## Images",
        "",
        _markdown_table(selection),
        "",
    ]
    if metrics is not None and "no_fg_concept_images" in metrics:
        rule = ("kept, as the authors' argmax does: m_hat is the first checkpoint and d its "
                "distance" if zero_concept_images == "keep" else
                "dropped from D_mean and D_std (and from the other network of each pair)")
        lines += [
            f"Images with no foreground concept at any checkpoint (`metrics.zero_concept_images: "
            f"{zero_concept_images}`: {rule}):",
            "",
            _markdown_table(_zero_concept_table(metrics)),
            "",
        ]
    if differences is not None and "wilcoxon_p" in differences:
        lines += _seed_test_lines(differences, confidence)
    lines += [
        "## Work and time",
        "",
        "Quantification work in single-sample passes (forward+backward of one noisy image; the "
        "sigma_f estimates count K forwards each):",
        "",
        _markdown_table(totals),
        "",
        "Job time from Snakemake's benchmark files (`logs/benchmarks/`) of the jobs finished before "
        "this summary (not the figures and report jobs that run beside or after it), summed over "
        "jobs (wall seconds of each job, not of the run: jobs run in parallel):",
        "",
        _markdown_table(stage_times),
        "",
    ]
    return "\n".join(lines)


def architectures_summary(*, command: str, config_name: str, hypotheses: pd.DataFrame,
                          premise: pd.DataFrame, confidence: float, summaries: Mapping[str, str],
                          trees: Mapping[str, str]) -> str:
    """``results/summary.md`` of an architecture axis (config ``architectures``): the premise and
    the verdicts of every architecture, one block each, a line per hypothesis across them, then
    each architecture's own summary.

    Args:
        command: the command that made it.
        config_name: the config file(s) it read.
        hypotheses, premise: the stacked tables (:func:`stack_architectures`).
        summaries: architecture -> the text of its tree's ``summary.md``.
        trees: architecture -> its output tree (``results/small_vgg``).
    """
    sentence, held = _premise_of(hypotheses, premise)
    level = f"{100 * confidence:g}%"
    across = []
    for (layer, student, metric), rows in hypotheses.groupby(["layer", "student", "metric"], sort=False):
        verdicts = ", ".join(f"{r.verdict} ({r.architecture})" for r in rows.itertuples())
        same = rows["verdict"].nunique() == 1
        across.append(f"- {METRIC_LABELS[metric]} ({rows['direction'].iloc[0]}), "
                      f"{NETWORK_LABELS.get(student, student).lower()}, layer {layer}: {verdicts}"
                      + ("" if same else "; **the architectures disagree**") + ".")
    lines = [
        f"# Results: {len(summaries)} architectures",
        "",
        f"Made by `{command}` from `{config_name}` (rule `architectures`). Each "
        f"architecture ran the whole pipeline in its own output tree "
        f"({', '.join(f'`{t}/`' for t in trees.values())}); the tables here stack theirs "
        f"(`results/tables/hypotheses.csv`, `premise.csv`, with an `architecture` column), and "
        f"each tree's own summary follows. Holm's adjustment is within an architecture.",
        "",
        "## Premise",
        "",
        f"{'Held' if held else '**Not held**'} for {'every' if held else 'some'} architecture: "
        f"{sentence}.",
        "",
        "## Verdicts by architecture",
        "",
        f"Pooled over seeds within each architecture; {level} intervals; every row is shown, "
        f"whatever it says.",
        "",
        _markdown_table(verdict_table(hypotheses, confidence)),
        "",
        "Across architectures:",
        "",
        *across,
        "",
    ]
    for arch, text in summaries.items():
        body = text.split("\n", 1)[1] if text.startswith("# ") else text
        lines += [f"## {arch} (`{trees[arch]}/summary.md`)", "",
                  *[("#" + line if line.startswith("#") else line) for line in body.strip().splitlines()], ""]
    return "\n".join(lines)
