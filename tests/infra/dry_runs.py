"""Many `snakemake -n` runs in one Python process: what each would print, and whether it passed.

A dry run of a paper config spends about 95% of its time importing Snakemake, torch and the
library (measured: 4.5 s as its own process, 0.2 to 0.6 s as the next call in one process). So the
tests that dry-run every shipped config call Snakemake's own command-line entry
(``snakemake.cli.parse_args`` + ``args_to_api``, what ``snakemake`` runs) once per config here,
each with its own arguments, and read its output as they would read the command's.

    python tests/infra/dry_runs.py REPO -- ARGS... -- ARGS...   # one JSON line per run

Called through :func:`conftest.dry_runs`.
"""

from __future__ import annotations

import io
import json
import os
import sys
import traceback
from contextlib import redirect_stderr, redirect_stdout


def _one(args: list[str]) -> dict:
    from snakemake.cli import args_to_api, parse_args

    buffer = io.StringIO()
    with redirect_stdout(buffer), redirect_stderr(buffer):
        try:
            parser, parsed = parse_args(args)
            returncode = 0 if args_to_api(parsed, parser) else 1
        except SystemExit as stop:  # argparse and Snakemake's own exits
            returncode = stop.code if isinstance(stop.code, int) else 1
        except Exception:  # noqa: BLE001 - the command would print it and exit 1
            traceback.print_exc()
            returncode = 1
    return {"args": args, "returncode": returncode, "output": buffer.getvalue()}


def main(argv: list[str]) -> int:
    repo, *rest = argv
    runs, current = [], None
    for arg in rest:
        if arg == "--":
            current = []
            runs.append(current)
        else:
            current.append(arg)
    os.chdir(repo)
    for args in runs:
        sys.stdout.write(json.dumps(_one(args)) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
