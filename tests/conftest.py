"""Shared fixtures: a throwaway copy of the repository to run the workflow in."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(config, items):
    """Tests marked ``waits`` first: `make test` runs the suite on three workers (pytest-xdist,
    ``-n 3 --maxschedchunk 1``: each takes the next test in this order when it is free), so
    the one that mostly waits on a scheduler's polls (SLURM) starts at once on one worker while
    the others work through the rest. Alone, the order changes nothing."""
    waiting = [item for item in items if item.get_closest_marker("waits")]
    items[:] = waiting + [item for item in items if not item.get_closest_marker("waits")]


def repo_files() -> list[str]:
    """Tracked and untracked-but-not-ignored files: what a fresh checkout would hold."""
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [f for f in out.split("\0") if f and (ROOT / f).is_file()]


def copy_repo(dest: Path) -> Path:
    for rel in repo_files():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, target)
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    return dest


def workflow_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["DVC_NO_ANALYTICS"] = "1"
    env.setdefault("MPLBACKEND", "Agg")
    return env


def snakemake(cwd: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=cwd, env=workflow_env(),
                          capture_output=True, text=True, timeout=timeout)


def dry_runs(cwd: Path, runs: list[list[str]], timeout: int = 900) -> list[subprocess.CompletedProcess]:
    """``snakemake -n *args`` for each ``args`` in ``runs``, all in one Python process.

    Each result reads like the command's own (its output is in both ``stdout`` and ``stderr``);
    tests/infra/dry_runs.py says why one process: most of a dry run is imports.
    """
    command = [sys.executable, str(ROOT / "tests/infra/dry_runs.py"), str(cwd)]
    for args in runs:
        command += ["--", "-n", *args]
    proc = subprocess.run(command, env=workflow_env(), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith('{"args"')]
    assert len(results) == len(runs), (proc.stdout + proc.stderr)[-3000:]
    return [subprocess.CompletedProcess(r["args"], r["returncode"], r["output"], r["output"])
            for r in results]


@pytest.fixture
def repo_copy(tmp_path) -> Path:
    return copy_repo(tmp_path / "repo")


#: The shipped configs beside the default and the paper and quick ones, each its own run.
OTHER_CONFIGS = ("config/extended.yaml", "config/photos.yaml", "config/ablation/background_bias.yaml")


def shipped_configs() -> list[str]:
    """Every shipped config but the default, as a path relative to the repository."""
    return sorted([*(p.relative_to(ROOT).as_posix()
                     for p in [*ROOT.glob("config/paper/*.yaml"), *ROOT.glob("config/quick/*.yaml")]),
                   *OTHER_CONFIGS])


@pytest.fixture(scope="session")
def shipped_dry_runs(tmp_path_factory) -> dict[str, subprocess.CompletedProcess]:
    """``snakemake -n --cores 4 --configfile <config>`` of every shipped config but the default
    (paper, quick, extended, photos, the ablation), in one fresh copy of the repository and one
    process; config path -> its run."""
    def make(folder: Path) -> dict:
        repo = copy_repo(folder / "repo")
        configs = shipped_configs()
        runs = dry_runs(repo, [["--cores", "4", "--configfile", config] for config in configs])
        return {config: _completed(run) for config, run in zip(configs, runs)}

    made = once_per_run(tmp_path_factory, "shipped_dry_runs", make)
    return {config: subprocess.CompletedProcess(**run) for config, run in made.items()}


SMOKE = "tests/configs/smoke.yaml"


def _sigint_as_in_a_terminal() -> None:
    """Give the run the SIGINT disposition of a terminal's foreground job.

    A process started in the background by a non-interactive shell (`nohup make test &`, some CI
    runners) inherits SIGINT as ignored, and Python then installs no KeyboardInterrupt handler:
    Ctrl-C would be lost on Snakemake and on its jobs alike, and the run would never stop.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _interrupt_after_first_epoch(repo: Path) -> dict:
    """Start the smoke run and press Ctrl-C once the first training job has saved an epoch.

    No timing is involved: the job runs with the test barrier of
    :func:`kdconcepts.runtime.epoch_barrier`, so after its first epoch (resume state on disk)
    it announces itself on a FIFO and stands still until the signal arrives. Returns what was
    left behind, for the test of interrupted runs to check.
    """
    from kdconcepts.runtime import BARRIER_ENV

    barrier = Path(tempfile.mkdtemp(prefix="kdc-barrier-"))  # outside the repo: FIFOs do not copy
    for name in ("reached", "release"):
        os.mkfifo(barrier / name)
    env = workflow_env()
    env[BARRIER_ENV] = str(barrier)
    proc = subprocess.Popen([sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", SMOKE],
                            cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True, preexec_fn=_sigint_as_in_a_terminal)
    reached: list[str] = []

    def read_reached():
        with open(barrier / "reached", encoding="utf-8") as fifo:
            reached.append(fifo.readline().strip())

    reader = threading.Thread(target=read_reached, daemon=True)
    reader.start()
    # Wait for the announcement, or for the run to end without one (then it failed early).
    while reader.is_alive() and proc.poll() is None:
        reader.join(timeout=1.0)
    if reader.is_alive():  # nobody will write: unblock the reader
        os.close(os.open(barrier / "reached", os.O_WRONLY | os.O_NONBLOCK))
        reader.join()
    # "<job folder>\t<role> <phase> <epoch>": which training job Snakemake happened to start first.
    folder, _, label = reached[0].partition("\t") if reached and reached[0] else ("", "", "")
    job_dir = repo / folder if folder else None
    resume_saved = job_dir is not None and (job_dir / ".resume.pt").is_file()
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends to the whole group
    try:
        out, _ = proc.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # leave nothing blocked on the barrier behind
        out, _ = proc.communicate()
        raise AssertionError("the smoke run did not stop within 600 s of Ctrl-C (SIGINT):\n"
                             + out[-3000:]) from None
    shutil.rmtree(barrier, ignore_errors=True)
    role = label.split(" ")[0]
    logs = sorted(repo.glob(f"logs/**/train/{role}.log")) if role else []
    return {"reached": label or None, "resume_saved": resume_saved, "returncode": proc.returncode,
            "output": out, "job_log": "".join(p.read_text(errors="replace") for p in logs),
            "left": sorted(p.name for p in job_dir.iterdir()) if job_dir and job_dir.exists() else []}


def once_per_run(tmp_path_factory, name: str, make):
    """``make(folder)`` once per test run, also across pytest-xdist workers; its result.

    ``make`` gets an empty folder that outlives it and returns something JSON can hold. Under
    xdist each worker is its own pytest session, so the first worker to ask makes it (under a
    file lock, in the folder all workers' temp folders share) and the others wait for it and
    read the saved result. If ``make`` fails, the next one to ask tries again.
    """
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    result = root / f"{name}.json"
    with FileLock(str(root / f"{name}.lock")):
        if not result.exists():
            folder = root / name
            shutil.rmtree(folder, ignore_errors=True)  # a failed attempt's leftovers
            folder.mkdir()
            made = make(folder)
            result.write_text(json.dumps(made))
    return json.loads(result.read_text())


def _completed(ran: subprocess.CompletedProcess) -> dict:
    return {"args": [str(a) for a in ran.args], "returncode": ran.returncode,
            "stdout": ran.stdout, "stderr": ran.stderr}


def _run_smoke_reference(folder: Path) -> dict:
    repo = copy_repo(folder / "repo")
    interrupted = _interrupt_after_first_epoch(repo)
    # As `make reproduce` does: jobs cut short are rerun (and resume from their state).
    completed = snakemake(repo, "--cores", "2", "--configfile", SMOKE, "--rerun-incomplete",
                          timeout=1800)
    return {"repo": str(repo), "interrupted": interrupted, "completed": _completed(completed)}


def smoke_reference_run(tmp_path_factory) -> tuple[Path, dict, subprocess.CompletedProcess]:
    """One local run of the smoke config per test run, shared by the pipeline and infra tests,
    which only read it (a test that runs anything in it works on a copy).

    It is first interrupted (Ctrl-C) after the teacher's first epoch, then rerun to completion, so the
    shared results are also those of an interrupted-and-resumed run.
    """
    made = once_per_run(tmp_path_factory, "smoke_reference", _run_smoke_reference)
    return Path(made["repo"]), made["interrupted"], subprocess.CompletedProcess(**made["completed"])
