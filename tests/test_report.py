"""The LaTeX table and the figures, from small metric tables."""

import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from kdconcepts.metrics import pooled_hypotheses, premise, seed_differences, teacher_reference
from kdconcepts.report import (latex_table, plot_concepts_vs_distance, plot_differences, plot_entropy_maps,
                               plot_sweep, premise_sentence, save_figure)
from kdconcepts.summary import front_page_rst, run_command, summary_markdown


def _images(shift=1.0, seeds=(0, 1, 2, 3, 4), n=8):
    """Per-image rows of five seeds: the student about ``shift`` above the baseline on every
    metric (within 10%, varying from seed to seed as trained networks do)."""
    rng = np.random.default_rng(0)
    rows = []
    for seed in seeds:
        delta_of_seed = shift * rng.uniform(0.9, 1.1)
        for k in range(n):
            base = {"n_fg": rng.integers(2, 6), "n_bg": rng.integers(2, 6), "lambda": rng.uniform(0.2, 0.5),
                    "d": rng.uniform(0.1, 1.0), "rho": rng.uniform(0.3, 0.6)}
            for network, delta in (("distilled_student", delta_of_seed), ("baseline", 0.0)):
                rows.append({"seed": seed, "layer": "conv", "network": network, "image_id": f"i{k}",
                             "n_fg": base["n_fg"] + 2 * delta, "n_bg": base["n_bg"] - delta,
                             "lambda": base["lambda"] + 0.1 * delta, "d": base["d"] * (1 - 0.5 * delta),
                             "rho": base["rho"] + 0.1 * delta, "m_hat": 2, "rho_bg": 0.5, "rho_all": 0.5})
    return pd.DataFrame(rows)


def _with_teacher(images):
    """``images`` plus teacher rows: twice the baseline's background concepts."""
    base = images[images["network"] == "baseline"]
    return pd.concat([images, base.assign(network="teacher", n_bg=2 * base["n_bg"], n_fg=base["n_fg"] + 4)])


def _premise(teacher=0.9, margin=0.10):
    accuracy = pd.DataFrame({"seed": [0, 1, 2], "teacher": [teacher, teacher + 0.01, teacher + 0.02],
                             "distilled_student": [0.85] * 3, "baseline": [0.75] * 3})
    return premise(accuracy, margin)


def test_the_premise_needs_the_margin_in_every_seed():
    # Leads of 0.15, 0.16, 0.17: held at 0.10; at 0.16 seed 0 falls short and is named.
    sentence, held = premise_sentence(_premise(teacher=0.9), ["baseline"])
    assert held and sentence.endswith("premise (the teacher leads by at least 0.10 in every seed): held")
    sentence, held = premise_sentence(_premise(teacher=0.9, margin=0.16), ["baseline"])
    assert not held and "not held (smallest lead +0.150, seed 0)" in sentence
    # A lead of 2 points beats the baseline but is not the premise (issue 20).
    table = _premise(teacher=0.77)
    assert (table["teacher_minus_baseline"] > 0).all() and not table["premise_held"].any()
    assert "not held (smallest lead +0.020, seed 0)" in premise_sentence(table, ["baseline"])[0]
    # A lead equal to the margin up to float rounding counts (0.86 - 0.76 != 0.10 in floats).
    exact = premise(pd.DataFrame({"seed": [0], "teacher": [0.86], "baseline": [0.76]}), 0.10)
    assert bool(exact["premise_held"].iloc[0])


