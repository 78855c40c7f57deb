"""summary.md and the report's front page, from the result tables: the premise, the verdicts and
what they mean, the teacher beside the students, the images, the host and the work.

Every number is read from the tables (showyourwork style); none is typed in by hand.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from kdconcepts import stats
from kdconcepts.metrics import REPORTED
from kdconcepts.report import METRIC_LABELS, NETWORK_LABELS, _premise_of, premise_sentence

__all__ = ["architectures_summary", "front_page_rst", "host_lines", "run_command", "summary_markdown",
           "runs_summary", "teacher_sentences", "verdict_meaning", "verdict_table", "with_verification"]


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
                   confidence: float, figures: Sequence[str | Path], host: Mapping | None = None) -> str:
    """The report's front page (``snakemake --report``): the answer first, the premise line and
    the verdict table, then the forest plot(s) of the differences, the host (``host.json``),
    then the workflow.

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
        *(["**Host**: " + _host_sentence(host), ""] if host else []),
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


def _premise_section(premise: pd.DataFrame, networks: list[str]) -> list[str]:
    sentence, held = premise_sentence(premise, networks)
    per_seed = premise.rename(columns=lambda c: NETWORK_LABELS.get(c, c)).round(4)
    return ["## Premise", "", f"{'Held' if held else '**Not held**'}: {sentence}.", "", _markdown_table(per_seed), ""]


def _verdict_section(hypotheses: pd.DataFrame, selection: pd.DataFrame, confidence: float) -> list[str]:
    seeds = int(hypotheses["n_seeds"].max())
    return [
        "## Verdicts", "", verdict_meaning(confidence, seeds), "",
        f"Design: {seeds} seed(s) x {_images_per_seed(selection)} evaluated image(s) per seed "
        f"(config `seeds`, `metrics.effective`). The seed is the unit of replication: each seed "
        f"gives one difference, that of the two networks' metrics on its image pairs (an image "
        f"without a value for one network, such as a rho without concepts, is dropped from both "
        f"and counted). Values are means over seeds; {100 * confidence:g}% t-intervals over seeds; "
        f"`t-test p` and its `Holm p` decide the verdict (D_var is D_std squared, shown beside it, "
        f"not a seventh test). `MDE`: the minimum detectable effect, the smallest |difference| this "
        f"design detects with power {stats.POWER:g} at the Bonferroni level "
        f"{(1 - confidence) / 6:.3g} that bounds Holm's first step, given the seed-to-seed "
        f"standard deviation of the differences measured here (`seed_sd` in hypotheses.csv).",
        "", _markdown_table(verdict_table(hypotheses, confidence)), ""]


def _teacher_section(tree: str, teacher: pd.DataFrame, confidence: float) -> list[str]:
    return [
        "## The teacher beside the students", "",
        f"Context, not a hypothesis: the teacher's N_fg, N_bg and lambda at the final checkpoint on "
        f"the same evaluated images (from `{tree}/tables/teacher.csv`), beside each student and the "
        f"baseline; means over seeds, the teacher's {100 * confidence:g}% interval a t-interval over "
        f"seeds.", "", _markdown_table(_teacher_table(teacher, confidence)), "",
        *[f"- {sentence}" for sentence in teacher_sentences(teacher)], ""]


def _images_section(selection: pd.DataFrame, metrics: pd.DataFrame | None, differences: pd.DataFrame | None,
                    zero_concept_images: str, confidence: float) -> list[str]:
    lines = ["## Images", "", _markdown_table(selection), ""]
    if metrics is not None and "no_fg_concept_images" in metrics:
        rule = ("kept, as the authors' argmax does: m_hat is the first checkpoint and d its "
                "distance" if zero_concept_images == "keep" else
                "dropped from D_mean and D_std (and from the other network of each pair)")
        lines += [f"Images with no foreground concept at any checkpoint (`metrics.zero_concept_images: "
                  f"{zero_concept_images}`: {rule}):", "", _markdown_table(_zero_concept_table(metrics)), ""]
    if differences is not None and "wilcoxon_p" in differences:
        lines += _seed_test_lines(differences, confidence)
    return lines


