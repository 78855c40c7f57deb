"""The LaTeX table and the figures, from small metric tables."""

import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from kdconcepts.metrics import compare_hypotheses
from kdconcepts.report import latex_table, plot_concepts_vs_distance, plot_entropy_maps


def _metrics():
    rows = []
    for net, shift in (("teacher", 0.0), ("distilled_student", 1.0), ("baseline", 0.0)):
        rows.append({"dataset": "synthetic", "architecture": "small_vgg", "layer": "conv",
                     "network": net, "n_fg": 4.0 + shift, "n_bg": 9.0 - shift,
                     "lambda": 0.3 + 0.1 * shift, "d_mean": 2.0 + shift, "d_var": 0.5,
                     "d_std": 0.7, "rho": 0.4 + 0.1 * shift, "test_accuracy": 0.9})
    return pd.DataFrame(rows)


def test_latex_table_layout_bold_and_marks():
    metrics = _metrics()
    tex = latex_table(metrics, compare_hypotheses(metrics))
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex
    assert r"$N_{\mathrm{fg}}\uparrow$" in tex and r"$D_{\mathrm{mean}}\downarrow$" in tex
    student = next(line for line in tex.splitlines() if "Distilled student" in line)
    baseline = next(line for line in tex.splitlines() if line.lstrip().startswith("& Baseline"))
    assert r"\textbf{5.00}$^{\surd}$" in student            # N_fg held
    assert r"3.000$^{\times}$" in student                     # D_mean failed, not bold
    assert r"\textbf{2.000}" in baseline                      # baseline better on D_mean
    assert "Teacher" not in tex


@pytest.mark.skipif(shutil.which("pdflatex") is None,
                    reason="pdflatex not installed (apt-get install texlive-latex-base "
                           "texlive-latex-recommended); .ci/run installs it")
def test_latex_table_compiles(tmp_path):
    metrics = _metrics()
    (tmp_path / "table.tex").write_text(latex_table(metrics, compare_hypotheses(metrics)))
    (tmp_path / "doc.tex").write_text(
        "\\documentclass{article}\\usepackage{booktabs}\\begin{document}"
        "\\input{table.tex}\\end{document}\n")
    run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-2000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 1000


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