def test_latex_table_shows_intervals_verdicts_and_the_premise():
    hypotheses = pooled_hypotheses(_images(), ["distilled_student"])
    tex = latex_table(hypotheses, _premise(), dataset="synthetic", architecture="small_vgg")
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex
    assert r"$N_{\mathrm{fg}}\uparrow$" in tex and r"$D_{\mathrm{mean}}\downarrow$" in tex
    student = next(line for line in tex.splitlines() if "Distilled student" in line)
    assert student.count(r"$^{\surd}$") == 6  # every direction held (D_var: no verdict), with intervals
    assert student.count(r"\scriptsize[") == 7
    assert any(r"$\Delta$ vs baseline" in line for line in tex.splitlines())
    assert "teacher 0.910" in tex and "in every seed): held" in tex and "not held" not in tex
    weak = latex_table(hypotheses, _premise(teacher=0.8))  # ahead, but by less than 10 points
    assert "not held (smallest lead +0.050, seed 0)" in weak
    # A row where the paper's direction did not hold is shown, marked, never dropped.
    reversed_ = pooled_hypotheses(_images(shift=-1.0), ["distilled_student"])
    tex = latex_table(reversed_, _premise())
    student = next(line for line in tex.splitlines() if "Distilled student" in line)
    assert student.count(r"$^{\times}$") == 6


@pytest.mark.skipif(shutil.which("pdflatex") is None,
                    reason="pdflatex not installed (apt-get install texlive-latex-base "
                           "texlive-latex-recommended); .ci/run installs it")
def test_latex_table_compiles(tmp_path):
    hypotheses = pooled_hypotheses(_images(), ["distilled_student"])
    (tmp_path / "table.tex").write_text(latex_table(hypotheses, _premise(teacher=0.7)))
    (tmp_path / "doc.tex").write_text(
        "\\documentclass{article}\\usepackage{booktabs}\\begin{document}"
        "\\input{table.tex}\\end{document}\n")
    run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-2000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 1000


def test_differences_and_sweep_figures_render(tmp_path):
    images = _images()
    differences = pd.concat([seed_differences(images, ["distilled_student"], resamples=200).astype({"seed": object}),
                             pooled_hypotheses(images, ["distilled_student"]).assign(seed="pooled")])
    fig = plot_differences(differences, "conv")
    fig.savefig(tmp_path / "d.png")
    assert len(fig.axes) == 7 and (tmp_path / "d.png").stat().st_size > 5000
    sweep = pd.concat([pooled_hypotheses(_images(shift=s), ["distilled_student"]).assign(value=v)
                       for v, s in ((0.0, 0.0), (0.6, 0.5), (0.9, 1.0))])
    fig = plot_sweep(sweep, "background_bias")
    fig.savefig(tmp_path / "s.png")
    assert (tmp_path / "s.png").stat().st_size > 5000


