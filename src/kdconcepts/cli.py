"""The ``kdconcepts`` command: one sub-command per user-facing step.

    kdconcepts check [--configfile CONFIG]
    kdconcepts verify [RUN] [--reference DIR]
    kdconcepts reference [RUN]
    kdconcepts quantify --checkpoint CKPT --layer conv --images DIR --out OUT
    kdconcepts synthetic --params params.yaml --out data/synthetic
    kdconcepts prepare-cub --raw data/raw/cub --out data/prepared/cub --params params.yaml

Each sub-command forwards its arguments to the module that implements it (``--help`` there).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

#: sub-command -> (module with ``main(argv)``, one-line help)
COMMANDS = {
    "check": ("kdconcepts.checkrun", "is a run complete and intact: what to remake, and how"),
    "verify": ("kdconcepts.verify", "did a rerun reproduce the reference: tables, differences, verdicts"),
    "reference": ("kdconcepts.verify:_main_reference", "make reference/<run> from a finished run"),
    "summarize": ("kdconcepts.summary:_main_summarize", "one summary stacking the verdicts of several runs"),
    "readme": ("kdconcepts.readme", "the README's results section from a run's tables"),
    "quantify": ("kdconcepts.quantify.cli", "sigma maps and concepts of a checkpoint or torchvision model"),
    "synthetic": ("kdconcepts.data.synthetic", "generate the embedded default dataset"),
    "prepare-cub": ("kdconcepts.data.cub", "prepare CUB-200-2011 from the official archives"),
    "prepare-voc": ("kdconcepts.data.voc", "prepare Pascal VOC 2012 from the official archive"),
    "prepare-ilsvrc": ("kdconcepts.data.ilsvrc", "prepare ILSVRC-2013 DET mammal crops"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: kdconcepts COMMAND [ARGS...]   (kdconcepts COMMAND --help)", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch ``kdconcepts COMMAND ...``; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if args[0] not in COMMANDS:
        print(f"kdconcepts: unknown command {args[0]!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    target, _, function = COMMANDS[args[0]][0].partition(":")
    if args[0] == "quantify":  # the numerics pins before torch is imported (kdconcepts.numerics)
        from kdconcepts.numerics import apply

        apply(_option(args, "--numerics", "portable"))
    return int(getattr(importlib.import_module(target), function or "main")(args[1:]) or 0)


def _option(args: list[str], name: str, default: str) -> str:
    for k, arg in enumerate(args):
        if arg == name and k + 1 < len(args):
            return args[k + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return default


if __name__ == "__main__":
    sys.exit(main())