def with_verification(front: str | Path, verify_md: str | Path, out: str | Path) -> Path:
    """The front page with ``kdconcepts verify``'s answer (verify.md) after its title: the answer
    as text, the rest as a literal block."""
    page = Path(front).read_text(encoding="utf-8").splitlines()
    answer, _, rest = Path(verify_md).read_text(encoding="utf-8").partition("\n## ")
    title, body = answer.strip().splitlines()[0].lstrip("# "), answer.strip().splitlines()[1:]
    section = [f"**{title}** (``kdconcepts verify``; all of it in ``{verify_md}``):", "",
               *[line.replace("**", "") for line in body if line.strip()], "", "::", "",
               *("    " + line for line in ("## " + rest).splitlines()), ""]
    Path(out).write_text("\n".join(page[:3] + section + page[3:]) + "\n", encoding="utf-8")
    return Path(out)


def _host_sentence(host: Mapping) -> str:
    """One line: the numerics and each host's CPU, kernels and torch."""
    hosts = "; ".join(f"{h['cpu_model']} ({h['cpu_level']}, {h['cores']} cores), kernels {h['kernels']}, torch "
                      f"{h['torch']}, {h['jobs']} compute job(s)" for h in host["hosts"]) or "no compute job recorded"
    return f"numerics ``{host['numerics']}``; {hosts} (``host.json``)."


def host_lines(host: Mapping) -> list[str]:
    """Where and how a run computed (``host.json``): per host its CPU, kernels and pins."""
    lines = [f"Numerics: `{host['numerics']}`" + (" (PyTorch's kernels, oneDNN and MKL pinned to AVX2, MKL "
             "in COMPATIBLE mode, fixed threads: the same bits on every x86-64 host)"
             if host["numerics"] == "portable" else " (the host's fastest kernels: numbers depend on the host)")
             + ". The compute jobs ran on:", ""]
    rows = [{"CPU": h["cpu_model"], "level": h["cpu_level"], "cores": h["cores"], "kernels": h["kernels"],
             "torch": h["torch"], "MKL": h["mkl"], "oneDNN": h["onednn"],
             "pins": ", ".join(f"{k}={v}" for k, v in h["pins"].items() if v) or "none",
             "lock sha256": (h["lock_sha256"] or "")[:12], "jobs": h["jobs"]} for h in host["hosts"]]
    return lines + [_markdown_table(pd.DataFrame(rows)) if rows else "(no compute job recorded)", ""]


def _work_section(work: pd.DataFrame, times: pd.DataFrame) -> list[str]:
    totals = work.groupby("network", sort=False, as_index=False)[["maps", "sample_passes"]].sum()
    totals.loc[len(totals)] = ["total", int(work["maps"].sum()), int(work["sample_passes"].sum())]
    stage_times = times.groupby("stage", sort=False, as_index=False)[["seconds", "cpu_seconds"]].sum()
    stage_times.loc[len(stage_times)] = ["total", times["seconds"].sum(), times["cpu_seconds"].sum()]
    return [
        "## Work and time", "",
        "Quantification work in single-sample passes (forward+backward of one noisy image; the "
        "sigma_f estimates count K forwards each):", "", _markdown_table(totals), "",
        "Job time from Snakemake's benchmark files (`logs/benchmarks/`) of the jobs finished before "
        "this summary (not the figures and report jobs that run beside or after it), summed over "
        "jobs (wall seconds of each job, not of the run: jobs run in parallel):", "",
        _markdown_table(stage_times.round(1)), ""]