def test_save_figure_writes_the_format_and_dpi_asked_and_nothing_when_it_fails(tmp_path):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 1))
    ax.plot([0, 1])
    save_figure(fig, tmp_path / "f.png", {"dpi": 50, "figure_format": "png"})
    save_figure(fig, tmp_path / "g.png", {"dpi": 100, "figure_format": "png"})
    sizes = [_png_size(tmp_path / name) for name in ("f.png", "g.png")]
    assert sizes == [(100, 50), (200, 100)]
    save_figure(fig, tmp_path / "f.pdf", {"dpi": 50, "figure_format": "pdf"})
    assert (tmp_path / "f.pdf").read_bytes().startswith(b"%PDF")
    with pytest.raises(ValueError):
        save_figure(fig, tmp_path / "h.png", {"dpi": 50, "figure_format": "no-such-format"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.pdf", "f.png", "g.png"]  # no partial file


def _png_size(path):
    """(width, height) in pixels from a PNG's header."""
    header = path.read_bytes()[16:24]
    return int.from_bytes(header[:4], "big"), int.from_bytes(header[4:], "big")


def test_run_command_names_the_extra_config_files_in_order():
    assert run_command(["config/config.yaml"]) == ("snakemake --cores all", "config/config.yaml")
    assert run_command(["config/config.yaml", "tests/configs/smoke.yaml", "o.yaml"]) == (
        "snakemake --cores all --configfile tests/configs/smoke.yaml --configfile o.yaml",
        "config/config.yaml, overridden by tests/configs/smoke.yaml, overridden by o.yaml")


def test_figures_render(tmp_path):
    rng = np.random.default_rng(0)
    per_image = pd.DataFrame([{"layer": "conv", "network": net, "epoch": e, "image_id": f"i{k}",
                               "n_fg": rng.integers(0, 5), "n_bg": rng.integers(0, 5),
                               "weight_distance": 0.1 * e}
                              for net in ("distilled_student", "baseline") for e in range(4)
                              for k in range(3)])
    fig = plot_concepts_vs_distance(per_image, "conv")
    fig.savefig(tmp_path / "c.png")
    fg = np.zeros((2, 4, 4), bool)
    fg[:, 1:3, 1:3] = True
    entropy = {n: rng.normal(-3, 1, (2, 4, 4)) for n in ("teacher", "distilled_student", "baseline")}
    fig = plot_entropy_maps(rng.random((2, 8, 8, 3)), entropy, fg, {n: -3.0 for n in entropy}, 0.2,
                            ["a", "b"])
    fig.savefig(tmp_path / "e.png")
    assert (tmp_path / "c.png").stat().st_size > 5000 and (tmp_path / "e.png").stat().st_size > 5000
    assert len(fig.axes) == 2 * 4 + 1  # images x (image + 3 networks) + colour bar


def test_the_report_front_page_opens_on_the_answer(tmp_path):
    """The front page of report.html: premise, verdict table, forest plot, then the rest; valid
    reStructuredText (docutils raises on any error) with the figure embedded."""
    from docutils.core import publish_parts

    hypotheses = pooled_hypotheses(_images(), ["distilled_student"])
    figure = tmp_path / "differences.png"
    differences = pd.concat([seed_differences(_images(), ["distilled_student"], resamples=200).astype({"seed": object}),
                             hypotheses.assign(seed="pooled")])
    plot_differences(differences, "conv").savefig(figure)
    rst = front_page_rst(tree="results", hypotheses=hypotheses, premise=_premise(teacher=0.8),
                         confidence=0.95, figures=[figure])
    html = publish_parts(rst, writer="html", settings_overrides={"halt_level": 2})["html_body"]
    assert '<h1 class="title">Results</h1>' in html
    assert html.index("Premise NOT held") < html.index("<table") < html.index("data:image/png;base64")
    assert "not held (smallest lead +0.050, seed 0)" in html
    for row in hypotheses.itertuples():
        assert f"<td>{row.verdict}</td>" in html


def test_the_teacher_is_shown_as_context_in_the_table_and_the_forest_plot(tmp_path):
    images = _with_teacher(_images())
    hypotheses = pooled_hypotheses(images, ["distilled_student"])
    teacher = teacher_reference(images, ["distilled_student"])
    tex = latex_table(hypotheses, _premise(), teacher=teacher)
    lines = tex.splitlines()
    row = next(line for line in lines if "Teacher (context)" in line)
    # Before the student, with N_fg, N_bg and lambda and their intervals, no verdict mark, and
    # no D or rho (one checkpoint).
    assert lines.index(row) < lines.index(next(line for line in lines if "Distilled student" in line))
    assert row.count(r"\scriptsize[") == 3 and "surd" not in row and "times" not in row
    assert row.count("--") == 4 and "0.910" in row
    assert "The teacher's row is context" in tex
    differences = pd.concat([seed_differences(images, ["distilled_student"], resamples=200).astype({"seed": object}),
                             hypotheses.assign(seed="pooled")])
    fig = plot_differences(differences, "conv", teacher=teacher)
    expected = teacher.set_index("metric").loc["n_bg", "teacher_minus_baseline"]
    dashed = [line for line in fig.axes[1].get_lines() if line.get_linestyle() == "--"]
    assert len(dashed) == 1 and dashed[0].get_ydata()[0] == pytest.approx(expected)
    assert not [line for line in fig.axes[3].get_lines() if line.get_linestyle() == "--"]  # D_mean
    assert "teacher - baseline" in [t.get_text() for t in fig.axes[-1].get_legend().get_texts()]


def test_summary_shows_teacher_zero_concept_images_and_per_seed_tests():
    images = _with_teacher(_images())
    hypotheses = pooled_hypotheses(images, ["distilled_student"])
    teacher = teacher_reference(images, ["distilled_student"])
    differences = pd.concat([seed_differences(images, ["distilled_student"], resamples=200).astype({"seed": object}),
                             hypotheses.assign(seed="pooled")])
    metrics = pd.DataFrame({"seed": [0, 0, 1, 1, "pooled", "pooled"], "layer": "conv",
                            "network": ["distilled_student", "baseline"] * 3,
                            "no_fg_concept_images": [0, 2, 1, 1, 0.5, 1.5], "n_images": 8})
    text = summary_markdown(
        command="snakemake --cores all", tree="results", hypotheses=hypotheses, premise=_premise(),
        selection=pd.DataFrame({"seed": [0], "evaluated": [8]}),
        work=pd.DataFrame({"network": ["baseline"], "maps": [1], "sample_passes": [10]}),
        times=pd.DataFrame({"stage": ["train"], "seconds": [1.0], "cpu_seconds": [1.0]}),
        confidence=0.95, config_name="config/config.yaml", teacher=teacher, metrics=metrics,
        differences=differences)
    assert text.startswith("# Results\n")  # (tree "results": a bare folder, no run name)
    assert "| layer | network | hypothesis | metric | student | baseline | difference [95% CI] | " \
           "t-test p | Holm p | verdict | MDE | image pairs (seeds) |" in text
    assert "A verdict is about the training procedure, replicated by 5 seed(s)" in text
    assert "Design: 5 seed(s) x 8 evaluated image(s) per seed" in text
    assert "## The teacher beside the students" in text
    share = teacher.set_index("metric").loc["n_fg", "student_share"]
    assert f"keeps {100 * share:.0f}% of the teacher's foreground concepts" in text
    # Counted over seeds, pooled rows left out: the baseline 2 + 1 of 16.
    assert "| conv | Baseline | 3 | 16 |" in text and "| conv | Distilled student | 1 | 16 |" in text
    assert "zero_concept_images: keep" in text
    assert "| layer | student | metric | seed 0 | seed 1 | seed 2 | seed 3 | seed 4 |" in text  # Wilcoxon per seed
    # Four pairs per seed cannot reject at 0.05: the summary says so instead of printing p.
    few = _with_teacher(_images(n=4))
    text = summary_markdown(
        command="snakemake --cores all", tree="results", hypotheses=pooled_hypotheses(few, ["distilled_student"]),
        premise=_premise(), selection=pd.DataFrame({"seed": [0], "evaluated": [4]}),
        work=pd.DataFrame({"network": ["baseline"], "maps": [1], "sample_passes": [10]}),
        times=pd.DataFrame({"stage": ["train"], "seconds": [1.0], "cpu_seconds": [1.0]}), confidence=0.95,
        config_name="config/config.yaml",
        differences=seed_differences(few, ["distilled_student"], resamples=200).astype({"seed": object}))
    assert "Per-seed Wilcoxon tests: too few pairs per seed (at most 4: the smallest two-sided p is 0.125" in text
    assert "| seed 0 |" not in text


def test_an_architecture_axis_has_one_block_per_architecture_everywhere(tmp_path):
    from kdconcepts.report import stack_architectures
    from kdconcepts.summary import architectures_summary

    # small_vgg: the student ahead on every metric; small_resnet: behind on every metric, and
    # its premise not held. Both blocks are shown, each with its own marks and premise.
    runs = {"small_vgg": (_with_teacher(_images(shift=1.0)), _premise(teacher=0.9)),
            "small_resnet": (_with_teacher(_images(shift=-1.0)), _premise(teacher=0.8))}
    tables = {arch: {"hypotheses": pooled_hypotheses(images, ["distilled_student"]),
                     "teacher": teacher_reference(images, ["distilled_student"]),
                     "premise": accuracy}
              for arch, (images, accuracy) in runs.items()}
    for arch, (images, _) in runs.items():
        tables[arch]["differences"] = pd.concat(
            [seed_differences(images, ["distilled_student"], resamples=200).astype({"seed": object}),
             tables[arch]["hypotheses"].assign(seed="pooled")])
    stacked = {name: stack_architectures({arch: t[name] for arch, t in tables.items()})
               for name in ("hypotheses", "teacher", "premise", "differences")}
    assert list(stacked["hypotheses"].columns[:2]) == ["architecture", "layer"]
    assert stacked["hypotheses"].groupby("architecture", sort=False).size().to_dict() == {"small_vgg": 7, "small_resnet": 7}
    with pytest.raises(ValueError, match="already has an architecture column"):
        stack_architectures({"x": stacked["hypotheses"]})

    tex = latex_table(stacked["hypotheses"], stacked["premise"], dataset="synthetic", teacher=stacked["teacher"])
    lines = tex.splitlines()
    students = [line for line in lines if "Distilled student" in line]
    assert len(students) == 2 and len([line for line in lines if "Teacher (context)" in line]) == 2
    assert students[0].count(r"$^{\surd}$") == 6 and students[1].count(r"$^{\times}$") == 6
    vgg = next(i for i, line in enumerate(lines) if "small\\_vgg (synthetic), conv" in line)
    resnet = next(i for i, line in enumerate(lines) if "small\\_resnet (synthetic), conv" in line)
    assert vgg < lines.index(students[0]) < resnet < lines.index(students[1])
    assert "small\\_vgg: " in tex and "small\\_resnet: " in tex and "not held (smallest lead +0.050" in tex

    fig = plot_differences(stacked["differences"], "conv", teacher=stacked["teacher"])
    assert len(fig.axes) == 14  # two rows of seven panels
    assert fig.axes[0].get_ylabel().startswith("small_vgg") and fig.axes[7].get_ylabel().startswith("small_resnet")
    pooled = [line.get_ydata()[0] for line in fig.axes[7].get_lines() if line.get_marker() == "D"]
    resnet_n_fg = tables["small_resnet"]["hypotheses"].set_index("metric").loc["n_fg", "difference"]
    assert pooled == [pytest.approx(resnet_n_fg)] and resnet_n_fg < 0
    fig.savefig(tmp_path / "forest.png")

    text = architectures_summary(
        command="snakemake --cores all", config_name="config/config.yaml",
        hypotheses=stacked["hypotheses"], premise=stacked["premise"], confidence=0.95,
        trees={"small_vgg": "results/small_vgg", "small_resnet": "results/small_resnet"},
        summaries={"small_vgg": "# Results: small_vgg\n\n## Premise\n\nvgg text\n",
                   "small_resnet": "# Results: small_resnet\n\n## Premise\n\nresnet text\n"})
    assert text.startswith("# Results: 2 architectures\n") and "**Not held** for some architecture" in text
    assert "| architecture | layer | network |" in text
    assert "N_fg (up), distilled student, layer conv: held (small_vgg), reversed (small_resnet); " \
           "**the architectures disagree**." in text
    # Each tree's own summary follows, its headings one level down.
    assert "## small_resnet (`results/small_resnet/summary.md`)" in text and "### Premise" in text
    assert text.index("vgg text") < text.index("resnet text")
    page = front_page_rst(tree="results", hypotheses=stacked["hypotheses"], premise=stacked["premise"],
                          confidence=0.95, figures=[tmp_path / "forest.png"])
    assert "**Premise NOT held**" in page and page.count("<td>small_resnet</td>") == 7
