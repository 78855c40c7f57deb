"""``kdconcepts check``: is a run complete and intact? Lists, before any work, every expected output
that is missing, unreadable or changed since its job made it, and the command that remakes it.

    kdconcepts check                                   # the default run (config/config.yaml)
    kdconcepts check --configfile config/photos.yaml   # another run
    kdconcepts check --config-only --configfile X.yaml # only the config files, as YAML (file, line)

The expected outputs are the files of the run's whole DAG (``snakemake --summary``); each is
compared with the run manifest (:mod:`kdconcepts.manifest`) by content, and the prepared data with
what ``dvc.lock`` records (:mod:`kdconcepts.data.integrity`). Exit status 0 when the run is
complete ("complete" is printed), 1 when something is to be remade, 2 for a bad config file.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from kdconcepts.config import config_file_problems, overlay_problems, run_name

__all__ = ["config_files_problems", "expected_outputs", "main"]

DEFAULT_CONFIG = "config/config.yaml"


def config_files_problems(config_files: list[str]) -> list[str]:
    """Each config file as YAML (syntax, line and column; repeated keys) and as an overlay."""
    problems = [p for path in [*config_files, DEFAULT_CONFIG] for p in config_file_problems(path)]
    if not problems:
        problems = [p for path in config_files for p in overlay_problems(path)]
    return problems


def _snakemake_args(config_files: list[str]) -> list[str]:
    return ["--configfile", *config_files] if config_files else []


def expected_outputs(config_files: list[str]) -> list[tuple[str, str]]:
    """(path, rule) of every file of the run's DAG, from ``snakemake --summary``."""
    run = subprocess.run([sys.executable, "-m", "snakemake", "--summary", "--cores", "1",
                          *_snakemake_args(config_files)], capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError("snakemake --summary failed:\n" + (run.stderr or run.stdout)[-3000:])
    rows = [line.split("\t") for line in run.stdout.splitlines() if "\t" in line]
    return [(row[0], row[2]) for row in rows[1:] if len(row) >= 3]


def _command(config_files: list[str], force: str | None = None) -> str:
    base = "snakemake --cores all" + "".join(f" --configfile {f}" for f in config_files)
    return base + (f" --forcerun {force}" if force else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kdconcepts check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--configfile", nargs="+", default=[], help="the run's config file(s), as given to snakemake")
    parser.add_argument("--config-only", action="store_true", help="check the config files as YAML only")
    args = parser.parse_args(argv)
    if not Path(DEFAULT_CONFIG).is_file():
        print(f"kdconcepts check: {DEFAULT_CONFIG} is not in {os.getcwd()}: run it in the kdconcepts folder",
              file=sys.stderr)
        return 2
    problems = config_files_problems(args.configfile)
    if problems:
        print("Invalid configuration file:\n  - " + "\n  - ".join(problems), file=sys.stderr)
        return 2
    if args.config_only:
        print("config files: valid YAML")
        return 0

    from kdconcepts.data.integrity import integrity_problems
    from kdconcepts.manifest import check

    run = run_name(args.configfile, "default")
    expected = expected_outputs(args.configfile)
    data_roots = sorted({str(Path(p).parent) for p, rule in expected if rule.startswith("data_")})
    outputs = [(p, rule) for p, rule in expected if not rule.startswith("data_")]
    findings = check(f"results/{run}", [p for p, _ in outputs])
    rule_of = dict(outputs)
    bad = [f for f in findings if f.state not in ("ok", "unrecorded")]
    data = [problem for root in data_roots for problem in integrity_problems(root)]
    print(f"run {run!r}: {len(findings)} expected outputs under results/{run}/ and {len(data_roots)} data folder(s)")
    for problem in data:
        print(f"  data: {problem}")
    if data:
        print(f"  remake: delete the data folder(s) and run `{_command(args.configfile)}` (the data stage "
              "remakes them; trained networks come back from the store)")
    for finding in bad:
        detail = f" ({finding.detail})" if finding.detail else ""
        print(f"  {finding.state}: {finding.path}{detail} [rule {rule_of[finding.path]}]")
    if any(f.state in ("missing", "unreadable") for f in bad):
        print(f"  remake what is missing or unreadable, and what depends on it: `{_command(args.configfile)}`")
    for finding in (f for f in bad if f.state == "changed"):
        print(f"  remake {finding.path} and what depends on it: `{_command(args.configfile, finding.path)}`")
    unrecorded = [f for f in findings if f.state == "unrecorded"]
    if bad or data:
        print(f"incomplete: {len(bad)} output(s) and {len(data)} data problem(s)")
        return 1
    print("complete" + (f" ({len(unrecorded)} output(s) made before run manifests: no record to check "
                        "their content against)" if unrecorded else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
