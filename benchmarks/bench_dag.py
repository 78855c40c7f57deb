"""The whole DAG under both quantification schedules, one after the other: time, work, answers.

Not a test: this measures issue 9's default-scale target (the default DAG in at most 0.5x the
wall time of the exhaustive schedule, with the same evaluated images). It clones the
repository's HEAD (committed work only) twice into a temporary folder and runs in each, one
after the other on the same machine,

  exhaustive: quantify.schedule = exhaustive, quantify.stop = full (the schedule before issue 9);
  default:    the config as given (effective_first + settled in config/config.yaml);

``snakemake --cores N --configfile CONFIG [OVERLAY ...]``. It prints, per run, the wall time,
the CPU time of all its processes (user + sys), the jobs, and the maps and single-sample passes
of every output tree's ``tables/work.csv``; then the ratios default / exhaustive. Both runs must have
evaluated the same images with equal ``metrics``, ``per_image``, ``images`` and ``hypotheses``
tables (per seed and pooled); it exits with 1 if not. Nothing else should run on the machine:
wall time carries every other load, CPU time barely does.

    python benchmarks/bench_dag.py                                   # the default: 95 + 38 min here
    python benchmarks/bench_dag.py --overlay tests/overlays/one_seed.yaml
    python benchmarks/bench_dag.py --config tests/configs/smoke.yaml # a few minutes
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
EXHAUSTIVE = "tests/overlays/exhaustive.yaml"  # quantify: {schedule: exhaustive, stop: full}
COMPARED = ("metrics", "per_image", "images", "hypotheses")
PROGRESS = re.compile(r"^\d+ of \d+ steps \(.*\) done")


def _cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_dag(name: str, clone: Path, configfiles: list[str], cores: int) -> dict:
    """One Snakemake run in ``clone``; its log is ``clone/bench_dag.log``."""
    env = {**os.environ, "DVC_NO_ANALYTICS": "1",
           "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]}
    command = [sys.executable, "-m", "snakemake", "--cores", str(cores), "--configfile", *configfiles]
    log_path = clone / "bench_dag.log"
    print(f"[{name}] {' '.join(command[2:])}  (in {clone}, log {log_path.name})", flush=True)
    cpu0, wall0 = _cpu_of_children(), time.monotonic()
    jobs = 0
    with open(log_path, "w", encoding="utf-8") as log, subprocess.Popen(
            command, cwd=clone, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True) as process:
        for line in process.stdout:
            log.write(line)
            jobs += line.startswith("Finished jobid")
            if PROGRESS.match(line):
                print(f"[{name}] {line.strip()}  ({time.monotonic() - wall0:.0f} s)", flush=True)
    wall, cpu = time.monotonic() - wall0, _cpu_of_children() - cpu0
    if process.returncode != 0:
        raise SystemExit(f"[{name}] snakemake failed (exit {process.returncode}); see {log_path}")
    # Every output tree's pooled work table (one tree, or one per architecture or sweep value).
    work = pd.concat([pd.read_csv(path) for path in sorted((clone / "results").glob("**/tables/work.csv"))
                      if not any(part.startswith("seed_") for part in path.parts)])
    return {"run": name, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "jobs": jobs,
            "maps": int(work["maps"].sum()), "sample_passes": int(work["sample_passes"].sum())}


def same_answers(a: Path, b: Path) -> int:
    """Compares the tables of two finished runs exactly; returns how many were compared."""
    compared = 0
    for table in COMPARED:
        for path in sorted((a / "results").glob(f"**/tables/{table}.csv")):
            relative = path.relative_to(a)
            pd.testing.assert_frame_equal(pd.read_csv(path), pd.read_csv(b / relative),
                                          check_exact=True, obj=str(relative))
            compared += 1
    return compared


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="config/config.yaml",
                        help="config file, relative to the repository (default config/config.yaml)")
    parser.add_argument("--overlay", action="append", default=[],
                        help="more config files layered over it (repeatable)")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the clones go (kept); default a temporary folder, removed")
    args = parser.parse_args(argv)
    if args.cores < 1:
        parser.error("--cores must be >= 1")
    for path in [args.config, *args.overlay]:
        if not (ROOT / path).is_file():
            parser.error(f"no such file in the repository: {path}")
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True, check=True).stdout.strip()

    with tempfile.TemporaryDirectory(prefix="bench_dag_") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        rows, clones = [], {}
        for name in ("exhaustive", "default"):
            clone = clones[name] = workdir / name
            subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
            configfiles = [args.config, *args.overlay]
            if name == "exhaustive":
                configfiles.append(EXHAUSTIVE)
            rows.append(run_dag(name, clone, configfiles, args.cores))
        try:
            compared = same_answers(clones["exhaustive"], clones["default"])
        except AssertionError as error:
            raise SystemExit(f"the two schedules' answers differ:\n{error}") from None

    table = pd.DataFrame(rows).set_index("run")
    ratio = table.loc["default"] / table.loc["exhaustive"]
    print(f"\ncommit {commit}, {args.cores} cores, --configfile {' '.join([args.config, *args.overlay])}")
    print(table.to_string())
    print("default / exhaustive: " + ", ".join(f"{k} {v:.3f}" for k, v in ratio.items()))
    print(f"same answers: {compared} tables equal ({', '.join(COMPARED)}, per seed and pooled)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
