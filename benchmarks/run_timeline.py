"""How busy the cores were during a Snakemake run, from its log (``.snakemake/log/*.log``).

Each job's start (the time stamp before its ``rule``/``checkpoint`` block) and end (the time
stamp before ``Finished jobid: N``), to the second, as Snakemake writes them. It prints the
run's span, how many seconds 0, 1, 2, ... jobs ran at once, the idle core-seconds on ``--cores``
cores, and the jobs of the last ``--tail`` seconds. Used to see whether a run left cores idle
at its end (docs/ARTIFACT_EVALUATION.md, "Two architectures"); the jobs' own benchmarks say
what each cost.

Example:
    python benchmarks/run_timeline.py .snakemake/log/2026-12-03T210518.285655.snakemake.log --cores 2
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

_STAMP = re.compile(r"^\[(\w{3} \w{3}\s+\d+ \d\d:\d\d:\d\d \d{4})\]$")
_RULE = re.compile(r"^(?:local)?(?:rule|checkpoint) (\w+):$")
_JOBID = re.compile(r"^\s+jobid: (\d+)$")
_FINISHED = re.compile(r"^Finished jobid: (\d+)")


@dataclass(frozen=True)
class Job:
    jobid: int
    rule: str
    start: float  # seconds after the first job's start
    end: float


def parse_log(text: str) -> list[Job]:
    """The finished jobs of a Snakemake log, in start order. A job that never finished is left out."""
    stamp = rule = None
    started: dict[int, tuple[str, datetime]] = {}
    ended: dict[int, datetime] = {}
    for line in text.splitlines():
        if m := _STAMP.match(line):
            stamp = datetime.strptime(" ".join(m[1].split()), "%a %b %d %H:%M:%S %Y")
        elif m := _RULE.match(line):
            rule = m[1]
        elif (m := _JOBID.match(line)) and rule is not None and stamp is not None:
            started[int(m[1])] = (rule, stamp)
            rule = None
        elif (m := _FINISHED.match(line)) and stamp is not None:
            ended[int(m[1])] = stamp
    if not started:
        return []
    origin = min(when for _, when in started.values())
    jobs = [Job(jobid, rule, (when - origin).total_seconds(), (ended[jobid] - origin).total_seconds())
            for jobid, (rule, when) in started.items() if jobid in ended]
    return sorted(jobs, key=lambda job: (job.start, job.jobid))


def concurrency(jobs: list[Job]) -> Counter:
    """Seconds of the run by how many jobs ran in them (``{jobs at once: seconds}``)."""
    if not jobs:
        return Counter()
    span = int(max(job.end for job in jobs))
    running = [0] * span
    for job in jobs:
        for second in range(int(job.start), int(job.end)):
            running[second] += 1
    return Counter(running)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("log", type=Path, help="a Snakemake log, .snakemake/log/<time>.snakemake.log")
    parser.add_argument("--cores", type=int, default=2, help="the run's --cores (default 2)")
    parser.add_argument("--tail", type=float, default=300.0, help="list the jobs that ran in the last S seconds")
    args = parser.parse_args(argv)
    if args.cores < 1:
        parser.error(f"--cores must be at least 1, got {args.cores}")
    if not args.log.is_file():
        parser.error(f"no such log file: {args.log}")
    jobs = parse_log(args.log.read_text(errors="replace"))
    if not jobs:
        print(f"{args.log}: no finished job found (is it a Snakemake log?)", file=sys.stderr)
        return 1
    span = max(job.end for job in jobs)
    seconds = concurrency(jobs)
    idle = sum(max(args.cores - k, 0) * n for k, n in seconds.items())
    print(f"{len(jobs)} jobs over {span:.0f} s; job-seconds {sum(j.end - j.start for j in jobs):.0f}")
    print("seconds by jobs at once: " + ", ".join(f"{k}: {seconds[k]}" for k in sorted(seconds)))
    print(f"idle core-seconds on {args.cores} cores: {idle} ({idle / (args.cores * span):.1%} of the span)")
    print(f"jobs in the last {args.tail:.0f} s:")
    for job in jobs:
        if job.end > span - args.tail:
            print(f"  {job.start:7.0f} {job.end:7.0f} {job.end - job.start:6.0f} s  {job.rule}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
