"""`dvc repro` of the data stages (`synthetic`, `photos`) in a fresh copy reproduces the
committed dvc.lock."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def _dvc_executable() -> str | None:
    beside_python = Path(sys.executable).parent / "dvc"
    return str(beside_python) if beside_python.exists() else shutil.which("dvc")


def _stage_lock(lock_file: Path, stage: str) -> dict:
    lock = yaml.safe_load(lock_file.read_text())
    return lock["stages"][stage]


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["synthetic", "photos"])
def test_dvc_repro_reproduces_committed_hashes(tmp_path, stage):
    dvc = _dvc_executable()
    if dvc is None:
        pytest.skip("dvc is not installed")
    if stage == "photos" and not (FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("dataset-fashion-mnist is not installed (apt-get install dataset-fashion-mnist; .ci/run installs it)")
    lock_file = REPO / "dvc.lock"
    assert lock_file.is_file(), "dvc.lock is missing: run `dvc repro synthetic` and commit it"
    committed = _stage_lock(lock_file, stage)

    work = tmp_path / "repo"
    work.mkdir()
    for name in ("dvc.yaml", "params.yaml", "dvc.lock"):
        shutil.copy2(REPO / name, work / name)
    shutil.copytree(REPO / "src", work / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "CI": "1",
           # The stage command calls `python`: make it this interpreter.
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("PYTHONPATH", None)
    for command in ([dvc, "init", "--no-scm", "-q"],
                    [dvc, "config", "core.analytics", "false"],
                    [dvc, "repro", stage]):
        result = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True,
                                timeout=300)
        assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"

    reproduced = _stage_lock(work / "dvc.lock", stage)
    by_path = lambda entries: {e["path"]: (e["md5"], e.get("nfiles")) for e in entries}
    # Same code and params as committed (else dvc.lock is stale) ...
    assert by_path(reproduced["deps"]) == by_path(committed["deps"])
    assert reproduced["params"] == committed["params"]
    # ... give bit-identical outputs.
    assert by_path(reproduced["outs"]) == by_path(committed["outs"])
    assert {Path(p).name for p in by_path(committed["outs"])} == {"pretrain", "target"}
