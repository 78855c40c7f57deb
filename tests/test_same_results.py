"""benchmarks/same_results.py: equal runs pass, a changed table or figure is named."""

import subprocess
import sys
from pathlib import Path

import pandas as pd

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks/same_results.py"


def _run(tmp_path, name, value, png=b"\x89PNG1"):
    root = tmp_path / name / "results/tables"
    root.mkdir(parents=True)
    pd.DataFrame({"x": [1.0, value]}).to_csv(root / "a.csv", index=False)
    pd.DataFrame({"y": [value]}).to_parquet(root / "b.parquet", index=False)
    (root / "c.png").write_bytes(png)
    return tmp_path / name


def _compare(a, b):
    return subprocess.run([sys.executable, str(SCRIPT), str(a), str(b)], capture_output=True, text=True)


def test_equal_runs_pass_and_a_changed_table_or_figure_is_named(tmp_path):
    a, same = _run(tmp_path, "a", 2.0), _run(tmp_path, "same", 2.0)
    ok = _compare(a, same)
    assert ok.returncode == 0 and "3 files compared, 0 differ" in ok.stdout, ok.stdout
    other = _run(tmp_path, "other", 2.0 + 1e-12, png=b"\x89PNG2")
    bad = _compare(a, other)
    assert bad.returncode == 1
    assert "results/tables/a.csv" in bad.stdout and "results/tables/b.parquet" in bad.stdout
    assert "results/tables/c.png: other bytes" in bad.stdout
    (other / "results/tables/a.csv").unlink()
    assert "results/tables/a.csv: missing" in _compare(a, other).stdout