def summary_markdown(*, command: str, tree: str, hypotheses: pd.DataFrame, premise: pd.DataFrame,
                     selection: pd.DataFrame, work: pd.DataFrame, times: pd.DataFrame,
                     confidence: float, config_name: str, teacher: pd.DataFrame | None = None,
                     metrics: pd.DataFrame | None = None, differences: pd.DataFrame | None = None,
                     zero_concept_images: str = "keep", host: Mapping | None = None) -> str:
    """``results/<run>/summary.md``: the premise line, the verdicts, the teacher beside the student,
    the images, the host and the time and passes spent.

    Args:
        command: the command that made it (quoted in the text).
        hypotheses, premise, selection, work: the pooled tables of the tree.
        times: one row per job (``stage``, ``seconds``, ``cpu_seconds``), from the benchmarks.
        teacher, metrics, differences, host: ``teacher.csv`` (the context rows and sentences),
            ``metrics.csv`` (images without a foreground concept), ``differences.csv`` (the
            per-seed Wilcoxon tests) and ``host.json``; each section is left out without it.
        zero_concept_images: the ``metrics.zero_concept_images`` rule the run used.
    """
    students = list(dict.fromkeys(hypotheses["student"]))
    lines = [f"# {_title(tree)}", "",
             f"Made by `{command}` from `{config_name}` (rule `summary`; every number below is read "
             f"from the tables in `{tree}/tables/`, which trace back to the per-image rows of "
             f"`{tree}/tables/images.csv`).", ""]
    lines += _premise_section(premise, students + ["baseline"])
    lines += _verdict_section(hypotheses, selection, confidence)
    if teacher is not None and len(teacher):
        lines += _teacher_section(tree, teacher, confidence)
    lines += _images_section(selection, metrics, differences, zero_concept_images, confidence)
    if host is not None:
        lines += ["## Host", "", *host_lines(host)]
    lines += _work_section(work, times)
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


def runs_summary(runs: Mapping[str, Path], confidence: float = 0.95) -> str:
    """One summary of several runs (``make reproduce-all``): their verdict tables stacked, a run
    column first, and each run's premise line and summary named.

    Args:
        runs: run name -> its folder (``results/<run>``), each with ``tables/hypotheses.csv`` and
            ``tables/premise.csv`` (stacked over architectures where the run has several).
    """
    blocks, premises = [], []
    for name, folder in runs.items():
        hypotheses = pd.read_csv(Path(folder) / "tables/hypotheses.csv")
        premise = pd.read_csv(Path(folder) / "tables/premise.csv")
        sentence, held = _premise_of(hypotheses, premise)
        premises.append(f"- `{name}` ({'held' if held else '**not held**'}): {sentence}. All of it in "
                        f"`{folder}/summary.md`.")
        blocks.append(verdict_table(hypotheses, confidence).assign(run=name))
    table = pd.concat(blocks, ignore_index=True)
    table = table[["run"] + [c for c in table.columns if c != "run"]]
    seeds = sorted({int(pd.read_csv(Path(f) / "tables/hypotheses.csv")["n_seeds"].max()) for f in runs.values()})
    return "\n".join([
        f"# Results of {len(runs)} runs", "",
        f"Made by `kdconcepts summarize {' '.join(runs)}` from each run's tables; every row of every run "
        "is shown, whatever it says.", "",
        verdict_meaning(confidence, seeds[-1]).replace(f"{seeds[-1]} seed(s)", "the run's seeds"), "",
        "## Premise", "", *premises, "",
        "## Verdicts", "", _markdown_table(table), ""])


def _main_summarize(argv: list[str] | None = None) -> int:
    """``kdconcepts summarize RUN [RUN ...] [--out FILE]``: :func:`runs_summary` of finished runs."""
    import argparse
    import sys

    from kdconcepts.runtime import atomic_path

    parser = argparse.ArgumentParser(prog="kdconcepts summarize", description="stack the verdicts of runs")
    parser.add_argument("runs", nargs="+", help="run names (folders under results/)")
    parser.add_argument("--out", type=Path, default=Path("results/summary.md"))
    args = parser.parse_args(argv)
    missing = [r for r in args.runs if not (Path("results") / r / "tables/hypotheses.csv").is_file()]
    if missing:
        print(f"kdconcepts summarize: not finished (no results/<run>/tables/hypotheses.csv): {', '.join(missing)}",
              file=sys.stderr)
        return 2
    with atomic_path(args.out) as tmp:
        tmp.write_text(runs_summary({r: Path("results") / r for r in args.runs}), encoding="utf-8")
    print(f"{args.out}: the verdicts of {', '.join(args.runs)}")
    return 0
