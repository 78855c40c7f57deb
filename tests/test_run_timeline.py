"""benchmarks/run_timeline.py: job spans and idle cores from a Snakemake log."""

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks/run_timeline.py"
sys.path.insert(0, str(SCRIPT.parent))
from run_timeline import concurrency, parse_log  # noqa: E402

# A log as Snakemake 9 writes it: job 2 (10 s) beside job 1 (4 s), then job 3 alone (6 s),
# and job 4 started but never finished.
LOG = """Building DAG of jobs...
[Thu Dec  3 21:05:18 2026]
localrule teacher_pretrain:
    output: results/pretrain/final.pt
    jobid: 2
    wildcards: tree=results
    priority: 5
[Thu Dec  3 21:05:18 2026]
localrule baseline:
    output: results/seed_0/train/baseline/final.pt
    jobid: 1
[Thu Dec  3 21:05:22 2026]
Finished jobid: 1 (Rule: baseline)
[Thu Dec  3 21:05:28 2026]
Finished jobid: 2 (Rule: teacher_pretrain)
[Thu Dec  3 21:05:28 2026]
localcheckpoint quantify_round:
    jobid: 3
[Thu Dec  3 21:05:34 2026]
Finished jobid: 3 (Rule: quantify_round)
[Thu Dec  3 21:05:34 2026]
localrule metrics:
    jobid: 4
"""


def test_a_log_gives_each_finished_job_and_the_seconds_by_jobs_at_once():
    jobs = parse_log(LOG)
    assert [(j.jobid, j.rule, j.start, j.end) for j in jobs] == [
        (1, "baseline", 0, 4), (2, "teacher_pretrain", 0, 10), (3, "quantify_round", 10, 16)]
    assert concurrency(jobs) == {2: 4, 1: 12}
    assert parse_log("no log here") == []


def test_the_command_prints_idle_core_seconds_and_refuses_bad_input(tmp_path):
    log = tmp_path / "run.log"
    log.write_text(LOG)
    run = subprocess.run([sys.executable, str(SCRIPT), str(log), "--cores", "2", "--tail", "7"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "3 jobs over 16 s; job-seconds 20" in run.stdout
    assert "idle core-seconds on 2 cores: 12 (37.5% of the span)" in run.stdout
    assert "quantify_round" in run.stdout and "baseline" not in run.stdout.split("last 7 s:")[1]
    for bad, named in ((["--cores", "0"], "--cores"), ([], "no such log file")):
        target = str(tmp_path / "missing.log") if not bad else str(log)
        refused = subprocess.run([sys.executable, str(SCRIPT), target, *bad], capture_output=True, text=True)
        assert refused.returncode == 2 and named in refused.stderr, refused.stderr
    empty = tmp_path / "empty.log"
    empty.write_text("Building DAG of jobs...\n")
    nothing = subprocess.run([sys.executable, str(SCRIPT), str(empty)], capture_output=True, text=True)
    assert nothing.returncode == 1 and "no finished job" in nothing.stderr
