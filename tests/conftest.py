"""Shared fixtures: a throwaway copy of the repository to run the workflow in."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


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


@pytest.fixture
def repo_copy(tmp_path) -> Path:
    return copy_repo(tmp_path / "repo")


SMOKE = "tests/configs/smoke.yaml"
_SMOKE_RUN: dict = {}


def _interrupt_first_training_job(repo: Path) -> dict:
    """Start the smoke run and press Ctrl-C once the teacher job has started.

    Returns what was left behind, for the test of interrupted runs to check.
    """
    proc = subprocess.Popen([sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", SMOKE],
                            cwd=repo, env=workflow_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    log = repo / "logs/train/teacher.log"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None and not log.exists():
        time.sleep(0.05)
    started = log.exists() and proc.poll() is None
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends to the whole group
    out, _ = proc.communicate(timeout=300)
    teacher = repo / "results/train/teacher"
    return {"started": started, "returncode": proc.returncode, "output": out,
            "left": sorted(p.name for p in teacher.iterdir()) if teacher.exists() else []}


def smoke_reference_run(tmp_path_factory) -> tuple[Path, dict, subprocess.CompletedProcess]:
    """One local run of the smoke config per session, shared by the pipeline and infra tests.

    It is first interrupted (Ctrl-C) while the teacher trains, then rerun to completion, so the
    shared results are also those of an interrupted-and-resumed run.
    """
    if "repo" not in _SMOKE_RUN:
        repo = copy_repo(tmp_path_factory.mktemp("smoke_reference") / "repo")
        interrupted = _interrupt_first_training_job(repo)
        completed = snakemake(repo, "--cores", "2", "--configfile", SMOKE, timeout=1800)
        _SMOKE_RUN.update(repo=repo, interrupted=interrupted, completed=completed)
    return _SMOKE_RUN["repo"], _SMOKE_RUN["interrupted"], _SMOKE_RUN["completed"]
