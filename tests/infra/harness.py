"""Helpers for the artifact-evaluation tests (tests/test_docker.py, test_slurm.py, test_dvc_remote.py).

They start and stop the throwaway daemons through the shell scripts next to this file (which
reviewers can run by hand too), run commands with a time limit, and compare two runs'
result tables. Import with ``sys.path.insert(0, "tests/infra")``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd

INFRA = Path(__file__).resolve().parent
ROOT = INFRA.parents[1]
SMOKE = "tests/configs/smoke.yaml"

# Columns that record wall-clock time or host facts: they legitimately differ between runs.
_VOLATILE_COLUMN_WORDS = ("time", "second", "duration", "host", "date", "wall", "elapsed", "per_s")


def state_root() -> Path:
    """Persistent folder for caches the infra tests reuse between runs (Docker data root,
    local base image tarball, wheelhouse). Set ``KDC_INFRA_STATE`` to move it."""
    root = Path(os.environ.get("KDC_INFRA_STATE", "/var/tmp/kdconcepts-infra"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def missing_for(commands: list[str]) -> str | None:
    """Why daemons cannot be started here (a skip reason), or None if they can."""
    if os.geteuid() != 0:
        return "needs root to start daemons (CI runs as root; see tests/infra/install_system_deps.sh)"
    absent = [c for c in commands if shutil.which(c) is None]
    if absent:
        return f"not installed: {', '.join(absent)} (run tests/infra/install_system_deps.sh)"
    return None


def run(cmd: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None,
        timeout: float = 600, log: Path | None = None) -> subprocess.CompletedProcess:
    """Run a command with a time limit; keep its combined output (and write it to ``log``)."""
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, timeout=timeout,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(proc.stdout)
    return proc


def infra_script(name: str, *args: str | Path, env: dict[str, str] | None = None,
                 timeout: float = 600) -> subprocess.CompletedProcess:
    """Run one of the shell scripts in tests/infra/."""
    return run(["bash", INFRA / name, *args], env=env, timeout=timeout)


def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


def free_port(preferred: int = 0) -> int:
    """A free TCP port on 127.0.0.1: ``preferred`` if it is free (a stable port keeps
    build-arg URLs, hence Docker's layer cache, the same between runs), else any."""
    for port in ([preferred] if preferred else []) + [0]:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise RuntimeError("no free port")


def reference_smoke_run(tmp_path_factory) -> Path:
    """A checkout with a finished local run of the smoke config, made once per pytest session
    and shared by the infra tests (the SLURM test compares its results with it, the DVC test
    publishes its data and checkpoints): the smoke DAG is the expensive part of both."""
    from conftest import smoke_reference_run  # noqa: PLC0415 (tests/ is on sys.path)

    repo, _, ran = smoke_reference_run(tmp_path_factory)
    assert ran.returncode == 0, "local smoke run failed:\n" + tail(ran.stdout + ran.stderr, 80)
    return repo


def base_env(**extra: str) -> dict[str, str]:
    """This process's environment plus ``extra``."""
    return {**os.environ, **extra}


def _stable_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if not any(w in str(c).lower() for w in _VOLATILE_COLUMN_WORDS)]


def _read_table(path: Path) -> pd.DataFrame:
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix == ".jsonl":
        return pd.DataFrame([json.loads(line) for line in path.read_text().splitlines() if line])
    if path.suffix == ".json":
        return pd.json_normalize(json.loads(path.read_text()))
    return pd.read_csv(path)


def result_tables(results: Path) -> list[str]:
    """Relative paths of every table-like result (csv, parquet, json, jsonl) under ``results``."""
    suffixes = {".csv", ".parquet", ".json", ".jsonl"}
    return sorted(str(p.relative_to(results)) for p in results.rglob("*")
                  if p.is_file() and p.suffix in suffixes)


def assert_same_results(expected: Path, actual: Path, *, rtol: float = 1e-6, atol: float = 1e-8) -> int:
    """Assert two ``results/`` folders hold the same tables with the same values.

    Numbers are compared with a tight tolerance (same code, seed and thread count on the same
    CPU should give bit-identical values; the tolerance only absorbs float formatting), and
    columns that record wall-clock time are ignored. Returns the number of tables compared.
    """
    names = result_tables(expected)
    assert names, f"no result tables under {expected}"
    assert names == result_tables(actual), "different sets of result files"
    for name in names:
        a, b = _read_table(expected / name), _read_table(actual / name)
        assert a.shape == b.shape, f"{name}: shape {a.shape} != {b.shape}"
        for col in _stable_columns(a):
            x, y = a[col], b[col]
            if pd.api.types.is_numeric_dtype(x) and pd.api.types.is_numeric_dtype(y):
                np.testing.assert_allclose(x.to_numpy(float), y.to_numpy(float), rtol=rtol, atol=atol,
                                           equal_nan=True, err_msg=f"{name}: column {col}")
            elif x.map(lambda v: isinstance(v, (list, np.ndarray))).any():
                np.testing.assert_allclose(np.stack(x.map(np.asarray)), np.stack(y.map(np.asarray)),
                                           rtol=rtol, atol=atol, equal_nan=True,
                                           err_msg=f"{name}: column {col}")
            else:
                assert x.astype(str).tolist() == y.astype(str).tolist(), f"{name}: column {col}"
    return len(names)
