"""Whether two finished runs give the same answers: every CSV and parquet table under their
``results/`` equal exactly (``pandas.testing``), every PNG figure byte for byte.

Used to show that a change regrouping jobs left the computation alone (docs/ARTIFACT_EVALUATION.md,
"Two architectures"). Exit 0 when everything in A is in B and equal, else 1 with the files named.

Example:
    python benchmarks/same_results.py /tmp/run_old /tmp/run_new
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

READERS = {".csv": pd.read_csv, ".parquet": pd.read_parquet}


def differences(a: Path, b: Path) -> tuple[int, list[str]]:
    """(files compared, the files of ``a/results`` missing from ``b`` or different there)."""
    files = sorted(p.relative_to(a) for p in (a / "results").rglob("*")
                   if p.suffix in (*READERS, ".png") and p.is_file())
    bad = []
    for relative in files:
        other = b / relative
        if not other.is_file():
            bad.append(f"{relative}: missing")
        elif relative.suffix == ".png":
            if (a / relative).read_bytes() != other.read_bytes():
                bad.append(f"{relative}: other bytes")
        else:
            read = READERS[relative.suffix]
            try:
                pd.testing.assert_frame_equal(read(a / relative), read(other), check_exact=True)
            except AssertionError as error:
                bad.append(f"{relative}: {str(error).splitlines()[0]}")
    return len(files), bad


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a", type=Path, help="a finished run (a folder holding results/)")
    parser.add_argument("b", type=Path, help="the run to compare with it")
    args = parser.parse_args(argv)
    for folder in (args.a, args.b):
        if not (folder / "results").is_dir():
            parser.error(f"{folder} has no results/ folder")
    compared, bad = differences(args.a, args.b)
    print(f"{compared} files compared, {len(bad)} differ or are missing")
    for line in bad:
        print("  " + line)
    return 1 if bad or not compared else 0


if __name__ == "__main__":
    sys.exit(main())
