"""Shared caches for reviewers (issue 6): a DVC remote holds the prepared data and, when the
maintainer chooses, the trained networks; a fresh checkout `dvc pull`s them and Snakemake then
runs only what is missing. Tested with a local-directory remote (S3 works the same way, see
docs/ARTIFACT_EVALUATION.md).
"""

import filecmp
import re
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "infra"))

import harness  # noqa: E402
from conftest import copy_repo, workflow_env  # noqa: E402

# What a maintainer publishes besides the data: the trained networks (inputs of every later
# rule), for the smoke config's two seeds.
TRAINED = tuple(f"results/smoke/seed_{seed}/train" for seed in (0, 1))
TRAINING_RULES = {"data_synthetic", "teacher", "distilled_student", "baseline"}


def _dvc(repo: Path, *args: str, timeout: float = 600):
    ran = harness.run([Path(sys.executable).parent / "dvc", *args], cwd=repo, env=workflow_env(),
                      timeout=timeout)
    assert ran.returncode == 0, f"dvc {' '.join(args)} failed:\n{harness.tail(ran.stdout)}"
    return ran.stdout


def _snakemake(repo: Path, *args: str, timeout: float = 900) -> str:
    ran = harness.run([sys.executable, "-m", "snakemake", "--configfile", harness.SMOKE, *args],
                      cwd=repo, env=workflow_env(), timeout=timeout)
    assert ran.returncode == 0, harness.tail(ran.stdout, 60)
    return ran.stdout


def _planned_rules(repo: Path) -> set[str]:
    """Rules a dry run would execute (from its job-stats table)."""
    table = _snakemake(repo, "-n", "--cores", "2").split("Job stats:")[-1]
    return {m[1] for m in re.finditer(r"^(\w+)\s+\d+\s*$", table, re.M) if m[1] != "total"}


def _use_remote(repo: Path, remote: Path) -> None:
    """Point the checkout's default remote at ``remote`` (config.local: per machine, not committed);
    add one if the repository defines none."""
    ran = harness.run([Path(sys.executable).parent / "dvc", "remote", "default"], cwd=repo,
                      env=workflow_env(), timeout=60)
    name = ran.stdout.strip() if ran.returncode == 0 else ""
    if name and " " not in name:
        _dvc(repo, "remote", "modify", "--local", name, "url", str(remote))
    else:
        _dvc(repo, "remote", "add", "--local", "--default", "reviewers", str(remote))


def _same_tree(a: Path, b: Path) -> int:
    """Assert two folders hold the same files with the same bytes; return the file count."""
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    _, mismatch, errors = filecmp.cmpfiles(a, b, [str(f) for f in files], shallow=False)
    assert not mismatch and not errors, (mismatch[:5], errors[:5])
    return len(files)


@pytest.mark.slow
def test_reviewer_pulls_data_and_checkpoints_and_skips_training(tmp_path, tmp_path_factory):
    remote = tmp_path / "remote"

    # Maintainer: has run the pipeline (smoke config; the session's shared local run), and
    # publishes the prepared data and the trained networks to the remote.
    # A copy: `dvc add` rewrites the files it tracks, and the shared run must stay untouched.
    maintainer = shutil.copytree(harness.reference_smoke_run(tmp_path_factory),
                                 tmp_path / "maintainer", symlinks=True)
    _use_remote(maintainer, remote)
    for path in TRAINED:
        ignored = harness.run(["git", "check-ignore", "-q", f"{path}.dvc"], cwd=maintainer, timeout=60)
        assert ignored.returncode == 1, (
            f"{path}.dvc is git-ignored, so DVC refuses to write it and it could not be committed: "
            ".gitignore must ignore the results but not the .dvc files under results/")
    tracked = _dvc(maintainer, "add", *TRAINED)  # writes results/smoke/seed_<s>/train.dvc, ...
    for path in TRAINED:
        assert (maintainer / f"{path}.dvc").is_file(), tracked
    _dvc(maintainer, "push", "synthetic", *(f"{p}.dvc" for p in TRAINED))
    assert any(remote.rglob("*")), "nothing was pushed"

    # Reviewer: a fresh checkout holding what the maintainer committed (dvc.lock, *.dvc).
    reviewer = copy_repo(tmp_path / "reviewer")
    shutil.copy2(maintainer / "dvc.lock", reviewer / "dvc.lock")
    for path in TRAINED:
        (reviewer / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(maintainer / f"{path}.dvc", reviewer / f"{path}.dvc")
    _use_remote(reviewer, remote)
    assert TRAINING_RULES <= _planned_rules(reviewer)  # nothing there yet: everything runs

    # 1. Prepared data only: the data rule is skipped, training still runs.
    _dvc(reviewer, "pull", "synthetic")
    for out in ("data/synthetic/target", "data/synthetic/pretrain"):
        assert _same_tree(maintainer / out, reviewer / out) > 0
    planned = _planned_rules(reviewer)
    assert "data_synthetic" not in planned and {"teacher", "baseline", "distilled_student"} <= planned

    # 2. Trained networks too: after re-stamping the pulled files in DAG order (dvc writes
    # them in arbitrary order, and Snakemake would rerun a job whose input looks newer),
    # only quantification, metrics and figures are left.
    _dvc(reviewer, "pull", *(f"{p}.dvc" for p in TRAINED))
    for path in TRAINED:
        assert _same_tree(maintainer / path, reviewer / path) > 0
    _snakemake(reviewer, "--touch", "--cores", "1", "--until", "distilled_student", "baseline")
    planned = _planned_rules(reviewer)
    assert not planned & TRAINING_RULES, planned
    assert {"quantify", "metrics"} <= planned
    status = _dvc(reviewer, "status", "synthetic", *(f"{p}.dvc" for p in TRAINED))
    assert "changed" not in status and "modified" not in status, status
