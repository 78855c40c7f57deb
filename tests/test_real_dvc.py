"""The repository's `prepare_voc` DVC stage on a fixture archive tracked with `dvc add`:
it runs, a second `dvc repro` does nothing, and `dvc push`/`dvc pull` through a local
directory remote restore both the raw archive and the prepared data."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fixtures_real import make_voc_raw

REPO = Path(__file__).resolve().parents[1]
STAGE = "prepare_voc"


def _dvc_executable() -> str | None:
    beside_python = Path(sys.executable).parent / "dvc"
    return str(beside_python) if beside_python.exists() else shutil.which("dvc")


def _tree_digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_prepare_voc_stage_repro_is_idempotent_and_push_pull_restores(tmp_path):
    dvc = _dvc_executable()
    if dvc is None or shutil.which("git") is None:
        pytest.skip("dvc or git is not installed")
    work = tmp_path / "repo"
    work.mkdir()
    shutil.copytree(REPO / "src", work / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    # The repository's own stage definition and params, with fixture-sized images and
    # verification off (the fixture is not the official archive).
    stage = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"][STAGE]
    params = yaml.safe_load((REPO / "params.yaml").read_text())[STAGE]
    params.update(image_size=32, verify=False)
    (work / "dvc.yaml").write_text(yaml.safe_dump({"stages": {STAGE: stage}}))
    (work / "params.yaml").write_text(yaml.safe_dump({STAGE: params}))
    make_voc_raw(work / "data" / "raw" / "voc")

    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "CI": "1",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("PYTHONPATH", None)

    def run(*command: str) -> str:
        result = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True,
                                timeout=300)
        assert result.returncode == 0, f"{command}:\n{result.stdout}\n{result.stderr}"
        return result.stdout + result.stderr

    run("git", "init", "-q")
    run(dvc, "init", "-q")
    run(dvc, "add", "-q", "data/raw/voc")
    assert (work / "data" / "raw" / "voc.dvc").is_file()
    run(dvc, "repro", STAGE)
    prepared = work / "data" / "prepared" / "voc"
    before = _tree_digest(prepared)
    assert "index.csv" in before and len([k for k in before if k.startswith("images/")]) == 5
    lock = (work / "dvc.lock").read_text()
    assert "data/raw/voc" in lock and "prepare_voc" in lock
    stamp = (prepared / "index.csv").stat().st_mtime_ns

    second = run(dvc, "repro", STAGE)
    assert "didn't change" in second or "up to date" in second
    assert (work / "dvc.lock").read_text() == lock
    assert (prepared / "index.csv").stat().st_mtime_ns == stamp

    remote = tmp_path / "remote"
    run(dvc, "remote", "add", "-d", "local", str(remote))
    run(dvc, "push")
    raw_before = _tree_digest(work / "data" / "raw" / "voc")
    shutil.rmtree(prepared)
    shutil.rmtree(work / "data" / "raw" / "voc")
    shutil.rmtree(work / ".dvc" / "cache")
    run(dvc, "pull")
    assert _tree_digest(prepared) == before
    assert _tree_digest(work / "data" / "raw" / "voc") == raw_before
    assert "up to date" in run(dvc, "status")
