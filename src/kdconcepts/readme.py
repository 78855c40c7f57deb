"""The README's results section, made from a run's tables, never typed.

    kdconcepts readme                  # rewrite README.md's section from reference/default/
    kdconcepts readme --check          # exit 1 if the section differs from what the tables give
    kdconcepts readme --run results/default

The section lies between ``<!-- results: begin -->`` and ``<!-- results: end -->``; per
architecture the premise (test accuracies per seed) and the verdict table, as ``summary.md``
shows them. ``tests/test_readme.py`` checks that the committed README is what the committed
reference gives.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from kdconcepts.summary import _markdown_table, verdict_table

__all__ = ["BEGIN", "END", "results_section", "update"]

BEGIN, END = "<!-- results: begin -->", "<!-- results: end -->"
_COLUMNS = ["metric", "student", "baseline", "difference [95% CI]", "t-test p", "Holm p", "verdict", "MDE"]


def results_section(run: str | Path, label: str | None = None) -> str:
    """The markdown of a finished run's (or reference's) premise and verdicts, per architecture;
    ``label`` names the run in the section (default: ``run`` as given)."""
    run = Path(run)
    label = run.as_posix() if label is None else label
    hypotheses = pd.read_csv(run / "tables/hypotheses.csv")
    premise = pd.read_csv(run / "tables/premise.csv")
    host = json.loads((run / "host.json").read_text(encoding="utf-8"))
    if "architecture" not in hypotheses:
        hypotheses, premise = hypotheses.assign(architecture=""), premise.assign(architecture="")
    seeds = int(hypotheses["n_seeds"].max())
    lines = [BEGIN, f"*Made by `kdconcepts readme` from `{label}/tables/` ({seeds} seeds, numerics "
                    f"`{host['numerics']}`); do not edit by hand.*", ""]
    for arch, block in hypotheses.groupby("architecture", sort=False):
        accuracy = premise[premise["architecture"] == arch]
        lead = accuracy["teacher_minus_baseline"]
        held = bool(accuracy["premise_held"].all())
        short = "" if held else (f"; under the {accuracy['premise_margin'].iloc[0]:.2f} margin in seed(s) "
                                 + ", ".join(str(s) for s in accuracy.loc[~accuracy["premise_held"], "seed"]))
        lines += [f"**{arch}**" if arch else "**results**", "",
                  f"Premise {'held' if held else '**not held**'}: the teacher leads "
                  f"the baseline by {lead.min():+.3f} to {lead.max():+.3f} in test accuracy{short} (teacher "
                  f"{accuracy['teacher'].mean():.3f}, distilled student {accuracy['distilled_student'].mean():.3f}, "
                  f"baseline {accuracy['baseline'].mean():.3f}: means over seeds).", ""]
        table = verdict_table(block.drop(columns="architecture"), 0.95)
        lines += [_markdown_table(table[[c for c in _COLUMNS if c in table]]), ""]
    return "\n".join(lines + [END])


def update(readme: str | Path, run: str | Path) -> bool:
    """Rewrite the section in ``readme``; True when it changed."""
    readme = Path(readme)
    text = readme.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        raise ValueError(f"{readme} has no {BEGIN} ... {END} section")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    new = head + results_section(run, _label(run, readme)) + tail
    if new != text:
        readme.write_text(new, encoding="utf-8")
    return new != text


def _label(run: Path, readme: Path) -> str:
    """The run as the README's reader sees it: relative to the README's folder when inside it."""
    try:
        return Path(run).resolve().relative_to(Path(readme).resolve().parent).as_posix()
    except ValueError:
        return Path(run).as_posix()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kdconcepts readme", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, default=Path("reference/default"),
                        help="a finished run or a reference (default: reference/default)")
    parser.add_argument("--readme", type=Path, default=Path("README.md"))
    parser.add_argument("--check", action="store_true", help="only say whether the section is current")
    args = parser.parse_args(argv)
    text = args.readme.read_text(encoding="utf-8")
    current = text.split(BEGIN, 1)[-1].split(END, 1)[0]
    wanted = results_section(args.run, _label(args.run, args.readme))[len(BEGIN):-len(END)]
    if args.check:
        if current != wanted:
            print(f"{args.readme}: the results section is not what {args.run} gives; run `kdconcepts readme`",
                  file=sys.stderr)
            return 1
        print(f"{args.readme}: the results section is {args.run}'s")
        return 0
    print(f"{args.readme}: {'rewritten' if update(args.readme, args.run) else 'already current'} from {args.run}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
